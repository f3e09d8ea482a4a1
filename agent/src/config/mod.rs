//! The agent's YAML configuration: its shape, its defaults, and validation.
//!
//! Parsing and validation happen in one place so `tailrace check` and
//! `tailrace run` reject exactly the same files. Every error names the file,
//! the line and column (from the YAML parser, or from the span of the value a
//! semantic check rejected), the key, and what was expected. Unknown keys are
//! errors: a misspelt `allowed_latness` must not silently fall back to the
//! default.
//!
//! Loading runs in three passes so one `tailrace check` reports every mistake:
//! the YAML is read into a tree with positions ([`crate::config_tree`]), the
//! tree is checked against the JSON Schema derived from the structs below
//! (unknown keys, types, durations, sizes, missing keys: all of them), and only
//! then deserialized and checked for meaning (globs, formats, limits, flows
//! that collide). [`json_schema`] is what `tailrace schema` prints.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use schemars::JsonSchema;
use serde::de::{self, Deserializer};
use serde::Deserialize;
use serde_saphyr::Spanned;
use tailrace_logformat::LogFormat;

/// Kinesis' limit on one record: data plus partition key.
pub const KINESIS_MAX_RECORD_BYTES: u64 = 1_048_576;
/// Longest partition key Kinesis accepts, in characters.
pub const KINESIS_MAX_PARTITION_KEY: usize = 256;

/// A configuration problem, rendered as `file:line:column: key: what is expected`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read config: {source}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// One or more problems: YAML syntax, unknown keys, wrong types or values.
    #[error("{}", render_problems(path, problems))]
    Invalid {
        /// The config file.
        path: PathBuf,
        /// Every problem found, not only the first.
        problems: Vec<Problem>,
    },
}

/// One semantic problem in a well-formed config file.
#[derive(Debug, Clone)]
pub struct Problem {
    /// 1-based line of the offending value (0 when unknown).
    pub line: u64,
    /// 1-based column of the offending value (0 when unknown).
    pub column: u64,
    /// Dotted key path, e.g. `flows[0].window`.
    pub key: String,
    /// What is wrong and what is expected.
    pub message: String,
}

fn render_problems(path: &Path, problems: &[Problem]) -> String {
    let mut out = String::new();
    for (i, p) in problems.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&format!("{}:{}:{}: ", path.display(), p.line, p.column));
        if !p.key.is_empty() {
            out.push_str(&p.key);
            out.push_str(": ");
        }
        out.push_str(&p.message);
    }
    out
}

/// The whole configuration file.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "tailrace agent configuration")]
pub struct Config {
    /// Where checkpoints live.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// Host identity carried in partials: `auto` (EC2 instance id via IMDSv2, else hostname) or a literal.
    #[serde(default = "default_host_id")]
    pub host_id: String,
    /// How often checkpoints are written when they changed.
    #[serde(
        default = "default_checkpoint_interval",
        deserialize_with = "de_duration",
        serialize_with = "ser_duration"
    )]
    #[schemars(with = "DurationText")]
    pub checkpoint_interval: Duration,
    /// How long SIGTERM may take to flush and wait for acknowledgements.
    #[serde(
        default = "default_shutdown_timeout",
        deserialize_with = "de_duration",
        serialize_with = "ser_duration"
    )]
    #[schemars(with = "DurationText")]
    pub shutdown_timeout: Duration,
    /// AWS settings shared by all flows.
    #[serde(default)]
    pub aws: AwsConfig,
    /// Self-metrics, the HTTP endpoint and health rules.
    #[serde(default)]
    pub monitoring: MonitoringConfig,
    /// The log flows: which files, how to parse them, where to send them.
    #[schemars(with = "Vec<FlowConfig>")]
    pub flows: Vec<Spanned<FlowConfig>>,
}

/// AWS client settings.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AwsConfig {
    /// Region; default from the SDK's chain (env, profile, IMDS).
    pub region: Option<String>,
    /// Endpoint override, e.g. a local emulator.
    pub endpoint_url: Option<String>,
}

/// Where to start reading a file that has no checkpoint yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StartAt {
    /// From the first byte.
    Beginning,
    /// From the current end (only new lines), for files present at the
    /// flow's first start (once it has checkpoints, new files are read whole).
    End,
}

