//! Settings of the aggregator: the one front door. Every binary and
//! subcommand (the Lambda's `bootstrap`, `inventory-bootstrap`, and
//! `tailrace-aggregator consume`, `replay`, `notify`, `resend`, `inventory`)
//! builds one [`Settings`] from the environment ([`Settings::from_lookup`],
//! the only reader of these variables), then lets the command line override
//! it through one flattened clap struct ([`SettingsFlags`], whose flags have
//! no defaults and read no variables of their own), the way ripgrep turns
//! its `LowArgs` into `HiArgs`. A default lives once, in a constant below.
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `TAILRACE_METADATA` | `s3://bucket/key` of the IP → application CSV | none: every client is `unknown` |
//! | `TAILRACE_NAMESPACE` | CloudWatch namespace | `Tailrace` |
//! | `TAILRACE_METADATA_TTL` | how long a fetched metadata file is trusted before a conditional re-read | `60s` |
//! | `TAILRACE_RAW_FORMAT` | Apache `LogFormat` (or preset) of raw-line records | `combined` |
//! | `TAILRACE_RAW_SERVICE` | `Service` dimension for raw-line and Kinesis-Agent JSON records | `raw` |
//! | `TAILRACE_WINDOW` | window length for raw-line and Kinesis-Agent JSON records | `5m` |
//! | `TAILRACE_DIMENSIONS` | dimension sets published, from `Service+SourceApplication`, `SourceApplication`, `Service` (`model`) | `Service+SourceApplication,SourceApplication` |
//! | `TAILRACE_METRICS` | metrics published, from `Requests`, `Bytes`, `ClientErrors`, `ServerErrors`, `Latency` | all five |
//! | `TAILRACE_IDEMPOTENCY_TABLE` | DynamoDB table of partial claims: counts exactly once across Lambda environments and replays (`idempotency`) | none: exactly once per process only |
//! | `TAILRACE_IDEMPOTENCY_RETENTION` | how long a claim is kept (below 15 days, a replay of an older record can count twice) | `15d` |
//! | `TAILRACE_TALLIES` | `s3://bucket/prefix/` where each published window's client tallies are written, and where the notifier reads a flood's top addresses (`tally`) | none: messages list no addresses |
//! | `TAILRACE_NOTIFY_TOPIC` | SNS topic ARN the notifier publishes the person-readable message to (`notify`) | none: alarm notifications are refused |
//! | `TAILRACE_PUT_TIMEOUT` | how long one PutMetricData attempt may take (then it is retried; an attempt that timed out may still have been stored, so keep it generous) | `10s` |

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::publish::model::MetricModel;

/// Environment variable naming the metadata file.
pub const ENV_METADATA: &str = "TAILRACE_METADATA";
/// Environment variable naming the CloudWatch namespace.
pub const ENV_NAMESPACE: &str = "TAILRACE_NAMESPACE";
/// Environment variable with the metadata re-read interval.
pub const ENV_METADATA_TTL: &str = "TAILRACE_METADATA_TTL";
/// Environment variable with the LogFormat of raw-line records.
pub const ENV_RAW_FORMAT: &str = "TAILRACE_RAW_FORMAT";
/// Environment variable with the service name given to raw and JSON records.
pub const ENV_RAW_SERVICE: &str = "TAILRACE_RAW_SERVICE";
/// Environment variable with the window length for raw and JSON records.
pub const ENV_WINDOW: &str = "TAILRACE_WINDOW";
/// Environment variable with the published dimension sets (`model`).
pub const ENV_DIMENSIONS: &str = "TAILRACE_DIMENSIONS";
/// Environment variable with the published metrics (`model`).
pub const ENV_METRICS: &str = "TAILRACE_METRICS";

/// Environment variable naming the DynamoDB claim table.
pub const ENV_IDEMPOTENCY_TABLE: &str = "TAILRACE_IDEMPOTENCY_TABLE";
/// Environment variable with how long a claim is kept.
pub const ENV_IDEMPOTENCY_RETENTION: &str = "TAILRACE_IDEMPOTENCY_RETENTION";

/// Environment variable naming where client tallies are kept (`tally`).
pub const ENV_TALLIES: &str = "TAILRACE_TALLIES";

/// Environment variable with the PutMetricData attempt timeout.
pub const ENV_PUT_TIMEOUT: &str = "TAILRACE_PUT_TIMEOUT";

/// Environment variable with the notification topic's ARN (`notify`).
pub const ENV_NOTIFY_TOPIC: &str = "TAILRACE_NOTIFY_TOPIC";

