//! The agent's YAML configuration: its shape and its defaults.
//!
//! `tailrace check` and `tailrace run` load a file the same way, so they
//! reject exactly the same files. Every error names the file, the line and
//! column, the key, and what was expected; unknown keys are errors (a misspelt
//! `allowed_latness` must not silently fall back to the default).
//!
//! # Layout
//!
//! - this file: the types of the file and their defaults, the error types,
//!   and [`json_schema`], which `tailrace schema` prints;
//! - [`patterns`]: what a `paths` glob may be; [`proxies`]: the trusted
//!   proxies (`ProxyTrust`) a flow's client address is chosen through;
//! - [`units`]: the text units (durations, sizes, toggles) and their serde
//!   helpers;
//! - [`load`]: [`Validated::load`] and [`Validated::parse`], in three passes
//!   so one `tailrace check` reports every mistake: the YAML is read into a
//!   tree with positions ([`tree`]), the tree is checked against the JSON
//!   Schema derived from the types here (unknown keys, types, durations,
//!   sizes, missing keys: all of them), and only then deserialized and checked
//!   for meaning ([`validate`]: globs, formats, limits, flows that collide).

pub mod load;
pub mod patterns;
pub mod proxies;
pub mod tree;
pub mod units;
pub mod validate;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use schemars::JsonSchema;
use serde::de::{self, Deserializer};
use serde::Deserialize;
use serde_saphyr::Spanned;
use tailrace_logformat::LogFormat;

use self::units::{
    de_duration, de_size, de_spanned_duration, ser_duration, ser_spanned_duration, DurationText,
    SizeText, Toggle,
};

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

/// The schema of `trusted_proxies` (checked by hand: see `config::tree`).
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

fn ser_partition_key<S: serde::Serializer>(k: &PartitionKey, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(match k {
        PartitionKey::Random => "random",
        PartitionKey::HostId => "host_id",
        PartitionKey::Fixed(key) => key,
    })
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
    pub proxy_trust: proxies::ProxyTrust,
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

/// The JSON Schema of the config file (draft 2020-12), as `tailrace schema` prints it.
pub fn json_schema() -> serde_json::Value {
    let schema = schemars::schema_for!(Config);
    serde_json::to_value(&schema).unwrap_or_default()
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
    /// Also publish `OldestUnacknowledgedAge` with a `Host` dimension (the
    /// host id) next to `Flow`, for a per-host stall alarm. Only that
    /// metric: each host's series is a custom metric billed per month.
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