/// What a flow sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Every line as written, packed into records.
    Raw,
    /// Per-window partial aggregates per client.
    Aggregate,
}

/// How records get their partition key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartitionKey {
    /// A random key per record: spreads load over all shards.
    Random,
    /// The host id: keeps one host's records on one shard.
    HostId,
    /// A fixed key.
    Fixed(String),
}

impl<'de> Deserialize<'de> for PartitionKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "random" => Ok(PartitionKey::Random),
            "host_id" => Ok(PartitionKey::HostId),
            _ if s.is_empty() || s.chars().count() > KINESIS_MAX_PARTITION_KEY => {
                Err(de::Error::custom(
                    "expected `random`, `host_id` or a fixed key of 1 to 256 characters",
                ))
            }
            _ => Ok(PartitionKey::Fixed(s)),
        }
    }
}

impl JsonSchema for PartitionKey {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "PartitionKey".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "`random` (spread over all shards), `host_id` (one host's records on one shard) or a fixed key of 1 to 256 characters.",
            "type": "string",
            "minLength": 1,
            "maxLength": KINESIS_MAX_PARTITION_KEY,
        })
    }
}

/// Schema of a duration written as text (`250ms`, `30s`, `5m`, `1h 30m`).
pub struct DurationText;

impl JsonSchema for DurationText {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A duration: numbers with units, e.g. `250ms`, `30s`, `5m`, `1h`, `1h 30m` (units: ns, us, ms, s, m, h, d and their long forms).",
            "type": "string",
            "pattern": DURATION_PATTERN,
            "x-tailrace": "duration",
        })
    }
}

/// Schema of a byte size: a number of bytes or text with a unit.
pub struct SizeText;

impl JsonSchema for SizeText {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Size".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A byte size: a number of bytes, or a number with a unit: `512 KiB`, `4 MiB`, `1 GiB` (powers of 1024; also k, m, g) or `10 MB` (powers of 1000).",
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": SIZE_PATTERN},
            ],
            "x-tailrace": "size",
        })
    }
}

/// What [`parse_duration`] accepts, as a JSON Schema pattern (a description:
/// the parser is the authority).
pub const DURATION_PATTERN: &str = r"^\s*([0-9]+\s*[a-zA-Z]+\s*)+$";
/// What [`parse_size`] accepts, as a JSON Schema pattern.
pub const SIZE_PATTERN: &str = r"^\s*[0-9]+(\.[0-9]*)?\s*([bB]|[kKmMgG]([iI]?[bB])?)?\s*$";