/// Default CloudWatch namespace.
pub const DEFAULT_NAMESPACE: &str = "Tailrace";
/// Default metadata TTL.
pub const DEFAULT_METADATA_TTL: Duration = Duration::from_secs(60);
/// Default LogFormat for raw-line records.
pub const DEFAULT_RAW_FORMAT: &str = "combined";
/// Default service name for raw-line and JSON records.
pub const DEFAULT_RAW_SERVICE: &str = "raw";
/// Default window for raw-line and JSON records.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(300);
/// Default PutMetricData attempt timeout.
pub const DEFAULT_PUT_TIMEOUT: Duration = Duration::from_secs(10);

/// A setting that could not be understood.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The value of a variable or flag is wrong.
    #[error("{name}={value:?}: {reason}")]
    Invalid {
        /// Variable or flag name.
        name: &'static str,
        /// The value given.
        value: String,
        /// What was expected.
        reason: String,
    },
}

/// Where an object lives in S3 (`s3://bucket/key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    /// Bucket name.
    pub bucket: String,
    /// Object key.
    pub key: String,
}

impl FromStr for S3Location {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rest = s
            .strip_prefix("s3://")
            .ok_or_else(|| "expected s3://bucket/key".to_string())?;
        let (bucket, key) = rest
            .split_once('/')
            .ok_or_else(|| "expected s3://bucket/key (no key)".to_string())?;
        if bucket.is_empty() || key.is_empty() {
            return Err("expected s3://bucket/key (empty bucket or key)".into());
        }
        Ok(S3Location {
            bucket: bucket.into(),
            key: key.into(),
        })
    }
}

impl fmt::Display for S3Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// Everything the handler needs to know besides its AWS clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The metadata file; `None` maps every client to `unknown`.
    pub metadata: Option<S3Location>,
    /// CloudWatch namespace.
    pub namespace: String,
    /// How long a fetched metadata file is used before a conditional re-read.
    pub metadata_ttl: Duration,
    /// LogFormat string or preset for raw-line records.
    pub raw_format: String,
    /// `Service` dimension for raw-line and Kinesis-Agent JSON records.
    pub raw_service: String,
    /// Window length in seconds for raw-line and Kinesis-Agent JSON records.
    pub window_secs: u32,
    /// How long one PutMetricData attempt may take.
    pub put_timeout: Duration,
    /// Which dimension sets and metrics are published.
    pub model: MetricModel,
    /// DynamoDB claim table; `None`: exactly once per process only.
    pub idempotency_table: Option<String>,
    /// How long a claim is kept.
    pub idempotency_retention: Duration,
    /// Where client tallies are written and read (`tally`); `None`: not kept.
    pub tallies: Option<S3Location>,
    /// The SNS topic the notifier publishes to; `None`: no notifier.
    pub notify_topic: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            metadata: None,
            namespace: DEFAULT_NAMESPACE.into(),
            metadata_ttl: DEFAULT_METADATA_TTL,
            raw_format: DEFAULT_RAW_FORMAT.into(),
            raw_service: DEFAULT_RAW_SERVICE.into(),
            window_secs: DEFAULT_WINDOW.as_secs() as u32,
            put_timeout: DEFAULT_PUT_TIMEOUT,
            model: MetricModel::default(),
            idempotency_table: None,
            idempotency_retention: crate::ingest::idempotency::DEFAULT_RETENTION,
            tallies: None,
            notify_topic: None,
        }
    }
}

impl Settings {
    /// Read the settings from the process environment.
    pub fn from_env() -> Result<Settings, ConfigError> {
        Settings::from_lookup(|name| std::env::var(name).ok())
    }

