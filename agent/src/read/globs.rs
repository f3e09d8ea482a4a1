//! The `paths` globs: expanding one without losing its errors (what a pattern
//! may be is `crate::config::patterns`, checked when the config is loaded).
//!
//! Patterns use the `glob` crate's syntax (`*`, `?`, `[abc]`, `[!abc]`, `**`). Brace
//! alternatives (`access.{log,txt}`, a shell feature) are *not* glob syntax there:
//! the crate would take the braces literally and the pattern would never match, so
//! validation refuses them and says to list one pattern per alternative. The choice
//! keeps one well-kept matcher (and `exclude`, `tailrace status` and discovery
//! agreeing on what matches) instead of a second syntax.
//!
//! Expanding a pattern can fail part-way (a directory that cannot be read): those
//! errors are logged with the pattern and the path, once per distinct error rather
//! than at every discovery pass, instead of being dropped.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Mutex;

/// Errors already logged, so a discovery pass every second does not repeat them.
static REPORTED: Mutex<Option<HashSet<String>>> = Mutex::new(None);

/// Add the files `pattern` matches now to `found`; log each expansion error once.
pub fn expand(pattern: &str, found: &mut Vec<PathBuf>) {
    match glob::glob(pattern) {
        Ok(paths) => {
            for p in paths {
                match p {
                    Ok(path) => found.push(path),
                    Err(e) => {
                        let msg = format!("{}: {}", e.path().display(), e.error());
                        if first_time(pattern, &msg) {
                            tracing::error!(pattern, path = %e.path().display(), error = %e.error(), "cannot expand glob here; files below this path are not watched");
                        }
                    }
                }
            }
        }
        Err(e) => {
            if first_time(pattern, &e.to_string()) {
                tracing::error!(pattern, error = %e, "bad glob");
            }
        }
    }
}

fn first_time(pattern: &str, msg: &str) -> bool {
    let Ok(mut g) = REPORTED.lock() else {
        return true;
    };
    g.get_or_insert_with(HashSet::new)
        .insert(format!("{pattern}\u{0}{msg}"))
}

/// Where the rotations of the files `pattern` matches live, and how they are
/// named: the directory of its literal leading part, and the literal
/// prefix of its file name (`/var/log/apache2/access.log*` → the
/// directory `/var/log/apache2`, names starting `access.log`). Rotations
/// are looked for there and one directory below (logrotate's `olddir`).
/// `None` when the file name starts with a wildcard.
pub fn rotation_names(pattern: &str) -> Option<(PathBuf, String)> {
    let name = std::path::Path::new(pattern)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let prefix: String = name
        .chars()
        .take_while(|c| !matches!(c, '*' | '?' | '[' | '{'))
        .collect();
    (!prefix.is_empty()).then(|| (base_dir(pattern), prefix))
}

/// Whether `path` is named like one of `pattern`'s files or their
/// rotations ([`rotation_names`]): below its directory (at any depth:
/// an `olddir`, or the dated directories a link points into), named with
/// its prefix.
pub fn is_rotation_of(pattern: &str, path: &std::path::Path) -> bool {
    let Some((base, prefix)) = rotation_names(pattern) else {
        return false;
    };
    let named = path
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with(&prefix));
    named && path.parent().is_some_and(|p| p.starts_with(&base))
}

/// The directory a glob's matches live in: the longest leading part without
/// glob metacharacters.
pub fn base_dir(pattern: &str) -> PathBuf {
    let mut base = PathBuf::new();
    for comp in std::path::Path::new(pattern).components() {
        let s = comp.as_os_str().to_string_lossy();
        if s.contains(['*', '?', '[', '{']) {
            break;
        }
        base.push(comp);
    }
    if base.as_os_str() == pattern {
        base.pop();
    }
    base
}

/// The problems expanding `pattern` now would meet (unreadable directories), for
/// `tailrace check` and startup: each as `path: why`.
pub fn probe(pattern: &str) -> Vec<String> {
    let mut out = Vec::new();
    match glob::glob(pattern) {
        Ok(paths) => {
            for p in paths {
                if let Err(e) = p {
                    out.push(format!("{}: {}", e.path().display(), e.error()));
                }
            }
        }
        Err(e) => out.push(e.to_string()),
    }
    out
}

/// Expansion problems of every flow's `paths`, as `file:line: flows[i].paths[j]:
/// pattern: path: why` (the line is the flow's `paths`). For `tailrace check`
/// (warnings: the agent may run as another user) and the agent's start (logged).
pub fn probe_flows(config: &crate::config::Validated, file: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for (i, flow) in config.flows.iter().enumerate() {
        let line = flow.config.paths.referenced.line();
        for (j, pattern) in flow.config.paths.value.iter().enumerate() {
            for problem in probe(pattern) {
                out.push(format!(
                    "{}:{line}: flows[{i}].paths[{j}]: `{pattern}`: cannot expand: {problem}",
                    file.display()
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotations_are_named_like_the_file() {
        let p = "/var/log/apache2/access.log*";
        assert_eq!(
            rotation_names(p),
            Some((PathBuf::from("/var/log/apache2"), "access.log".to_string()))
        );
        assert!(is_rotation_of(
            p,
            std::path::Path::new("/var/log/apache2/old/access.log-20261201.xz")
        ));
        assert!(!is_rotation_of(
            p,
            std::path::Path::new("/var/log/apache2/error.log")
        ));
        assert!(is_rotation_of(
            p,
            std::path::Path::new("/var/log/apache2/2026/12/01/access.log")
        ));
        assert!(!is_rotation_of(
            p,
            std::path::Path::new("/var/log/other/access.log.1")
        ));
        assert_eq!(
            rotation_names("/var/log/*/x"),
            Some((PathBuf::from("/var/log"), "x".into()))
        );
        assert_eq!(rotation_names("/var/log/*.log"), None);
        assert_eq!(
            base_dir("/var/log/httpd/access_log"),
            PathBuf::from("/var/log/httpd")
        );
    }

    #[test]
    fn unreadable_directories_are_reported_not_dropped() {
        // Root reads every directory: the permission error cannot be provoked.
        if rustix_is_root() {
            return;
        }
        let dir = std::env::temp_dir().join(format!("tailrace-globs-{}", std::process::id()));
        let locked = dir.join("locked");
        std::fs::create_dir_all(&locked).unwrap();
        std::fs::write(dir.join("a.log"), b"x\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
        let pattern = format!("{}/*/*.log", dir.display());
        let problems = probe(&pattern);
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("locked"), "{problems:?}");
        assert!(
            problems[0].to_lowercase().contains("permission denied"),
            "{problems:?}"
        );
    }

    fn rustix_is_root() -> bool {
        std::fs::read_to_string("/proc/self/status")
            .map(|s| {
                s.lines()
                    .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
            })
            .unwrap_or(false)
    }
}