/// One flow: a set of files with one format going to one stream.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FlowConfig {
    /// Unique name; appears in checkpoints, partials and metrics.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Glob patterns of files to tail. Rotated copies may match too.
    #[schemars(with = "Vec<String>")]
    pub paths: Spanned<Vec<String>>,
    /// Glob patterns (matched against the file name) to skip; default: compressed files.
    #[serde(default = "default_exclude")]
    pub exclude: Vec<String>,
    /// A preset (`common`, `combined`, `vhost_combined`) or an Apache LogFormat string.
    #[schemars(with = "String")]
    pub format: Spanned<String>,
    /// Where to start in files with no checkpoint.
    #[serde(default = "default_start_at")]
    pub start_at: StartAt,
    /// Kinesis stream name (or ARN).
    #[schemars(length(min = 1))]
    pub stream: String,
    /// `raw` or `aggregate`.
    #[serde(default = "default_mode")]
    pub mode: Mode,
    /// Partition key strategy; default `random`.
    #[serde(
        default = "default_partition_key",
        serialize_with = "ser_partition_key"
    )]
    pub partition_key: PartitionKey,
    /// Longest line shipped whole; longer lines are truncated and counted.
    #[serde(default = "default_max_line", deserialize_with = "de_size")]
    #[schemars(with = "SizeText")]
    pub max_line_bytes: u64,
    /// Largest record the agent builds (data + key ≤ 1 MiB).
    #[serde(default = "default_record_bytes", deserialize_with = "de_size")]
    #[schemars(with = "SizeText")]
    pub max_record_bytes: u64,
    /// How long a partly filled raw record waits for more lines.
    #[serde(
        default = "default_linger",
        deserialize_with = "de_duration",
        serialize_with = "ser_duration"
    )]
    #[schemars(with = "DurationText")]
    pub linger: Duration,
    /// Aggregate mode: window length (tumbling, aligned to the epoch).
    #[serde(
        default = "default_window",
        deserialize_with = "de_spanned_duration",
        serialize_with = "ser_spanned_duration"
    )]
    #[schemars(with = "DurationText")]
    pub window: Spanned<Duration>,
    /// Aggregate mode: how long a window stays open after event time passes its end.
    #[serde(
        default = "default_lateness",
        deserialize_with = "de_duration",
        serialize_with = "ser_duration"
    )]
    #[schemars(with = "DurationText")]
    pub allowed_lateness: Duration,
    /// Aggregate mode: the Service dimension; default the flow name. Must be a value
    /// CloudWatch accepts as a dimension (1-1,024 printable ASCII characters).
    pub service: Option<String>,
    /// The IANA time zone (`Europe/Paris`) of times the format writes without an
    /// offset (`%{%d/%b/%Y:%H:%M:%S}t`); default: the host's time zone.
    #[schemars(with = "Option<String>")]
    pub timezone: Option<Spanned<String>>,
    /// Aggregate mode: the field holding the client (default `%a`/`%h`), e.g. `x_forwarded_for`.
    #[schemars(with = "Option<String>")]
    pub client_field: Option<Spanned<String>>,
    /// With `client_field`: the proxies trusted to have written it. A list of
    /// networks (`[10.0.0.0/8]`, recommended: the header counts only when the peer is
    /// one of them, and the client is its right-most untrusted entry), or a count N
    /// (the N-th entry from the right); `0` or `[]` trusts nobody. Default 1.
    #[serde(default = "default_trusted_proxies")]
    #[schemars(with = "TrustedProxiesText")]
    pub trusted_proxies: TrustedProxies,
    /// Aggregate mode: most distinct clients per window; the rest are merged into one overflow group.
    #[serde(default = "default_max_groups")]
    pub max_groups_per_window: usize,
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/tailrace")
}
fn default_host_id() -> String {
    "auto".into()
}
fn default_checkpoint_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_shutdown_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_exclude() -> Vec<String> {
    ["*.gz", "*.bz2", "*.xz", "*.zst", "*.zip", "*.lz4"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}
fn default_start_at() -> StartAt {
    StartAt::End
}
fn default_mode() -> Mode {
    Mode::Raw
}
fn default_partition_key() -> PartitionKey {
    PartitionKey::Random
}
fn default_max_line() -> u64 {
    1_048_576
}
fn default_record_bytes() -> u64 {
    KINESIS_MAX_RECORD_BYTES
}
fn default_linger() -> Duration {
    Duration::from_secs(1)
}
fn default_window() -> Spanned<Duration> {
    Spanned::new(
        Duration::from_secs(300),
        serde_saphyr::Location::UNKNOWN,
        serde_saphyr::Location::UNKNOWN,
    )
}
fn default_lateness() -> Duration {
    Duration::from_secs(60)
}
fn default_trusted_proxies() -> TrustedProxies {
    TrustedProxies::Hops(1)
}

/// `trusted_proxies` as written: a hop count or networks (one or a list).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum TrustedProxies {
    /// The N-th `client_field` entry from the right is the client; 0 trusts nobody.
    Hops(u32),
    /// One network (`10.0.0.0/8`) or address.
    One(String),
    /// Networks (CIDR) or addresses of trusted proxies; empty trusts nobody.
    Many(Vec<String>),
}

/// The schema of `trusted_proxies` (checked by hand: see `config_tree`).
#[allow(dead_code)]
struct TrustedProxiesText;

impl JsonSchema for TrustedProxiesText {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "TrustedProxies".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A hop count (0 or more) or trusted proxy networks: `10.0.0.0/8`, or a list of CIDRs and addresses.",
            "anyOf": [
                { "type": "integer", "minimum": 0 },
                { "type": "string" },
                { "type": "array", "items": { "type": "string" } }
            ],
            "x-tailrace": "proxies",
        })
    }
}
fn default_max_groups() -> usize {
    100_000
}

/// Parse `5m`, `30s`, `1h 30m`, `250ms`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|_| "expected a duration like `30s`, `5m` or `1h`".to_string())
}

