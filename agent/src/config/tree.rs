//! The config file as a YAML tree with positions, and the structural check of
//! that tree against the config's JSON Schema ([`crate::config::json_schema`]).
//!
//! serde stops at the first error it meets, so a file with a misspelt key and
//! a bad duration would need two rounds of `tailrace check`. This module reads
//! the file once into a generic tree whose every key and value carries its
//! line and column, then walks it against the schema derived from the config
//! structs and collects every unknown key (with the nearest valid key), wrong
//! type, negative number, bad duration or size and missing key. Only a file
//! that passes this walk is deserialized into [`crate::config::Config`].
//!
//! Why not the `jsonschema` crate: it validates JSON values, which carry no
//! YAML positions, and its messages are written for schema authors. The walk
//! covers exactly the subset of JSON Schema that schemars emits for our types
//! (`$ref`, `anyOf`, `type`, `enum`, `properties`, `required`,
//! `additionalProperties`, `items`, `minimum`/`maximum`) plus our own
//! `x-tailrace` marker for durations and sizes; the test of the schema against
//! the shipped example uses `jsonschema` itself.

use std::collections::HashMap;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_saphyr::{Location, Spanned};

use super::units::{parse_duration, parse_size};
use super::Problem;

/// One YAML node, with positions on every child.
#[derive(Debug, Clone)]
pub enum Node {
    /// `~`, `null` or nothing after the colon.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A whole number.
    Int(i128),
    /// A number with a fraction or exponent.
    Float(f64),
    /// Any other scalar.
    Str(String),
    /// A sequence.
    Seq(Vec<Spanned<Node>>),
    /// A mapping, in file order.
    Map(Vec<(Spanned<String>, Spanned<Node>)>),
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(v.into()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Int(v.into()))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Node, E> {
        Ok(Node::Int(v))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Node, E> {
        Ok(Node::Int(i128::try_from(v).unwrap_or(i128::MAX)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Node>>()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            let value = map.next_value::<Spanned<Node>>()?;
            entries.push((key, value));
        }
        Ok(Node::Map(entries))
    }
}

impl Node {
    /// How a message names what was found.
    fn describe(&self) -> String {
        match self {
            Node::Null => "nothing (an empty value)".into(),
            Node::Bool(b) => format!("`{b}`"),
            Node::Int(i) => format!("`{i}`"),
            Node::Float(f) => format!("`{f}`"),
            Node::Str(s) => format!("`{s}`"),
            Node::Seq(_) => "a list".into(),
            Node::Map(_) => "a mapping (`key: value` lines)".into(),
        }
    }
    /// The scalar as text (what serde would hand a `String` field).
    fn scalar_text(&self) -> Option<String> {
        match self {
            Node::Bool(b) => Some(b.to_string()),
            Node::Int(i) => Some(i.to_string()),
            Node::Float(f) => Some(f.to_string()),
            Node::Str(s) => Some(s.clone()),
            _ => None,
        }
    }
}

/// Where each key path's value starts, e.g. `flows[0].window` → 12:13.
pub type Locations = HashMap<String, Location>;

/// Walks a [`Node`] tree against a JSON Schema and collects [`Problem`]s.
pub struct Checker<'s> {
    root: &'s Value,
    /// Every problem found, in file order.
    pub problems: Vec<Problem>,
    /// Positions of every value seen, by key path.
    pub locations: Locations,
}

/// Join a key path: `flows[0]` + `window` → `flows[0].window`.
pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// The closest of `candidates` to `word`, when it is close enough to be a typo.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(2);
    candidates
        .into_iter()
        .map(|c| (strsim::levenshtein(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn first_sentence(s: &str) -> &str {
    let s = s.trim();
    match s.find(". ") {
        Some(i) => &s[..i],
        None => s.trim_end_matches('.'),
    }
}

impl<'s> Checker<'s> {
    /// A checker for the schema `root` (whose `$defs` resolve `$ref`s).
    pub fn new(root: &'s Value) -> Self {
        Checker {
            root,
            problems: Vec::new(),
            locations: HashMap::new(),
        }
    }

    /// Check the whole document.
    pub fn check_document(&mut self, doc: &Spanned<Node>) {
        let root = self.root;
        self.check(root, doc, "");
    }

    fn resolve(&self, mut s: &'s Value) -> &'s Value {
        while let Some(r) = s.get("$ref").and_then(Value::as_str) {
            let target = r
                .strip_prefix("#/$defs/")
                .and_then(|name| self.root.get("$defs")?.get(name));
            match target {
                Some(t) => s = t,
                None => break,
            }
        }
        s
    }

    fn problem(&mut self, at: Location, key: &str, message: String) {
        self.problems.push(Problem {
            line: at.line(),
            column: at.column(),
            key: key.to_string(),
            message,
        });
    }

    fn check(&mut self, schema: &'s Value, node: &Spanned<Node>, path: &str) {
        let at = node.referenced;
        self.locations.insert(path.to_string(), at);
        let schema = self.resolve(schema);
        let value = &node.value;
        match schema.get("x-tailrace").and_then(Value::as_str) {
            Some("duration") => {
                let result = match value {
                    Node::Str(s) => parse_duration(s).map(|_| ()),
                    Node::Int(_) | Node::Float(_) => {
                        Err("expected a duration with a unit, like `30s`, `5m` or `1h`".into())
                    }
                    _ => Err("expected a duration like `30s`, `5m` or `1h`".into()),
                };
                if let Err(e) = result {
                    self.problem(at, path, format!("{e}, got {}", value.describe()));
                }
                return;
            }
            Some("toggle") => {
                if !matches!(value, Node::Bool(_)) && !matches!(value, Node::Str(s) if s == "auto")
                {
                    self.problem(
                        at,
                        path,
                        format!(
                            "expected `true`, `false` or `auto`, got {}",
                            value.describe()
                        ),
                    );
                }
                return;
            }
            Some("proxies") => {
                match value {
                    Node::Int(i) if *i < 0 => self.problem(
                        at,
                        path,
                        format!(
                            "expected a whole number of 0 or more, or trusted proxy networks like `10.0.0.0/8`, got {}",
                            value.describe()
                        ),
                    ),
                    Node::Int(_) | Node::Str(_) => {}
                    Node::Seq(items) => {
                        for (i, item) in items.iter().enumerate() {
                            let p = format!("{path}[{i}]");
                            self.locations.insert(p.clone(), item.referenced);
                            if !matches!(item.value, Node::Str(_)) {
                                self.problem(
                                    item.referenced,
                                    &p,
                                    format!(
                                        "expected a network like `10.0.0.0/8` or an address, got {}",
                                        item.value.describe()
                                    ),
                                );
                            }
                        }
                    }
                    _ => self.problem(
                        at,
                        path,
                        format!(
                            "expected a whole number of 0 or more, or trusted proxy networks like `10.0.0.0/8`, got {}",
                            value.describe()
                        ),
                    ),
                }
                return;
            }
            Some("size") => {
                let result = match value {
                    Node::Int(i) if *i < 0 => Err("expected a size of at least 0 bytes".into()),
                    Node::Int(_) => Ok(()),
                    Node::Str(s) => parse_size(s).map(|_| ()),
                    _ => Err("expected a size like `4096`, `512 KiB` or `1 MiB`".into()),
                };
                if let Err(e) = result {
                    self.problem(at, path, format!("{e}, got {}", value.describe()));
                }
                return;
            }
            _ => {}
        }
        if let Some(branches) = schema
            .get("anyOf")
            .or_else(|| schema.get("oneOf"))
            .and_then(Value::as_array)
        {
            self.check_any(branches, node, path);
            return;
        }
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
            let names: Vec<&str> = allowed.iter().filter_map(Value::as_str).collect();
            self.check_enum(&names, node, path);
            return;
        }
        if let Some(c) = schema.get("const").and_then(Value::as_str) {
            self.check_enum(&[c], node, path);
            return;
        }
        let types: Vec<&str> = match schema.get("type") {
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
            _ => return,
        };
        let fits = |t: &str| match (t, value) {
            ("null", Node::Null) => true,
            ("boolean", Node::Bool(_)) => true,
            ("integer", Node::Int(_)) => true,
            ("number", Node::Int(_) | Node::Float(_)) => true,
            // A plain scalar such as `123` is text to a string field.
            ("string", Node::Str(_) | Node::Int(_) | Node::Float(_) | Node::Bool(_)) => true,
            ("array", Node::Seq(_)) => true,
            ("object", Node::Map(_)) => true,
            _ => false,
        };
        let Some(&ty) = types.iter().find(|t| fits(t)) else {
            let wanted = types
                .iter()
                .filter(|t| **t != "null")
                .map(|t| type_name(t, schema))
                .collect::<Vec<_>>()
                .join(" or ");
            self.problem(
                at,
                path,
                format!("expected {wanted}, got {}", value.describe()),
            );
            return;
        };
        match (ty, value) {
            ("integer", Node::Int(i)) => self.check_range(schema, *i, at, path),
            ("string", _) => {
                if let (Some(min), Some(text)) = (
                    schema.get("minLength").and_then(Value::as_u64),
                    value.scalar_text(),
                ) {
                    if (text.chars().count() as u64) < min {
                        self.problem(at, path, "expected a non-empty value".into());
                    }
                }
            }
            ("array", Node::Seq(items)) => {
                if let Some(item_schema) = schema.get("items") {
                    for (i, item) in items.iter().enumerate() {
                        self.check(item_schema, item, &format!("{path}[{i}]"));
                    }
                }
            }
            ("object", Node::Map(entries)) => self.check_object(schema, entries, at, path),
            _ => {}
        }
    }

    fn check_any(&mut self, branches: &'s [Value], node: &Spanned<Node>, path: &str) {
        // Unit enum variants with doc comments: `oneOf` of `const`s.
        let consts: Vec<&str> = branches
            .iter()
            .filter_map(|b| self.resolve(b).get("const").and_then(Value::as_str))
            .collect();
        if !consts.is_empty() && consts.len() == branches.len() {
            self.locations.insert(path.to_string(), node.referenced);
            self.check_enum(&consts, node, path);
            return;
        }
        let non_null: Vec<&'s Value> = branches
            .iter()
            .filter(|b| self.resolve(b).get("type").and_then(Value::as_str) != Some("null"))
            .collect();
        if matches!(node.value, Node::Null) && non_null.len() < branches.len() {
            self.locations.insert(path.to_string(), node.referenced);
            return;
        }
        let mut first_failure = None;
        for b in &non_null {
            let mut scratch = Checker::new(self.root);
            scratch.check(b, node, path);
            if scratch.problems.is_empty() {
                self.locations.extend(scratch.locations);
                return;
            }
            first_failure.get_or_insert(scratch);
        }
        if let Some(scratch) = first_failure {
            self.problems.extend(scratch.problems);
            self.locations.extend(scratch.locations);
        }
    }

    fn check_enum(&mut self, names: &[&str], node: &Spanned<Node>, path: &str) {
        let value = &node.value;
        let text = value.scalar_text();
        if text.as_deref().is_some_and(|t| names.contains(&t)) {
            return;
        }
        let list = names
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(" or ");
        let hint = text
            .as_deref()
            .and_then(|t| suggest(t, names.iter().copied()))
            .map(|s| format!("; did you mean `{s}`?"))
            .unwrap_or_default();
        self.problem(
            node.referenced,
            path,
            format!("expected {list}, got {}{hint}", value.describe()),
        );
    }

    fn check_range(&mut self, schema: &Value, i: i128, at: Location, path: &str) {
        let min = schema
            .get("minimum")
            .and_then(Value::as_i64)
            .map(i128::from);
        let max = schema
            .get("maximum")
            .and_then(Value::as_u64)
            .map(i128::from)
            .or(match schema.get("format").and_then(Value::as_str) {
                Some("uint32") => Some(u32::MAX.into()),
                Some("uint" | "uint64") => Some(u64::MAX.into()),
                _ => None,
            });
        if let Some(min) = min.filter(|m| i < *m) {
            let what = if min == 0 {
                "expected a whole number of 0 or more".to_string()
            } else {
                format!("expected a whole number of at least {min}")
            };
            self.problem(at, path, format!("{what}, got `{i}`"));
        } else if let Some(max) = max.filter(|m| i > *m) {
            self.problem(at, path, format!("expected at most {max}, got `{i}`"));
        }
    }

    fn check_object(
        &mut self,
        schema: &'s Value,
        entries: &[(Spanned<String>, Spanned<Node>)],
        at: Location,
        path: &str,
    ) {
        static EMPTY: std::sync::OnceLock<serde_json::Map<String, Value>> =
            std::sync::OnceLock::new();
        let props = schema
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or_else(|| EMPTY.get_or_init(serde_json::Map::new));
        let closed = schema.get("additionalProperties") == Some(&Value::Bool(false));
        for (key, value) in entries {
            let key_path = join(path, &key.value);
            match props.get(&key.value) {
                Some(prop) => self.check(prop, value, &key_path),
                None if closed => {
                    let hint = match suggest(&key.value, props.keys().map(String::as_str)) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => format!(
                            "expected one of: {}",
                            props.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    };
                    self.problem(
                        key.referenced,
                        &key_path,
                        format!("unknown key `{}`; {hint}", key.value),
                    );
                }
                None => {}
            }
        }
        if let Some(required) = schema.get("required").and_then(Value::as_array) {
            for name in required.iter().filter_map(Value::as_str) {
                if entries.iter().all(|(k, _)| k.value != name) {
                    let what = props
                        .get(name)
                        .map(|p| self.resolve(p))
                        .and_then(|p| p.get("description"))
                        .or_else(|| props.get(name).and_then(|p| p.get("description")))
                        .and_then(Value::as_str)
                        .map(|d| format!(": {}", first_sentence(d)))
                        .unwrap_or_default();
                    let shown = if path.is_empty() { "<top level>" } else { path };
                    self.problem(at, shown, format!("missing required key `{name}`{what}"));
                }
            }
        }
    }
}

/// How a message names a JSON Schema type.
fn type_name(t: &str, schema: &Value) -> String {
    match t {
        "string" => "text".into(),
        "integer" => "a whole number".into(),
        "number" => "a number".into(),
        "boolean" => "`true` or `false`".into(),
        "array" => match schema
            .get("items")
            .and_then(|i| i.get("type"))
            .and_then(Value::as_str)
        {
            Some("string") => "a list of text values".into(),
            _ => "a list".into(),
        },
        "object" => "a mapping (`key: value` lines)".into(),
        other => other.into(),
    }
}
