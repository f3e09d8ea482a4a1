//! What a `paths` or `exclude` pattern may be: the `glob` crate's syntax,
//! without brace alternatives (a shell feature the crate would take
//! literally, so the pattern would never match). Checked when the config is
//! loaded (`validate`); expanding patterns is the reader's (`read::globs`).

/// Why a `paths` / `exclude` pattern is refused, or `Ok`.
pub fn validate(pattern: &str) -> Result<(), String> {
    if let Some(open) = pattern.find('{') {
        if let Some(close) = pattern[open..].find('}') {
            if pattern[open..open + close].contains(',') {
                return Err(format!(
                    "`{pattern}` uses brace alternatives `{}`, which globs here do not expand (it would never match): write one pattern per alternative",
                    &pattern[open..=open + close]
                ));
            }
        }
    }
    glob::Pattern::new(pattern)
        .map(|_| ())
        .map_err(|e| format!("`{pattern}` is not a valid glob: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn braces_are_refused_with_the_reason() {
        let e = validate("/var/log/httpd/{access,ssl_access}.log").unwrap_err();
        assert!(
            e.contains("brace alternatives `{access,ssl_access}`"),
            "{e}"
        );
        assert!(validate("/var/log/httpd/access.log*").is_ok());
        assert!(
            validate("/var/log/{weird}/a.log").is_ok(),
            "a brace without alternatives is a literal name"
        );
        assert!(validate("/var/log/[a.log")
            .unwrap_err()
            .contains("not a valid glob"));
    }
}