/// Parse a byte size: `1048576`, `512 KiB`, `4 MiB`, `1 GiB`, `10 MB`, `1k`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let unit = unit.trim();
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => {
            return Err(format!(
                "expected a size like `512 KiB` or `4 MiB` (units: B, KiB, MiB, GiB, kB, MB, GB), not `{unit}`"
            ))
        }
    };
    let value: f64 = num
        .parse()
        .map_err(|_| "expected a size like `512 KiB` or `4 MiB`".to_string())?;
    if !(value.is_finite() && value >= 0.0) {
        return Err("expected a non-negative size".to_string());
    }
    Ok((value * mult as f64) as u64)
}

#[derive(Deserialize)]
#[serde(untagged)]
enum NumOrStr {
    Num(u64),
    Str(String),
}

fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_duration(*d))
}

fn ser_spanned_duration<S: serde::Serializer>(
    d: &Spanned<Duration>,
    s: S,
) -> Result<S::Ok, S::Error> {
    ser_duration(&d.value, s)
}

fn ser_partition_key<S: serde::Serializer>(k: &PartitionKey, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(match k {
        PartitionKey::Random => "random",
        PartitionKey::HostId => "host_id",
        PartitionKey::Fixed(key) => key,
    })
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(de::Error::custom)
}

fn de_spanned_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Spanned<Duration>, D::Error> {
    let s: Spanned<String> = Spanned::deserialize(d)?;
    let value = parse_duration(&s.value).map_err(de::Error::custom)?;
    Ok(Spanned::new(value, s.referenced, s.defined))
}

fn de_size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match NumOrStr::deserialize(d)? {
        NumOrStr::Num(n) => Ok(n),
        NumOrStr::Str(s) => parse_size(&s).map_err(de::Error::custom),
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Raw => "raw",
            Mode::Aggregate => "aggregate",
        })
    }
}

/// A flow after validation: the config plus what was compiled from it.
#[derive(Debug)]
pub struct Flow {
    /// The flow as configured.
    pub config: FlowConfig,
    /// The compiled LogFormat.
    pub format: LogFormat,
    /// Index of `client_field` in the format, when configured.
    pub client_field: Option<usize>,
    /// Which proxies are trusted to have written `client_field`.
    pub proxy_trust: crate::client_addr::ProxyTrust,
}

impl Flow {
    /// The flow's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }
    /// The Service dimension for this flow's partials.
    pub fn service(&self) -> &str {
        self.config.service.as_deref().unwrap_or(&self.config.name)
    }
}

/// A validated configuration, ready to run.
#[derive(Debug)]
pub struct Validated {
    /// Top-level settings (flows moved out into `flows`).
    pub state_dir: PathBuf,
    /// Configured host id (`auto` or a literal).
    pub host_id: String,
    /// Checkpoint write interval.
    pub checkpoint_interval: Duration,
    /// SIGTERM budget.
    pub shutdown_timeout: Duration,
    /// AWS settings.
    pub aws: AwsConfig,
    /// Self-metrics, the HTTP endpoint and health rules.
    pub monitoring: MonitoringConfig,
    /// The flows, compiled.
    pub flows: Vec<Flow>,
}

impl Validated {
    /// The flow called `name`.
    pub fn flow(&self, name: &str) -> Option<&Flow> {
        self.flows.iter().find(|f| f.name() == name)
    }
}

/// Read, parse and validate a config file.
pub fn load(path: &Path) -> Result<Validated, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
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
    let mut checker = crate::config_tree::Checker::new(&schema);
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

/// The JSON Schema of the config file (draft 2020-12), as `tailrace schema` prints it.
pub fn json_schema() -> serde_json::Value {
    let schema = schemars::schema_for!(Config);
    serde_json::to_value(&schema).unwrap_or_default()
}

