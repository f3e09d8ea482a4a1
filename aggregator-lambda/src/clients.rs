//! Building the AWS clients once per process, optionally against another
//! endpoint (moto_server in tests, an on-prem emulator), and the handler from
//! settings and clients.

use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};

use crate::config::{Settings, SettingsFlags};
use crate::entry::handler::Handler;
use crate::ingest::decode::{Decoder, FormatError};
use crate::ingest::idempotency::{ClaimStore, DEFAULT_LEASE};
use crate::join::metadata_source::MetadataSource;
use crate::notify::Notifier;
use crate::publish::calls::{Publisher, RetryPolicy};
use crate::publish::tally::store::TallyStore;

pub use crate::ingest::idempotency::{DYNAMODB_ATTEMPT_TIMEOUT, DYNAMODB_OPERATION_TIMEOUT};
/// Connecting to any AWS endpoint gives up after this.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// One CloudWatch operation gives up after this: the publisher cuts each
/// PutMetricData attempt itself (`TAILRACE_PUT_TIMEOUT`, and the deadline),
/// this bounds the notifier's GetMetricData and ListMetrics too, within the
/// function's 60 s.
pub const CLOUDWATCH_OPERATION_TIMEOUT: Duration = Duration::from_secs(60);

/// The SDK clients the aggregator uses.
#[derive(Debug, Clone)]
pub struct Clients {
    /// Kinesis (the local consumer only).
    pub kinesis: aws_sdk_kinesis::Client,
    /// S3, for the metadata file.
    pub s3: aws_sdk_s3::Client,
    /// CloudWatch, for metrics.
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    /// DynamoDB, for the claim table (`idempotency`).
    pub dynamodb: aws_sdk_dynamodb::Client,
    /// SQS, for the failure queue (`replay`).
    pub sqs: aws_sdk_sqs::Client,
    /// SNS, for the notification topic (`notify`).
    pub sns: aws_sdk_sns::Client,
    /// EC2, for who is behind an address (`notify::owners`).
    pub ec2: aws_sdk_ec2::Client,
}

/// The SDK configuration from the environment's default chain, with
/// `endpoint_url` overriding every service's endpoint when given.
pub async fn sdk_config(endpoint_url: Option<&str>) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(url) = endpoint_url {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}

impl Clients {
    /// Clients from an SDK configuration. With a custom endpoint, S3 uses
    /// path-style addressing (emulators do not serve virtual-host buckets).
    /// CloudWatch has the SDK's retries turned off: the publisher retries
    /// PutMetricData itself (`publish::calls::RetryPolicy`), counting and logging
    /// every retry; two layers would multiply the attempts. DynamoDB and
    /// CloudWatch calls have operation timeouts ([`DYNAMODB_OPERATION_TIMEOUT`],
    /// [`CLOUDWATCH_OPERATION_TIMEOUT`]): without them a call may hang until
    /// the invocation times out, failing the whole batch after its metrics
    /// were published.
    pub fn new(config: &SdkConfig) -> Clients {
        let path_style = config.endpoint_url().is_some();
        let s3_config = aws_sdk_s3::config::Builder::from(config)
            .force_path_style(path_style)
            .build();
        Clients {
            kinesis: aws_sdk_kinesis::Client::new(config),
            s3: aws_sdk_s3::Client::from_conf(s3_config),
            cloudwatch: aws_sdk_cloudwatch::Client::from_conf(
                aws_sdk_cloudwatch::config::Builder::from(config)
                    .retry_config(aws_sdk_cloudwatch::config::retry::RetryConfig::disabled())
                    .timeout_config(
                        TimeoutConfig::builder()
                            .connect_timeout(CONNECT_TIMEOUT)
                            .operation_timeout(CLOUDWATCH_OPERATION_TIMEOUT)
                            .build(),
                    )
                    .build(),
            ),
            dynamodb: aws_sdk_dynamodb::Client::from_conf(
                aws_sdk_dynamodb::config::Builder::from(config)
                    .timeout_config(
                        TimeoutConfig::builder()
                            .connect_timeout(CONNECT_TIMEOUT)
                            .operation_attempt_timeout(DYNAMODB_ATTEMPT_TIMEOUT)
                            .operation_timeout(DYNAMODB_OPERATION_TIMEOUT)
                            .build(),
                    )
                    .build(),
            ),
            sqs: aws_sdk_sqs::Client::new(config),
            sns: aws_sdk_sns::Client::new(config),
            ec2: aws_sdk_ec2::Client::new(config),
        }
    }
}