    /// Read the settings through `lookup` (the environment, or a map in tests).
    /// Empty values count as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Settings, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let mut settings = Settings::default();
        if let Some(v) = get(ENV_METADATA) {
            settings.metadata = Some(parse_s3(ENV_METADATA, &v)?);
        }
        if let Some(v) = get(ENV_NAMESPACE) {
            settings.namespace = parse_namespace(ENV_NAMESPACE, &v)?;
        }
        if let Some(v) = get(ENV_METADATA_TTL) {
            settings.metadata_ttl = parse_duration(ENV_METADATA_TTL, &v)?;
        }
        if let Some(v) = get(ENV_RAW_FORMAT) {
            settings.raw_format = v;
        }
        if let Some(v) = get(ENV_RAW_SERVICE) {
            settings.raw_service = v.trim().to_string();
        }
        if let Some(v) = get(ENV_WINDOW) {
            settings.window_secs = parse_window(ENV_WINDOW, &v)?;
        }
        if let Some(v) = get(ENV_PUT_TIMEOUT) {
            settings.put_timeout = parse_duration(ENV_PUT_TIMEOUT, &v)?;
        }
        settings.model = parse_model(get(ENV_DIMENSIONS).as_deref(), get(ENV_METRICS).as_deref())?;
        if let Some(v) = get(ENV_IDEMPOTENCY_TABLE) {
            settings.idempotency_table = Some(v.trim().to_string());
        }
        if let Some(v) = get(ENV_IDEMPOTENCY_RETENTION) {
            settings.idempotency_retention = parse_duration(ENV_IDEMPOTENCY_RETENTION, &v)?;
        }
        if let Some(v) = get(ENV_TALLIES) {
            settings.tallies = Some(parse_s3(ENV_TALLIES, &v)?);
        }
        if let Some(v) = get(ENV_NOTIFY_TOPIC) {
            settings.notify_topic = Some(v.trim().to_string());
        }
        Ok(settings)
    }

    /// The settings from the environment (through `lookup`), then `flags`
    /// over them: what every command of `tailrace-aggregator` runs with.
    pub fn from_lookup_and_flags(
        lookup: impl Fn(&str) -> Option<String>,
        flags: &SettingsFlags,
    ) -> Result<Settings, ConfigError> {
        Settings::from_lookup(lookup)?.overridden_by(flags)
    }

    /// These settings with what `flags` gives replacing what they hold.
    pub fn overridden_by(mut self, flags: &SettingsFlags) -> Result<Settings, ConfigError> {
        if let Some(v) = &flags.metadata {
            self.metadata = Some(parse_s3("--metadata", v)?);
        }
        if let Some(v) = &flags.namespace {
            self.namespace = parse_namespace("--namespace", v)?;
        }
        if let Some(v) = &flags.metadata_ttl {
            self.metadata_ttl = parse_duration("--metadata-ttl", v)?;
        }
        if let Some(v) = &flags.raw_format {
            self.raw_format = v.clone();
        }
        if let Some(v) = &flags.raw_service {
            self.raw_service = v.trim().to_string();
        }
        if let Some(v) = &flags.window {
            self.window_secs = parse_window("--window", v)?;
        }
        if let Some(v) = &flags.put_timeout {
            self.put_timeout = parse_duration("--put-timeout", v)?;
        }
        if flags.dimensions.is_some() || flags.metrics.is_some() {
            // A flag replaces its half of the model; the other half stays
            // as the environment (or the default) set it.
            let invalid = |name: &'static str, value: &str, reason: String| ConfigError::Invalid {
                name,
                value: value.into(),
                reason,
            };
            let sets = match &flags.dimensions {
                Some(v) => MetricModel::parse_dimensions(v)
                    .map_err(|reason| invalid("--dimensions", v, reason))?,
                None => self.model.dimension_sets().to_vec(),
            };
            let metrics = match &flags.metrics {
                Some(v) => MetricModel::parse_metrics(v)
                    .map_err(|reason| invalid("--metrics", v, reason))?,
                None => self.model.metrics().to_vec(),
            };
            self.model = MetricModel::new(&sets, &metrics).ok_or_else(|| {
                invalid(
                    "--dimensions",
                    flags.dimensions.as_deref().unwrap_or_default(),
                    "at least one dimension set and one metric are needed".into(),
                )
            })?;
        }
        if let Some(v) = &flags.idempotency_table {
            self.idempotency_table = Some(v.trim().to_string());
        }
        if let Some(v) = &flags.idempotency_retention {
            self.idempotency_retention = parse_duration("--idempotency-retention", v)?;
        }
        if let Some(v) = &flags.tallies {
            self.tallies = Some(parse_s3("--tallies", v)?);
        }
        if let Some(v) = &flags.topic {
            self.notify_topic = Some(v.trim().to_string());
        }
        Ok(self)
    }
}