/// Read the YAML into a tree with positions; syntax errors become problems.
fn read_tree(text: &str) -> Result<Spanned<crate::config_tree::Node>, Vec<Problem>> {
    use crate::config_tree::Node;
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

/// Position of the character `offset` (0-based) inside the scalar that starts
/// at `at`, when it sits on one line (plain, '…' or "…" scalars).
fn column_within(text: &str, at: serde_saphyr::Location, offset: usize) -> (u64, u64) {
    let fallback = (at.line(), at.column());
    let Some(line) = text.lines().nth((at.line() as usize).saturating_sub(1)) else {
        return fallback;
    };
    let start = (at.column() as usize).saturating_sub(1);
    let mut chars = line.chars().skip(start).peekable();
    let mut col = start;
    let quote = match chars.peek() {
        Some(&q) if q == '"' || q == '\'' => {
            chars.next();
            col += 1;
            Some(q)
        }
        _ => None,
    };
    let mut seen = 0;
    while seen < offset {
        match chars.next() {
            None => return fallback,
            Some('\\') if quote == Some('"') => {
                chars.next();
                col += 2;
            }
            Some('\'') if quote == Some('\'') => {
                chars.next();
                col += 2;
            }
            Some(_) => col += 1,
        }
        seen += 1;
    }
    (at.line(), col as u64 + 1)
}

fn validate(
    config: Config,
    text: &str,
    locs: &crate::config_tree::Locations,
) -> Result<Validated, Vec<Problem>> {
    use serde_saphyr::Location;
    let mut problems = Vec::new();
    // The position of `key`, else of its nearest enclosing key, else `fallback`.
    let locate = |key: &str, fallback: Location| {
        let mut k = key;
        loop {
            if let Some(loc) = locs.get(k).filter(|l| **l != Location::UNKNOWN) {
                return *loc;
            }
            match k.rfind(['.', '[']) {
                Some(i) => k = &k[..i],
                None => return fallback,
            }
        }
    };
    let mut top = |key: &str, message: &str| {
        let loc = locate(key, Location::UNKNOWN);
        problems.push(Problem {
            line: loc.line(),
            column: loc.column(),
            key: key.into(),
            message: message.into(),
        });
    };
    if config.flows.is_empty() {
        top("flows", "expected at least one flow");
    }
    if config.host_id.trim().is_empty() {
        top("host_id", "expected `auto` or a non-empty host id");
    } else if config.host_id != "auto" {
        if let Err(e) = tailrace_wire::dimension::check_dimension_value(&config.host_id) {
            top(
                "host_id",
                &format!("not usable as the CloudWatch `Host` dimension: {e}"),
            );
        }
    }
    if config.checkpoint_interval < Duration::from_millis(100) {
        top("checkpoint_interval", "expected at least 100ms");
    }
    for p in config.monitoring.problems() {
        top(&p.key, &p.message);
    }
    if !config.state_dir.is_absolute() {
        top(
            "state_dir",
            "expected an absolute path (the service's working directory is not yours)",
        );
    }
    let mut flows = Vec::new();
    let mut names = std::collections::HashMap::new();
    let mut reads: std::collections::HashMap<(String, String), String> =
        std::collections::HashMap::new();
    for (i, spanned) in config.flows.into_iter().enumerate() {
        let at = spanned.referenced;
        let flow = spanned.value;
        let mut problem_at = |pos: Option<(u64, u64)>, key: &str, message: String| {
            let key = format!("flows[{i}].{key}");
            let (line, column) = pos.unwrap_or_else(|| {
                let loc = locate(&key, at);
                (loc.line(), loc.column())
            });
            problems.push(Problem {
                line,
                column,
                key,
                message,
            });
        };
        if flow.name.is_empty()
            || !flow
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            problem_at(
                None,
                "name",
                format!(
                    "expected letters, digits, `-`, `_` or `.`, got `{}`",
                    flow.name
                ),
            );
        } else if let Some(first) = names.insert(flow.name.clone(), i) {
            problem_at(
                None,
                "name",
                format!(
                    "flow name `{}` is already used by flows[{first}]; names must be unique",
                    flow.name
                ),
            );
        }
        if flow.paths.value.is_empty() {
            problem_at(None, "paths", "expected at least one glob".into());
        }
        for (j, p) in flow.paths.value.iter().enumerate() {
            let key = format!("paths[{j}]");
            if p.trim().is_empty() {
                problem_at(
                    None,
                    &key,
                    "expected an absolute glob, got an empty path".into(),
                );
            } else if let Err(e) = crate::globs::validate(p) {
                problem_at(None, &key, e);
            } else if !p.starts_with('/') {
                problem_at(
                None,
                    &key,
                    format!("`{p}` must be an absolute path (the service's working directory is not yours)"),
                );
            } else if let Some(other) =
                reads.insert((flow.stream.clone(), p.clone()), flow.name.clone())
            {
                problem_at(
                None,
                    &key,
                    format!(
                        "flow `{other}` already sends `{p}` to stream `{}`: every line would be sent twice",
                        flow.stream
                    ),
                );
            }
        }
        for (j, p) in flow.exclude.iter().enumerate() {
            if let Err(e) = crate::globs::validate(p) {
                problem_at(None, &format!("exclude[{j}]"), e);
            }
        }
        if flow.stream.is_empty() {
            problem_at(None, "stream", "expected a Kinesis stream name".into());
        }
        if let Some(service) = &flow.service {
            if let Err(e) = tailrace_wire::dimension::check_dimension_value(service) {
                problem_at(
                    None,
                    "service",
                    format!("CloudWatch would refuse it as the `Service` dimension: {e}"),
                );
            }
        }
        let zone = match &flow.timezone {
            None => Some(tailrace_logformat::Zone::system()),
            Some(tz) => match tailrace_logformat::Zone::named(tz.value.trim()) {
                Ok(z) => Some(z),
                Err(e) => {
                    problem_at(None, "timezone", e.to_string());
                    None
                }
            },
        };
        if flow.max_record_bytes < 1024 || flow.max_record_bytes > KINESIS_MAX_RECORD_BYTES {
            problem_at(
                None,
                "max_record_bytes",
                format!(
                    "expected between 1 KiB and 1 MiB (Kinesis' limit), got {}",
                    flow.max_record_bytes
                ),
            );
        }
        if flow.max_line_bytes < 64 {
            problem_at(
                None,
                "max_line_bytes",
                format!("expected at least 64 bytes, got {}", flow.max_line_bytes),
            );
        }
        let window = flow.window.value;
        if flow.mode == Mode::Aggregate {
            if window < Duration::from_secs(60)
                || window > Duration::from_secs(3600)
                || window.subsec_nanos() != 0
            {
                problem_at(
                    None,
                    "window",
                    format!(
                        "expected whole seconds between 1m and 1h, got {}",
                        humantime::format_duration(window)
                    ),
                );
            } else if 3600 % window.as_secs() != 0 {
                problem_at(
                None,
                    "window",
                    format!(
                        "expected a window that divides an hour (1m, 2m, 3m, 4m, 5m, 6m, 10m, 12m, 15m, 20m, 30m or 1h), got {}",
                        humantime::format_duration(window)
                    ),
                );
            }
        }
        if flow.allowed_lateness > Duration::from_secs(24 * 3600) {
            problem_at(None, "allowed_lateness", "expected at most 24h".into());
        }
        if flow.max_groups_per_window == 0 {
            problem_at(None, "max_groups_per_window", "expected at least 1".into());
        }
        let format = match LogFormat::compile(&flow.format.value) {
            Ok(f) => Some(f.with_zone(zone.clone().unwrap_or_else(tailrace_logformat::Zone::utc))),
            Err(e) => {
                let loc = locate(&format!("flows[{i}].format"), at);
                problem_at(
                    Some(column_within(text, loc, e.column)),
                    "format",
                    format!(
                        "LogFormat does not compile at character {} of the format: {}",
                        e.column + 1,
                        e.message
                    ),
                );
                None
            }
        };
        let proxy_trust = match &flow.trusted_proxies {
            TrustedProxies::Hops(n) => crate::client_addr::ProxyTrust::Hops(*n as usize),
            TrustedProxies::One(one) => {
                let list = std::slice::from_ref(one);
                crate::client_addr::ProxyTrust::Networks(networks(list, &mut |j, m| {
                    let _ = j;
                    problem_at(None, "trusted_proxies", m)
                }))
            }
            TrustedProxies::Many(list) => {
                crate::client_addr::ProxyTrust::Networks(networks(list, &mut |j, m| {
                    problem_at(None, &format!("trusted_proxies[{j}]"), m)
                }))
            }
        };
        let mut client_field = None;
        if let Some(format) = &format {
            if flow.client_field.is_some()
                && matches!(proxy_trust, crate::client_addr::ProxyTrust::Networks(ref n) if !n.is_empty())
                && format.field_index("client").is_none()
            {
                problem_at(
                    None,
                    "trusted_proxies",
                    "trusted networks need the peer's address in the format (%a, or %h with HostnameLookups Off) to check that the request came from a trusted proxy".into(),
                );
            }
            if flow.mode == Mode::Aggregate && !format.has_time() {
                problem_at(
                    None,
                    "format",
                    "aggregate mode needs a time field (%t or %{...}t) to window by".into(),
                );
            }
            if let Some(cf) = &flow.client_field {
                match format.field_index(&cf.value) {
                    Some(idx) => client_field = Some(idx),
                    None => problem_at(
                        None,
                        "client_field",
                        format!(
                            "the format has no field `{}` (it has: {})",
                            cf.value,
                            format.field_names().collect::<Vec<_>>().join(", ")
                        ),
                    ),
                }
            } else if flow.mode == Mode::Aggregate && format.field_index("client").is_none() {
                problem_at(
                    None,
                    "format",
                    "aggregate mode needs the client: add %h or %a, or set client_field".into(),
                );
            }
        }
        if let Some(format) = format {
            flows.push(Flow {
                config: flow,
                format,
                client_field,
                proxy_trust,
            });
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Validated {
        state_dir: config.state_dir,
        host_id: config.host_id,
        checkpoint_interval: config.checkpoint_interval,
        shutdown_timeout: config.shutdown_timeout,
        aws: config.aws,
        monitoring: config.monitoring,
        flows,
    })
}

/// Parse `trusted_proxies` entries; each bad one is reported through `problem`
/// (its index and the message).
fn networks(list: &[String], problem: &mut dyn FnMut(usize, String)) -> Vec<ipnet::IpNet> {
    let mut nets = Vec::with_capacity(list.len());
    for (j, text) in list.iter().enumerate() {
        match crate::client_addr::parse_network(text) {
            Ok(n) => nets.push(n),
            Err(m) => problem(j, m),
        }
    }
    nets
}

// The `monitoring` section (self-metrics, HTTP endpoint, health), kept
// together: see docs/OPERATIONS.md.

/// The `monitoring` section.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct MonitoringConfig {
    /// Self-metrics published to CloudWatch.
    pub cloudwatch: SelfMetricsConfig,
    /// The HTTP endpoint (`/metrics`, `/health`).
    pub http: HttpConfig,
    /// When `/health` reports a problem.
    pub health: HealthConfig,
}

