//! Glue between the aggregator and the inventory updater
//! (`tailrace-inventory`): the aggregator's own metadata parser as the judge
//! of every file the updater writes, and the `inventory sync` command and the
//! inventory Lambda's settings, so both binaries share one setup.
//!
//! The updater lives in its own crate; this module is here, not there,
//! because the parser is here and Cargo forbids the dependency cycle.

use std::time::Duration;

use tailrace_inventory::ec2::Fleet;
use tailrace_inventory::lambda::{self, Updater};
use tailrace_inventory::owner::TagKeys;
use tailrace_inventory::plan::{FileError, Observation};
use tailrace_inventory::store::Location;
use tailrace_inventory::sync::{self, Options, Outcome, SyncError};

use crate::config::{self, ConfigError, S3Location, Settings};
use crate::join::metadata::Metadata;

/// Environment variable: termination grace (`30m`).
pub const ENV_GRACE: &str = "TAILRACE_INVENTORY_GRACE";
/// Environment variable: tag key of the application.
pub const ENV_APPLICATION_TAG: &str = "TAILRACE_INVENTORY_APPLICATION_TAG";
/// Environment variable: tag key of the contact.
pub const ENV_CONTACT_TAG: &str = "TAILRACE_INVENTORY_CONTACT_TAG";

/// The aggregator's parser, as the updater's validator.
pub fn validate(text: &str) -> Vec<FileError> {
    Metadata::parse(text)
        .errors
        .into_iter()
        .map(|e| FileError {
            row: e.row,
            reason: e.reason,
        })
        .collect()
}

/// The updater's location type from the aggregator's.
pub fn location(at: &S3Location) -> Location {
    Location {
        bucket: at.bucket.clone(),
        key: at.key.clone(),
    }
}

/// S3 client as the aggregator builds it (path-style with an endpoint:
/// emulators serve no virtual-host buckets).
fn s3_client(sdk: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(sdk.endpoint_url().is_some())
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// Read every instance and group (a reconcile), plan, and (unless
/// `options.dry_run`) write; the caller prints the outcome.
pub async fn sync_once(
    sdk: &aws_config::SdkConfig,
    at: &S3Location,
    keys: TagKeys,
    options: Options,
) -> Result<Outcome, SyncFailure> {
    let fleet = Fleet::new(sdk, keys);
    let obs: Observation =
        lambda::observe(&fleet, &tailrace_inventory::event::Trigger::Reconcile).await?;
    Ok(sync::apply(&s3_client(sdk), &location(at), &obs, &options, &validate).await?)
}

/// `inventory sync` failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncFailure {
    /// Reading the fleet.
    #[error(transparent)]
    Fleet(#[from] tailrace_inventory::ec2::Ec2Error),
    /// Reading, planning or writing the file.
    #[error(transparent)]
    Sync(#[from] SyncError),
}

/// The inventory updater's own settings from the environment (through
/// `get`): the grace period and the tag keys. The metadata file and the
/// namespace are the aggregator's [`Settings`].
pub fn options_from(
    get: impl Fn(&str) -> Option<String>,
) -> Result<(Options, TagKeys), ConfigError> {
    let mut options = Options::default();
    if let Some(g) = get(ENV_GRACE) {
        options.grace = parse_grace(&g).map_err(|reason| ConfigError::Invalid {
            name: ENV_GRACE,
            value: g.clone(),
            reason,
        })?;
    }
    let mut keys = TagKeys::default();
    if let Some(k) = get(ENV_APPLICATION_TAG).filter(|k| !k.trim().is_empty()) {
        keys.application = k.trim().into();
    }
    if let Some(k) = get(ENV_CONTACT_TAG).filter(|k| !k.trim().is_empty()) {
        keys.contact = k.trim().into();
    }
    Ok((options, keys))
}

/// The metadata file the updater writes: the settings' (required here).
pub fn metadata_file(settings: &Settings) -> Result<&S3Location, ConfigError> {
    settings.metadata.as_ref().ok_or(ConfigError::Invalid {
        name: config::ENV_METADATA,
        value: String::new(),
        reason: "the inventory updater needs the metadata file (s3://bucket/key)".into(),
    })
}

/// The inventory Lambda's updater: the metadata file and namespace from
/// `settings`, its own settings from the environment (through `get`).
pub fn updater(
    sdk: &aws_config::SdkConfig,
    settings: &Settings,
    get: impl Fn(&str) -> Option<String>,
) -> Result<Updater, ConfigError> {
    let at = metadata_file(settings)?;
    let (options, keys) = options_from(get)?;
    Ok(Updater {
        s3: s3_client(sdk),
        fleet: Fleet::new(sdk, keys),
        location: location(at),
        options,
        namespace: settings.namespace.clone(),
    })
}

/// The flags of `inventory sync` beyond the aggregator's settings: each
/// overrides its environment variable, none has a default of its own.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct InventoryFlags {
    /// How long a gone instance's rows stay [TAILRACE_INVENTORY_GRACE].
    #[arg(long, value_name = "DURATION")]
    pub grace: Option<String>,
    /// Tag key of the application [TAILRACE_INVENTORY_APPLICATION_TAG].
    #[arg(long, value_name = "KEY")]
    pub application_tag: Option<String>,
    /// Tag key of the contact [TAILRACE_INVENTORY_CONTACT_TAG].
    #[arg(long, value_name = "KEY")]
    pub contact_tag: Option<String>,
}

impl InventoryFlags {
    /// The environment's options and tag keys (through `get`), then these
    /// flags over them.
    pub fn options(
        &self,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<(Options, TagKeys), ConfigError> {
        let (mut options, mut keys) = options_from(get)?;
        if let Some(g) = &self.grace {
            options.grace = parse_grace(g).map_err(|reason| ConfigError::Invalid {
                name: "--grace",
                value: g.clone(),
                reason,
            })?;
        }
        if let Some(k) = &self.application_tag {
            keys.application = k.trim().into();
        }
        if let Some(k) = &self.contact_tag {
            keys.contact = k.trim().into();
        }
        Ok((options, keys))
    }
}

/// A grace period: a humantime duration of at least one second.
pub fn parse_grace(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("expected a duration like 30m or 1h ({e})"))?;
    if d < Duration::from_secs(1) {
        return Err("the grace period must be at least 1s".into());
    }
    Ok(d)
}