/// The settings as the command line gives them: one flag per setting, each
/// overriding its environment variable (named in its help). Flattened into
/// every command of `tailrace-aggregator`; no flag has a default or reads a
/// variable itself ([`Settings::from_lookup_and_flags`] does both, once).
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Settings (each overrides its TAILRACE_* variable)")]
pub struct SettingsFlags {
    /// Metadata file, s3://bucket/key [TAILRACE_METADATA].
    #[arg(long, value_name = "S3")]
    pub metadata: Option<String>,
    /// CloudWatch namespace [TAILRACE_NAMESPACE].
    #[arg(long)]
    pub namespace: Option<String>,
    /// How long a fetched metadata file is used before a conditional
    /// re-read [TAILRACE_METADATA_TTL].
    #[arg(long, value_name = "DURATION")]
    pub metadata_ttl: Option<String>,
    /// LogFormat (or preset) of raw-line records [TAILRACE_RAW_FORMAT].
    #[arg(long, value_name = "FORMAT")]
    pub raw_format: Option<String>,
    /// Service dimension for raw-line and Kinesis Agent JSON records
    /// [TAILRACE_RAW_SERVICE].
    #[arg(long, value_name = "NAME")]
    pub raw_service: Option<String>,
    /// Window for raw-line and Kinesis Agent JSON records [TAILRACE_WINDOW].
    #[arg(long, value_name = "DURATION")]
    pub window: Option<String>,
    /// How long one PutMetricData attempt may take [TAILRACE_PUT_TIMEOUT].
    #[arg(long, value_name = "DURATION")]
    pub put_timeout: Option<String>,
    /// Dimension sets to publish, `,`-separated, from
    /// `Service+SourceApplication`, `SourceApplication`, `Service`
    /// [TAILRACE_DIMENSIONS].
    #[arg(long, value_name = "SETS")]
    pub dimensions: Option<String>,
    /// Metrics to publish, `,`-separated, from `Requests`, `Bytes`,
    /// `ClientErrors`, `ServerErrors`, `Latency` [TAILRACE_METRICS].
    #[arg(long, value_name = "METRICS")]
    pub metrics: Option<String>,
    /// DynamoDB table of partial claims (created on first use if missing):
    /// counts exactly once across processes and replays
    /// [TAILRACE_IDEMPOTENCY_TABLE].
    #[arg(long, value_name = "TABLE")]
    pub idempotency_table: Option<String>,
    /// How long a claim is kept [TAILRACE_IDEMPOTENCY_RETENTION].
    #[arg(long, value_name = "DURATION")]
    pub idempotency_retention: Option<String>,
    /// Where each published window's client tallies are written (and the
    /// notifier reads its top addresses), s3://bucket/prefix/
    /// [TAILRACE_TALLIES].
    #[arg(long, value_name = "S3")]
    pub tallies: Option<String>,
    /// Notification topic ARN the notifier publishes to
    /// [TAILRACE_NOTIFY_TOPIC].
    #[arg(long, value_name = "ARN")]
    pub topic: Option<String>,
    /// Endpoint for every AWS service (moto_server, an emulator); the SDK's
    /// own AWS_ENDPOINT_URL otherwise.
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,
}

/// Parse `s3://bucket/key` for the setting `name`.
pub fn parse_s3(name: &'static str, value: &str) -> Result<S3Location, ConfigError> {
    value.trim().parse().map_err(|reason| ConfigError::Invalid {
        name,
        value: value.into(),
        reason,
    })
}

/// Check a CloudWatch namespace (1–255 chars, no leading `AWS/`).
pub fn parse_namespace(name: &'static str, value: &str) -> Result<String, ConfigError> {
    let v = value.trim();
    let invalid = |reason: &str| ConfigError::Invalid {
        name,
        value: value.into(),
        reason: reason.into(),
    };
    if v.is_empty() || v.len() > 255 {
        return Err(invalid("a namespace is 1 to 255 characters"));
    }
    if v.starts_with("AWS/") {
        return Err(invalid("namespaces starting with AWS/ are reserved"));
    }
    Ok(v.into())
}

/// Parse the metric model from `TAILRACE_DIMENSIONS` and `TAILRACE_METRICS`
/// (or the flags of the same meaning); `None` keeps that half's default.
pub fn parse_model(
    dimensions: Option<&str>,
    metrics: Option<&str>,
) -> Result<MetricModel, ConfigError> {
    let sets = match dimensions {
        Some(v) => {
            Some(
                MetricModel::parse_dimensions(v).map_err(|reason| ConfigError::Invalid {
                    name: ENV_DIMENSIONS,
                    value: v.into(),
                    reason,
                })?,
            )
        }
        None => None,
    };
    let metrics_list = match metrics {
        Some(v) => Some(
            MetricModel::parse_metrics(v).map_err(|reason| ConfigError::Invalid {
                name: ENV_METRICS,
                value: v.into(),
                reason,
            })?,
        ),
        None => None,
    };
    let default = MetricModel::default();
    let sets = sets.as_deref().unwrap_or(default.dimension_sets());
    let metrics_list = metrics_list.as_deref().unwrap_or(default.metrics());
    // Both lists were checked non-empty by their parsers.
    MetricModel::new(sets, metrics_list).ok_or_else(|| ConfigError::Invalid {
        name: ENV_DIMENSIONS,
        value: dimensions.unwrap_or_default().into(),
        reason: "at least one dimension set and one metric are needed".into(),
    })
}