/// `true`, `false` or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Toggle {
    /// Decided at start (see where it is used).
    Auto,
    /// On.
    On,
    /// Off.
    Off,
}

impl JsonSchema for Toggle {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Toggle".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "`true`, `false` or `auto`.",
            "anyOf": [{ "type": "boolean" }, { "const": "auto" }],
            "x-tailrace": "toggle",
        })
    }
}

impl<'de> Deserialize<'de> for Toggle {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum BoolOrStr {
            Bool(bool),
            Str(String),
        }
        match BoolOrStr::deserialize(d)? {
            BoolOrStr::Bool(true) => Ok(Toggle::On),
            BoolOrStr::Bool(false) => Ok(Toggle::Off),
            BoolOrStr::Str(s) if s == "auto" => Ok(Toggle::Auto),
            BoolOrStr::Str(s) => Err(de::Error::custom(format!(
                "expected `true`, `false` or `auto`, got `{s}`"
            ))),
        }
    }
}

/// `monitoring.cloudwatch`: the agent's own metrics in CloudWatch.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SelfMetricsConfig {
    /// `auto` (default: on when the agent runs on EC2, i.e. the instance
    /// metadata service answers), `true` or `false`.
    pub enabled: Toggle,
    /// Metric namespace.
    pub namespace: String,
    /// How often to publish.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    #[schemars(with = "DurationText")]
    pub interval: Duration,
    /// Add a `Host` dimension (the host id) next to `Flow`.
    pub host_dimension: bool,
}

