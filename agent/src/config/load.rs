//! Loading a config file: read it, check its YAML tree against the schema,
//! deserialize it, then check what it means; every problem of every pass is
//! collected, sorted by position and reported at once.

use std::path::Path;

use serde_saphyr::Spanned;

use super::tree::{self, Node};
use super::validate::validate;
use super::{json_schema, Config, ConfigError, Problem, Validated};

impl Validated {
    /// Read, parse and validate a config file.
    pub fn load(path: &Path) -> Result<Validated, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Validated::parse(path, &text)
    }

    /// Parse and validate config text; `path` is used in messages.
    pub fn parse(path: &Path, text: &str) -> Result<Validated, ConfigError> {
        let invalid = |mut problems: Vec<Problem>| {
            problems.sort_by_key(|p| (p.line, p.column));
            ConfigError::Invalid {
                path: path.to_path_buf(),
                problems,
            }
        };
        let doc = read_tree(text).map_err(invalid)?;
        let schema = json_schema();
        let mut checker = tree::Checker::new(&schema);
        checker.check_document(&doc);
        if !checker.problems.is_empty() {
            return Err(invalid(checker.problems));
        }
        // The walk above accepts only what this accepts; if they ever disagree,
        // the deserializer's own message is still precise.
        let config: Config =
            serde_saphyr::from_str(text).map_err(|e| invalid(vec![yaml_problem(&e)]))?;
        validate(config, text, &checker.locations).map_err(invalid)
    }
}

/// Read the YAML into a tree with positions; syntax errors become problems.
fn read_tree(text: &str) -> Result<Spanned<Node>, Vec<Problem>> {
    let empty = || Problem {
        line: 1,
        column: 1,
        key: String::new(),
        message: "the file is empty: expected a mapping with at least `flows`".into(),
    };
    let has_content = text.lines().any(|l| {
        let t = l.trim();
        !t.is_empty() && !t.starts_with('#') && t != "---" && t != "..."
    });
    if !has_content {
        return Err(vec![empty()]);
    }
    match serde_saphyr::from_str::<Spanned<Node>>(text) {
        Ok(doc) if matches!(doc.value, Node::Null) => Err(vec![empty()]),
        Ok(doc) => Ok(doc),
        Err(e) => {
            // A tab in the indentation is the most common cause and the
            // parser's own message rarely says so: name every such line.
            let tabs: Vec<Problem> = text
                .lines()
                .enumerate()
                .filter_map(|(i, l)| {
                    let indent = &l[..l.len() - l.trim_start().len()];
                    indent.find('\t').map(|col| Problem {
                        line: i as u64 + 1,
                        column: col as u64 + 1,
                        key: String::new(),
                        message: "tab in indentation: YAML indents with spaces only".into(),
                    })
                })
                .collect();
            if tabs.is_empty() {
                Err(vec![yaml_problem(&e)])
            } else {
                Err(tabs)
            }
        }
    }
}

/// A problem from the YAML parser or deserializer, with its position.
fn yaml_problem(e: &serde_saphyr::Error) -> Problem {
    let inner = e.without_snippet();
    let at = inner.location().unwrap_or(serde_saphyr::Location::UNKNOWN);
    let mut message = inner.to_string();
    if let serde_saphyr::Error::DuplicateMappingKey { key: Some(key), .. } = inner {
        message = format!("key `{key}` appears twice in the same mapping");
    }
    // The position goes in front, as for every other problem.
    for suffix in [
        format!(" at line {}, column {}", at.line(), at.column()),
        format!(" at line {} column {}", at.line(), at.column()),
    ] {
        if let Some(i) = message.find(&suffix) {
            message.replace_range(i..i + suffix.len(), "");
        }
    }
    Problem {
        line: at.line(),
        column: at.column(),
        key: String::new(),
        message: format!("invalid YAML: {}", message.trim()),
    }
}
