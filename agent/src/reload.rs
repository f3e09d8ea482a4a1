//! What a configuration reload (SIGHUP) changes.
//!
//! Flows are compared by name. A flow whose settings are the same as before
//! is left alone; a flow that is new starts; a flow that is gone stops after
//! flushing; a flow whose settings differ is stopped the same way and started
//! again from where it stood. A change of `host_id` or the `aws` section
//! restarts every flow (they share the client and the host id). The
//! `state_dir` cannot change while the agent runs: such a config is rejected.
//! `checkpoint_interval`, `shutdown_timeout` and `monitoring.health` apply at
//! once; the rest of `monitoring` (CloudWatch, HTTP) needs a restart.
//!
//! Settings are compared through their `Debug` rendering with the YAML
//! source locations taken out, so moving a flow in the file, or adding a
//! comment above it, changes nothing, and a setting added to the config
//! schema later is compared without anyone remembering to list it here.

use std::collections::{BTreeMap, BTreeSet};

use crate::config::{Flow, Validated};

/// A flow's settings, comparable across config files.
pub fn flow_fingerprint(flow: &Flow) -> String {
    strip_locations(&format!("{:?}", flow.config))
}

/// The settings every flow depends on (`host_id`, `aws`).
pub fn shared_fingerprint(config: &Validated) -> String {
    format!("host_id={:?} aws={:?}", config.host_id, config.aws)
}

/// Remove `Location { .. }` blocks (source positions) from a `Debug`
/// rendering, leaving quoted strings alone.
pub fn strip_locations(debug: &str) -> String {
    const MARK: &str = "Location {";
    let bytes = debug.as_bytes();
    let mut out = String::with_capacity(debug.len());
    let mut i = 0;
    let mut in_string = false;
    let mut start = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if in_string {
            if c == b'\\' {
                i += 2;
                continue;
            }
            if c == b'"' {
                in_string = false;
            }
            i += 1;
            continue;
        }
        if c == b'"' {
            in_string = true;
            i += 1;
            continue;
        }
        if debug[i..].starts_with(MARK) {
            out.push_str(&debug[start..i]);
            out.push_str("Location");
            // Skip to the matching closing brace.
            let mut depth = 0usize;
            let mut j = i + MARK.len() - 1;
            while j < bytes.len() {
                match bytes[j] {
                    b'{' => depth += 1,
                    b'}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            i = j + 1;
            start = i.min(bytes.len());
            continue;
        }
        i += 1;
    }
    if start < bytes.len() {
        out.push_str(&debug[start..]);
    }
    out
}

/// What to do with each flow.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// New flows.
    pub start: Vec<String>,
    /// Flows no longer in the config.
    pub stop: Vec<String>,
    /// Flows whose settings changed.
    pub restart: Vec<String>,
    /// Flows left alone.
    pub unchanged: Vec<String>,
}

impl Plan {
    /// Whether the reload changes any flow.
    pub fn is_empty(&self) -> bool {
        self.start.is_empty() && self.stop.is_empty() && self.restart.is_empty()
    }
}

/// Compare the running flows (name → fingerprint) with a new config.
pub fn plan(running: &BTreeMap<String, String>, shared_changed: bool, new: &Validated) -> Plan {
    let mut plan = Plan::default();
    let mut names = BTreeSet::new();
    for flow in &new.flows {
        let name = flow.name().to_string();
        names.insert(name.clone());
        match running.get(&name) {
            None => plan.start.push(name),
            Some(fp) if shared_changed || *fp != flow_fingerprint(flow) => plan.restart.push(name),
            Some(_) => plan.unchanged.push(name),
        }
    }
    plan.stop = running
        .keys()
        .filter(|n| !names.contains(*n))
        .cloned()
        .collect();
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn cfg(text: &str) -> Validated {
        crate::config::Validated::parse(Path::new("t.yaml"), text).expect("valid config")
    }

    const FLOW_A: &str =
        "  - name: a\n    paths: [\"/l/a.log\"]\n    format: common\n    stream: s\n";
    const FLOW_B: &str =
        "  - name: b\n    paths: [\"/l/b.log\"]\n    format: common\n    stream: s\n";

    fn running(v: &Validated) -> BTreeMap<String, String> {
        v.flows
            .iter()
            .map(|f| (f.name().to_string(), flow_fingerprint(f)))
            .collect()
    }

    #[test]
    fn moving_a_flow_in_the_file_changes_nothing() {
        let old = cfg(&format!("flows:\n{FLOW_A}{FLOW_B}"));
        let new = cfg(&format!("# a comment\n\nflows:\n{FLOW_B}{FLOW_A}"));
        let p = plan(&running(&old), false, &new);
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(p.unchanged, vec!["b".to_string(), "a".to_string()]);
    }

    #[test]
    fn added_removed_and_changed_flows() {
        let old = cfg(&format!("flows:\n{FLOW_A}{FLOW_B}"));
        let changed_b = FLOW_B.replace("stream: s", "stream: t");
        let new = cfg(&format!(
            "flows:\n{changed_b}  - name: c\n    paths: [\"/l/c.log\"]\n    format: common\n    stream: s\n"
        ));
        let p = plan(&running(&old), false, &new);
        assert_eq!(p.start, vec!["c".to_string()]);
        assert_eq!(p.stop, vec!["a".to_string()]);
        assert_eq!(p.restart, vec!["b".to_string()]);
        assert!(p.unchanged.is_empty());
        let p = plan(&running(&old), true, &old);
        assert_eq!(p.restart.len(), 2, "shared settings changed: {p:?}");
    }

    #[test]
    fn locations_are_stripped_but_strings_kept() {
        let s = r#"X { a: Spanned { value: "Location { x }", referenced: Location { line: 3, column: 4, span: Span { start: 1 } }, defined: Location { line: 1, column: 1, span: Span { start: 2 } } }, b: 1 }"#;
        assert_eq!(
            strip_locations(s),
            r#"X { a: Spanned { value: "Location { x }", referenced: Location, defined: Location }, b: 1 }"#
        );
    }
}