impl Default for SelfMetricsConfig {
    fn default() -> Self {
        SelfMetricsConfig {
            enabled: Toggle::Auto,
            namespace: "Tailrace/Agent".into(),
            interval: Duration::from_secs(60),
            host_dimension: false,
        }
    }
}

/// `monitoring.http`: Prometheus `/metrics` and `/health`.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Off by default.
    pub enabled: bool,
    /// Address to listen on; default `127.0.0.1:9877`.
    pub listen: String,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            enabled: false,
            listen: "127.0.0.1:9877".into(),
        }
    }
}

/// `monitoring.health`: thresholds of `/health`.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// A flow whose files hold unacknowledged bytes and that had nothing
    /// acknowledged for this long is stalled (aggregate flows: at least
    /// window + allowed_lateness + 1m).
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    #[schemars(with = "DurationText")]
    pub stall_after: Duration,
    /// Kinesis calls failing (nothing acknowledged) for this long is unhealthy.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    #[schemars(with = "DurationText")]
    pub kinesis_failing_after: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            stall_after: Duration::from_secs(600),
            kinesis_failing_after: Duration::from_secs(300),
        }
    }
}

impl MonitoringConfig {
    /// Semantic problems of this section (positions are filled in by the
    /// caller, which knows where each key is).
    pub fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut problem = |key: &str, message: String| {
            out.push(Problem {
                line: 0,
                column: 0,
                key: format!("monitoring.{key}"),
                message,
            })
        };
        let ns = &self.cloudwatch.namespace;
        if ns.is_empty() || ns.len() > 255 || ns.starts_with("AWS/") || !ns.is_ascii() {
            problem(
                "cloudwatch.namespace",
                format!("expected 1 to 255 ASCII characters not starting with `AWS/`, got `{ns}`"),
            );
        }
        let interval = self.cloudwatch.interval;
        if interval < Duration::from_secs(1) || interval > Duration::from_secs(3600) {
            problem("cloudwatch.interval", "expected between 1s and 1h".into());
        }
        if self.http.listen.parse::<std::net::SocketAddr>().is_err() {
            problem(
                "http.listen",
                format!(
                    "expected an address and port like `127.0.0.1:9877`, got `{}`",
                    self.http.listen
                ),
            );
        }
        for (key, d) in [
            ("health.stall_after", self.health.stall_after),
            (
                "health.kinesis_failing_after",
                self.health.kinesis_failing_after,
            ),
        ] {
            if d < Duration::from_secs(1) {
                problem(key, "expected at least 1s".into());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<Validated, ConfigError> {
        parse(Path::new("test.yaml"), text)
    }

    const GOOD: &str = "state_dir: /tmp/x\nflows:\n  - name: web\n    paths: [\"/var/log/apache2/access.log*\"]\n    format: combined\n    stream: s\n";

    #[test]
    fn minimal_config_gets_defaults() {
        let v = parse_str(GOOD).expect("valid");
        let f = &v.flows[0];
        assert_eq!(f.config.mode, Mode::Raw);
        assert_eq!(f.config.start_at, StartAt::End);
        assert_eq!(f.config.window.value, Duration::from_secs(300));
        assert_eq!(f.config.partition_key, PartitionKey::Random);
        assert_eq!(f.service(), "web");
    }

    #[test]
    fn unknown_key_is_an_error_with_location() {
        let text = format!("{GOOD}    allowed_latness: 1m\n");
        let err = parse_str(&text).expect_err("unknown key").to_string();
        assert!(err.contains("allowed_latness"), "{err}");
        assert!(err.contains("test.yaml"), "{err}");
        assert!(err.contains('7'), "line 7 expected in: {err}");
    }

    #[test]
    fn bad_values_are_all_reported() {
        let text = "flows:\n  - name: web\n    paths: [\"relative/*.log\"]\n    format: \"%h %Z\"\n    stream: s\n    mode: aggregate\n    window: 10s\n";
        let err = parse_str(text).expect_err("invalid").to_string();
        assert!(err.contains("flows[0].paths"), "{err}");
        assert!(err.contains("flows[0].format"), "{err}");
        assert!(err.contains("flows[0].window"), "{err}");
        assert!(err.contains("test.yaml:7:"), "window line: {err}");
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("4 MiB"), Ok(4 << 20));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert_eq!(parse_size("1 MB"), Ok(1_000_000));
        assert!(parse_size("4 parsecs").is_err());
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert!(parse_duration("soon").is_err());
    }
}