/// Parse a humantime duration (`60s`, `5m`, `1h 30m`).
pub fn parse_duration(name: &'static str, value: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(value.trim()).map_err(|e| ConfigError::Invalid {
        name,
        value: value.into(),
        reason: format!("expected a duration like 60s or 5m: {e}"),
    })
}

/// Parse a window length: whole seconds, at least 1 s, dividing a day.
pub fn parse_window(name: &'static str, value: &str) -> Result<u32, ConfigError> {
    let d = parse_duration(name, value)?;
    let invalid = |reason: &str| ConfigError::Invalid {
        name,
        value: value.into(),
        reason: reason.into(),
    };
    if d.subsec_nanos() != 0 || d.as_secs() == 0 {
        return Err(invalid(
            "a window is a whole number of seconds, at least 1s",
        ));
    }
    let secs = d.as_secs();
    if 86_400 % secs != 0 {
        return Err(invalid(
            "a window must divide a day evenly (e.g. 1m, 5m, 15m, 1h)",
        ));
    }
    Ok(secs as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults() {
        let s = settings(&[]).expect("defaults");
        assert_eq!(s, Settings::default());
        assert_eq!(s.namespace, "Tailrace");
        assert_eq!(s.window_secs, 300);
        assert_eq!(s.metadata_ttl, Duration::from_secs(60));
    }

    #[test]
    fn all_set() {
        let s = settings(&[
            (ENV_METADATA, "s3://b/dir/meta.csv"),
            (ENV_NAMESPACE, "Web"),
            (ENV_METADATA_TTL, "2s"),
            (ENV_RAW_FORMAT, "common"),
            (ENV_RAW_SERVICE, "shop"),
            (ENV_WINDOW, "1m"),
            (ENV_PUT_TIMEOUT, "30s"),
            (ENV_IDEMPOTENCY_TABLE, "claims"),
            (ENV_IDEMPOTENCY_RETENTION, "20d"),
            (ENV_TALLIES, "s3://b/tallies/"),
        ])
        .expect("valid");
        assert_eq!(
            s.metadata,
            Some(S3Location {
                bucket: "b".into(),
                key: "dir/meta.csv".into()
            })
        );
        assert_eq!(s.namespace, "Web");
        assert_eq!(s.metadata_ttl, Duration::from_secs(2));
        assert_eq!(s.raw_format, "common");
        assert_eq!(s.raw_service, "shop");
        assert_eq!(s.window_secs, 60);
        assert_eq!(s.put_timeout, Duration::from_secs(30));
        assert_eq!(s.idempotency_table.as_deref(), Some("claims"));
        assert_eq!(s.idempotency_retention, Duration::from_secs(20 * 86_400));
        assert_eq!(
            s.tallies,
            Some(S3Location {
                bucket: "b".into(),
                key: "tallies/".into()
            })
        );
    }

    #[test]
    fn errors_name_the_variable() {
        let e = settings(&[(ENV_METADATA, "bucket/key")]).unwrap_err();
        assert!(e.to_string().contains("TAILRACE_METADATA"), "{e}");
        assert!(settings(&[(ENV_WINDOW, "7m")]).is_err());
        assert!(settings(&[(ENV_WINDOW, "0s")]).is_err());
        assert!(settings(&[(ENV_METADATA_TTL, "soon")]).is_err());
        assert!(settings(&[(ENV_NAMESPACE, "AWS/EC2")]).is_err());
        let e = settings(&[(ENV_DIMENSIONS, "Service+Host")]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("TAILRACE_DIMENSIONS=\"Service+Host\": unknown dimension"),
            "{e}"
        );
        let e = settings(&[(ENV_METRICS, "Requests,p99")]).unwrap_err();
        assert!(e.to_string().contains("TAILRACE_METRICS"), "{e}");
    }

    #[test]
    fn metric_model_from_the_environment() {
        use crate::publish::model::{DimensionSet, Metric};
        let s = settings(&[
            (ENV_DIMENSIONS, "SourceApplication"),
            (ENV_METRICS, "Requests,Bytes"),
        ])
        .expect("valid");
        assert_eq!(s.model.dimension_sets(), &[DimensionSet::Application]);
        assert_eq!(s.model.metrics(), &[Metric::Requests, Metric::Bytes]);
        let s = settings(&[(ENV_METRICS, "Requests")]).expect("valid");
        assert_eq!(
            s.model.dimension_sets(),
            MetricModel::default().dimension_sets()
        );
    }
}