/// The SDK configuration for the command line's flags: `--endpoint-url`
/// when given, else the environment's default chain (AWS_ENDPOINT_URL).
pub async fn sdk_config_for(flags: &SettingsFlags) -> SdkConfig {
    sdk_config(flags.endpoint_url.as_deref()).await
}

/// The process's one metadata source: the handler and the notifier each
/// take a clone of it, which shares its cache (one fetch of the file, one
/// conditional re-read per TTL, for both).
pub fn metadata_source(settings: &Settings, clients: &Clients) -> MetadataSource {
    match &settings.metadata {
        Some(location) => {
            MetadataSource::new(clients.s3.clone(), location.clone(), settings.metadata_ttl)
        }
        None => {
            tracing::warn!("TAILRACE_METADATA is not set: every client is `unknown`");
            MetadataSource::none()
        }
    }
}

/// The handler for `settings`, using `clients` and the process's
/// `metadata` source.
pub fn build_handler(
    settings: &Settings,
    clients: &Clients,
    metadata: &MetadataSource,
) -> Result<Handler, FormatError> {
    let decoder = Decoder::new(
        &settings.raw_format,
        &settings.raw_service,
        settings.window_secs,
    )?;
    let metadata = metadata.clone();
    let publisher = Publisher::new(clients.cloudwatch.clone(), settings.namespace.clone())
        .with_retry(RetryPolicy {
            attempt_timeout: settings.put_timeout,
            ..RetryPolicy::default()
        })
        .with_model(settings.model.clone());
    if let Some(why) = settings.model.alarm_blind_reason() {
        tracing::warn!("{why}");
    }
    let mut handler = Handler::new(decoder, metadata, publisher);
    match &settings.tallies {
        Some(location) => {
            handler = handler.with_tallies(TallyStore::new(clients.s3.clone(), location));
        }
        None => tracing::warn!(
            "TAILRACE_TALLIES is not set: client tallies are not kept, so alarm messages list no top addresses"
        ),
    }
    Ok(match &settings.idempotency_table {
        Some(table) => {
            tracing::info!(table = %table, "partials are claimed in DynamoDB: counts are exactly once across processes");
            handler.with_claims(
                ClaimStore::new(
                    clients.dynamodb.clone(),
                    table.clone(),
                    settings.idempotency_retention,
                ),
                DEFAULT_LEASE,
            )
        }
        None => {
            tracing::warn!(
                "TAILRACE_IDEMPOTENCY_TABLE is not set: counts are exactly once only per process (a retry on another Lambda environment, or a replay, can count a record twice)"
            );
            handler
        }
    })
}

/// The alarm notifier for `settings`, publishing to `topic_arn`: totals by
/// the settings' metric model, top clients from `TAILRACE_TALLIES`, owners
/// from EC2, contacts from the process's `metadata` source.
pub fn build_notifier(
    settings: &Settings,
    clients: &Clients,
    metadata: &MetadataSource,
    topic_arn: &str,
) -> Notifier {
    let notifier = Notifier::new(
        clients.cloudwatch.clone(),
        clients.sns.clone(),
        metadata.clone(),
        settings.namespace.clone(),
        topic_arn,
    )
    .with_model(settings.model.clone())
    .with_owners(clients.ec2.clone());
    match &settings.tallies {
        Some(location) => notifier.with_tallies(TallyStore::new(clients.s3.clone(), location)),
        None => notifier,
    }
}
