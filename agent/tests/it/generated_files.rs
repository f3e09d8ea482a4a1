//! The packaged man page, shell completions and example config cannot go
//! stale: they are compared with what the code generates, and the example is
//! validated with the JSON Schema (by the `jsonschema` crate) and by
//! `tailrace check`'s own loader, and must document every key.
//!
//! After changing the CLI, regenerate with
//! `TAILRACE_BLESS=1 cargo test -p tailrace-agent --test generated_files`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;
use tailrace_agent::{commands::manpage, config};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("agent/ has a parent")
        .to_path_buf()
}

fn assert_current(rel: &str, generated: &str) {
    let path = repo().join(rel);
    if std::env::var_os("TAILRACE_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
        std::fs::write(&path, generated).expect("write");
        return;
    }
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{rel}: {e} (regenerate with TAILRACE_BLESS=1)"));
    assert!(
        committed == generated,
        "{rel} is stale: regenerate with TAILRACE_BLESS=1 cargo test -p tailrace-agent --test generated_files"
    );
}

#[test]
fn man_page_is_current() {
    let man = manpage::man_page();
    // Content the hand-written page had and clap has no field for.
    for section in [
        ".SH COMMANDS",
        ".SH CONFIGURATION",
        ".SH ENVIRONMENT",
        ".SH EXIT STATUS",
        ".SH FILES",
        ".SH EXAMPLES",
        ".SH SEE ALSO",
    ] {
        assert!(man.contains(section), "{section} missing");
    }
    assert!(man.contains("import\\-kinesis\\-agent"), "{man}");
    assert_current("packaging/man/tailrace.1", &man);
}

#[test]
fn completions_are_current() {
    use clap_complete::Shell;
    for (shell, rel) in [
        (Shell::Bash, "packaging/completions/tailrace.bash"),
        (Shell::Zsh, "packaging/completions/_tailrace"),
        (Shell::Fish, "packaging/completions/tailrace.fish"),
    ] {
        let script = manpage::completions(shell);
        assert!(script.contains("import-kinesis-agent"), "{rel}");
        assert_current(rel, &script);
    }
}

fn example_text() -> String {
    std::fs::read_to_string(repo().join("packaging/tailrace.yaml")).expect("example config")
}

fn example_as_json() -> Value {
    serde_saphyr::from_str(&example_text()).expect("example is YAML")
}

fn validator() -> jsonschema::Validator {
    jsonschema::validator_for(&config::json_schema()).expect("schema compiles")
}

#[test]
fn schema_accepts_the_shipped_example() {
    let example = example_as_json();
    let errors: Vec<String> = validator()
        .iter_errors(&example)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    config::Validated::load(&repo().join("packaging/tailrace.yaml"))
        .expect("tailrace check accepts it");
}

#[test]
fn schema_rejects_unknown_keys_and_bad_values() {
    let mut example = example_as_json();
    example["flows"][0]["allowed_latness"] = Value::from("1m");
    let v = validator();
    let errors: Vec<String> = v
        .iter_errors(&example)
        .map(|e| e.instance_path().to_string())
        .collect();
    assert_eq!(errors, vec!["/flows/0".to_string()]);

    let mut example = example_as_json();
    example["flows"][0]["window"] = Value::from("five minutes");
    example["flows"][0]["max_line_bytes"] = Value::from("4 parsecs");
    example["flows"][0]["trusted_proxies"] = Value::from(-1);
    example["flows"][0]["mode"] = Value::from("rwa");
    let mut errors: Vec<String> = v
        .iter_errors(&example)
        .map(|e| e.instance_path().to_string())
        .collect();
    errors.sort();
    errors.dedup();
    assert_eq!(
        errors,
        [
            "/flows/0/max_line_bytes",
            "/flows/0/mode",
            "/flows/0/trusted_proxies",
            "/flows/0/window"
        ]
    );
    let mut no_flows = example_as_json();
    no_flows.as_object_mut().expect("mapping").remove("flows");
    assert!(!v.is_valid(&no_flows), "flows is required");
}

/// Every property name anywhere in the schema.
fn schema_keys(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::Object(props)) = m.get("properties") {
                out.extend(props.keys().cloned());
            }
            m.values().for_each(|c| schema_keys(c, out));
        }
        Value::Array(a) => a.iter().for_each(|c| schema_keys(c, out)),
        _ => {}
    }
}

#[test]
fn shipped_example_documents_every_key() {
    let mut keys = BTreeSet::new();
    schema_keys(&config::json_schema(), &mut keys);
    assert!(keys.contains("allowed_lateness") && keys.contains("endpoint_url"));
    let text = example_text();
    let missing: Vec<&String> = keys
        .iter()
        .filter(|k| {
            // As a key, set or commented out: `key:` or `# key:`, each with a
            // comment line right above it.
            !text.lines().enumerate().any(|(i, l)| {
                let t = l
                    .trim_start()
                    .trim_start_matches('#')
                    .trim_start()
                    .trim_start_matches("- ");
                t.starts_with(&format!("{k}:"))
                    && i > 0
                    && text
                        .lines()
                        .nth(i - 1)
                        .is_some_and(|above| above.trim_start().starts_with('#'))
            })
        })
        .collect();
    assert!(
        missing.is_empty(),
        "packaging/tailrace.yaml does not document: {missing:?}"
    );
}
