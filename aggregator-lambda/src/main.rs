//! `tailrace-aggregator`: run the aggregator outside Lambda.
//!
//! - `consume`: poll every shard of a stream and feed the handler (tests,
//!   demos, on-prem);
//! - `replay`: republish the records the Lambda gave up on (the failure
//!   queue's messages, or one shard range), exactly once through the
//!   DynamoDB claims;
//! - `check-metadata`: validate a metadata CSV file locally;
//! - `notify`: turn CloudWatch alarm messages into the notification a person
//!   reads and publish it, as the Lambda does for SNS events (`make demo`);
//! - `resend`: send again the notifications the Lambda could not send (its
//!   on-failure queue, `NotifyFailures`);
//! - `inventory sync`: rebuild the metadata file's inventory section from
//!   EC2 and Auto Scaling, print the diff, write it (docs/INVENTORY.md;
//!   feature `inventory`, on by default).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use tailrace_aggregator::clients::{build_handler, sdk_config, Clients};
use tailrace_aggregator::config::{self, S3Location, Settings};
use tailrace_aggregator::consume::{consume, ConsumeOptions, StartPosition, MAX_BATCH};
use tailrace_aggregator::logging::{self, LogFormat};
use tailrace_aggregator::metadata::Metadata;

#[derive(Parser)]
#[command(
    version,
    about = "tailrace aggregator: Kinesis records -> per-application CloudWatch metrics"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Poll every shard of a stream and publish metrics, like the Lambda does.
    Consume(Box<ConsumeArgs>),
    /// Republish the records of the failure queue's messages, or of one
    /// shard range, counting nothing twice (DynamoDB claims).
    Replay(Box<ReplayArgs>),
    /// Check a metadata CSV file: prints every wrong row; exit 1 if any.
    CheckMetadata {
        /// The file.
        file: PathBuf,
    },
    /// Publish the notification for CloudWatch alarm messages, like the Lambda does.
    Notify(Box<NotifyArgs>),
    /// Send again the notifications the Lambda could not send: the alarm
    /// messages kept in its on-failure queue (the stack's NotifyFailures).
    Resend(Box<ResendArgs>),
    /// Keep the metadata file current from EC2 instance tags and Auto Scaling.
    #[cfg(feature = "inventory")]
    #[command(subcommand)]
    Inventory(InventoryCommand),
}

/// `inventory` (tailrace_inventory; docs/INVENTORY.md).
#[cfg(feature = "inventory")]
#[derive(Subcommand)]
enum InventoryCommand {
    /// Rebuild the inventory section from every instance, print the diff, write it.
    Sync(Box<InventorySyncArgs>),
}

#[cfg(feature = "inventory")]
#[derive(clap::Args)]
struct InventorySyncArgs {
    /// Metadata file, s3://bucket/key.
    #[arg(long, env = config::ENV_METADATA)]
    metadata: S3Location,
    /// Endpoint for every AWS service (moto_server, an emulator).
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    endpoint_url: Option<String>,
    /// Print the diff and the new file; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// How long a gone instance's rows stay.
    #[arg(long, env = tailrace_aggregator::inventory::ENV_GRACE, default_value = "30m", value_parser = tailrace_aggregator::inventory::parse_grace)]
    grace: Duration,
    /// Tag key of the application.
    #[arg(long, env = tailrace_aggregator::inventory::ENV_APPLICATION_TAG, default_value = tailrace_inventory::owner::DEFAULT_APPLICATION_TAG)]
    application_tag: String,
    /// Tag key of the contact.
    #[arg(long, env = tailrace_aggregator::inventory::ENV_CONTACT_TAG, default_value = tailrace_inventory::owner::DEFAULT_CONTACT_TAG)]
    contact_tag: String,
}

#[cfg(feature = "inventory")]
async fn run_inventory(cmd: InventoryCommand) -> anyhow::Result<ExitCode> {
    let InventoryCommand::Sync(a) = cmd;
    logging::init(LogFormat::Text, false);
    let sdk = sdk_config(a.endpoint_url.as_deref()).await;
    let keys = tailrace_inventory::owner::TagKeys {
        application: a.application_tag,
        contact: a.contact_tag,
    };
    let options = tailrace_inventory::sync::Options {
        grace: a.grace,
        dry_run: a.dry_run,
        ..Default::default()
    };
    let out = tailrace_aggregator::inventory::sync_once(&sdk, &a.metadata, keys, options)
        .await
        .with_context(|| format!("inventory sync of {}", a.metadata))?;
    tailrace_inventory::lambda::log_outcome(
        &tailrace_aggregator::inventory::location(&a.metadata),
        &out,
    );
    println!("{}", out.diff);
    if a.dry_run {
        println!(
            "dry run: nothing written; {} would be:\n{}",
            a.metadata, out.text
        );
    } else {
        println!(
            "{}: {}",
            a.metadata,
            if out.written { "written" } else { "unchanged" }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The flags of the notifier's commands (`notify`, `resend`).
#[derive(clap::Args)]
struct NotifierFlags {
    /// Notification topic ARN to publish to.
    #[arg(long, env = tailrace_aggregator::notify::ENV_NOTIFY_TOPIC)]
    topic: String,
    /// Metadata file, s3://bucket/key (for contacts).
    #[arg(long, env = config::ENV_METADATA)]
    metadata: Option<S3Location>,
    /// Where the aggregator writes client tallies, s3://bucket/prefix/ (for
    /// the top addresses).
    #[arg(long, env = config::ENV_TALLIES)]
    tallies: Option<S3Location>,
    /// Endpoint for every AWS service (moto_server, an emulator).
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    endpoint_url: Option<String>,
    /// CloudWatch namespace of the aggregator's metrics.
    #[arg(long, env = config::ENV_NAMESPACE, default_value = config::DEFAULT_NAMESPACE)]
    namespace: String,
}

impl NotifierFlags {
    /// The notifier as the Lambda builds it (bin/bootstrap.rs): the
    /// environment's settings (the metric model among them), then these
    /// flags.
    async fn notifier(self) -> anyhow::Result<(tailrace_aggregator::notify::Notifier, Clients)> {
        let settings = Settings {
            metadata: self.metadata,
            tallies: self.tallies,
            namespace: config::parse_namespace("--namespace", &self.namespace)?,
            ..Settings::from_env()?
        };
        let sdk = sdk_config(self.endpoint_url.as_deref()).await;
        let clients = Clients::new(&sdk);
        let notifier =
            tailrace_aggregator::clients::build_notifier(&settings, &clients, &self.topic);
        Ok((notifier, clients))
    }
}

/// `notify`: the alarm notifier outside Lambda (tailrace_aggregator::notify).
/// Settings come from the environment as in the Lambda (`TAILRACE_*`,
/// the metric model included); the flags override them.
#[derive(clap::Args)]
struct NotifyArgs {
    /// A Lambda SNS event, an SNS message envelope (as an SQS subscriber
    /// receives it) or CloudWatch's alarm JSON; `-` reads standard input.
    event: PathBuf,
    #[command(flatten)]
    notifier: NotifierFlags,
}

async fn run_notify(args: NotifyArgs) -> anyhow::Result<ExitCode> {
    use tailrace_aggregator::notify::alarm_messages;
    logging::init(LogFormat::Text, false);
    let text = if args.event.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading standard input")?
    } else {
        std::fs::read_to_string(&args.event)
            .with_context(|| format!("reading {}", args.event.display()))?
    };
    let value: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{}: not JSON", args.event.display()))?;
    let messages = alarm_messages(&value).with_context(|| {
        format!(
            "{}: expected a Lambda SNS event, an SNS envelope or a CloudWatch alarm message",
            args.event.display()
        )
    })?;
    let (notifier, _) = args.notifier.notifier().await?;
    let sent = notifier.handle(&messages).await?;
    for n in &sent {
        println!("{}", n.subject);
    }
    Ok(ExitCode::SUCCESS)
}

/// `resend`: the notifier's failure queue (tailrace_aggregator::resend).
#[derive(clap::Args)]
struct ResendArgs {
    /// The on-failure queue (SQS URL; the stack's output NotifyFailuresQueue).
    #[arg(long)]
    queue_url: String,
    #[command(flatten)]
    notifier: NotifierFlags,
    /// List the kept alarms; send and delete nothing.
    #[arg(long)]
    dry_run: bool,
}

async fn run_resend(args: ResendArgs) -> anyhow::Result<ExitCode> {
    use tailrace_aggregator::resend::resend_queue;
    logging::init(LogFormat::Text, false);
    // Built as the Lambda builds it (bin/bootstrap.rs): the environment's
    // settings, then the flags.
    let (notifier, clients) = args.notifier.notifier().await?;
    let s = resend_queue(&clients.sqs, &notifier, &args.queue_url, args.dry_run)
        .await
        .context("re-sending the failure queue's notifications")?;
    println!(
        "{} queue messages, {} alarms: {} notifications sent, {} messages deleted, {} kept",
        s.messages, s.alarms, s.sent, s.deleted, s.kept
    );
    Ok(if s.kept > 0 && !args.dry_run {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

#[derive(Clone, Copy, ValueEnum)]
enum From {
    TrimHorizon,
    Latest,
}

#[derive(Clone, Copy, ValueEnum)]
enum Log {
    Text,
    Json,
}

#[derive(clap::Args)]
struct ConsumeArgs {
    /// Kinesis stream name.
    #[arg(long)]
    stream: String,
    /// Metadata file, s3://bucket/key.
    #[arg(long, env = config::ENV_METADATA)]
    metadata: Option<S3Location>,
    /// Endpoint for every AWS service (moto_server, an emulator).
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    endpoint_url: Option<String>,
    /// Exit 0 after this long without new records (e.g. 5s).
    #[arg(long, value_parser = humantime::parse_duration)]
    exit_when_idle: Option<Duration>,
    /// Where to start reading.
    #[arg(long, value_enum, default_value = "trim-horizon")]
    from: From,
    /// CloudWatch namespace.
    #[arg(long, env = config::ENV_NAMESPACE, default_value = config::DEFAULT_NAMESPACE)]
    namespace: String,
    /// How long a fetched metadata file is used before a conditional re-read.
    #[arg(long, env = config::ENV_METADATA_TTL, default_value = "60s", value_parser = humantime::parse_duration)]
    metadata_ttl: Duration,
    /// LogFormat (or preset) of raw-line records.
    #[arg(long, env = config::ENV_RAW_FORMAT, default_value = config::DEFAULT_RAW_FORMAT)]
    raw_format: String,
    /// Service dimension for raw-line and Kinesis Agent JSON records.
    #[arg(long, env = config::ENV_RAW_SERVICE, default_value = config::DEFAULT_RAW_SERVICE)]
    raw_service: String,
    /// Window for raw-line and Kinesis Agent JSON records.
    #[arg(long, env = config::ENV_WINDOW, default_value = "5m")]
    window: String,
    /// How long one PutMetricData attempt may take.
    #[arg(long, env = config::ENV_PUT_TIMEOUT, default_value = "10s", value_parser = humantime::parse_duration)]
    put_timeout: Duration,
    /// Dimension sets to publish, `,`-separated, from
    /// `Service+SourceApplication`, `SourceApplication`, `Service`.
    #[arg(long, env = config::ENV_DIMENSIONS, default_value = tailrace_aggregator::model::DEFAULT_DIMENSIONS)]
    dimensions: String,
    /// Metrics to publish, `,`-separated, from `Requests`, `Bytes`,
    /// `ClientErrors`, `ServerErrors`, `Latency`.
    #[arg(long, env = config::ENV_METRICS, default_value = tailrace_aggregator::model::DEFAULT_METRICS)]
    metrics: String,
    /// Records per batch (at most 200).
    #[arg(long, default_value_t = MAX_BATCH)]
    batch_size: usize,
    /// Pause between polls that found nothing.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    poll_interval: Duration,
    /// DynamoDB table of partial claims (created on first use if missing):
    /// counts exactly once across processes and replays.
    #[arg(long, env = config::ENV_IDEMPOTENCY_TABLE)]
    idempotency_table: Option<String>,
    /// How long a claim is kept.
    #[arg(long, env = config::ENV_IDEMPOTENCY_RETENTION, default_value = "15d", value_parser = humantime::parse_duration)]
    idempotency_retention: Duration,
    /// Where to write each published window's client tallies,
    /// s3://bucket/prefix/ (the notifier's top addresses).
    #[arg(long, env = config::ENV_TALLIES)]
    tallies: Option<S3Location>,
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    log_format: Log,
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["queue_url", "shard"])))]
struct ReplayArgs {
    /// The failure queue (SQS URL): replay every message's range, delete the
    /// message once done.
    #[arg(long)]
    queue_url: Option<String>,
    /// Kinesis stream (default: the one named in each message).
    #[arg(long, required_unless_present = "queue_url")]
    stream: Option<String>,
    /// Replay this shard's range instead of the queue's.
    #[arg(long, requires_all = ["from_sequence", "to_sequence", "stream"])]
    shard: Option<String>,
    /// First sequence number of the range.
    #[arg(long)]
    from_sequence: Option<String>,
    /// Last sequence number of the range (included).
    #[arg(long)]
    to_sequence: Option<String>,
    /// DynamoDB table of partial claims, the Lambda's: what was published
    /// before is not published again.
    #[arg(long, env = config::ENV_IDEMPOTENCY_TABLE)]
    idempotency_table: String,
    /// Metadata file, s3://bucket/key.
    #[arg(long, env = config::ENV_METADATA)]
    metadata: Option<S3Location>,
    /// Endpoint for every AWS service (moto_server, an emulator).
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    endpoint_url: Option<String>,
    /// CloudWatch namespace.
    #[arg(long, env = config::ENV_NAMESPACE, default_value = config::DEFAULT_NAMESPACE)]
    namespace: String,
    /// LogFormat (or preset) of raw-line records.
    #[arg(long, env = config::ENV_RAW_FORMAT, default_value = config::DEFAULT_RAW_FORMAT)]
    raw_format: String,
    /// Service dimension for raw-line and Kinesis Agent JSON records.
    #[arg(long, env = config::ENV_RAW_SERVICE, default_value = config::DEFAULT_RAW_SERVICE)]
    raw_service: String,
    /// Window for raw-line and Kinesis Agent JSON records.
    #[arg(long, env = config::ENV_WINDOW, default_value = "5m")]
    window: String,
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    log_format: Log,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Consume(args) => run_consume(*args).await,
        Command::Replay(args) => run_replay(*args).await,
        Command::CheckMetadata { file } => check_metadata(&file),
        Command::Notify(args) => run_notify(*args).await,
        Command::Resend(args) => run_resend(*args).await,
        #[cfg(feature = "inventory")]
        Command::Inventory(cmd) => run_inventory(cmd).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tailrace-aggregator: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run_consume(args: ConsumeArgs) -> anyhow::Result<ExitCode> {
    logging::init(
        match args.log_format {
            Log::Text => LogFormat::Text,
            Log::Json => LogFormat::Json,
        },
        false,
    );
    let settings = Settings {
        metadata: args.metadata,
        namespace: config::parse_namespace("--namespace", &args.namespace)?,
        metadata_ttl: args.metadata_ttl,
        raw_format: args.raw_format,
        raw_service: args.raw_service,
        window_secs: config::parse_window("--window", &args.window)?,
        put_timeout: args.put_timeout,
        model: config::parse_model(Some(&args.dimensions), Some(&args.metrics))?,
        idempotency_table: args.idempotency_table,
        idempotency_retention: args.idempotency_retention,
        tallies: args.tallies,
    };
    let sdk = sdk_config(args.endpoint_url.as_deref()).await;
    let clients = Clients::new(&sdk);
    let handler = build_handler(&settings, &clients)?;
    if let Some(store) = handler.claims() {
        store
            .ensure_table()
            .await
            .context("preparing the idempotency table")?;
    }
    let mut opts = ConsumeOptions::new(args.stream);
    opts.start = match args.from {
        From::TrimHorizon => StartPosition::TrimHorizon,
        From::Latest => StartPosition::Latest,
    };
    opts.batch_size = args.batch_size.clamp(1, MAX_BATCH);
    opts.exit_when_idle = args.exit_when_idle;
    opts.poll_interval = args.poll_interval;
    let summary = tokio::select! {
        r = consume(&clients.kinesis, &handler, &opts) => r.context("consuming")?,
        _ = tokio::signal::ctrl_c() => {
            tracing::info!("interrupted");
            return Ok(ExitCode::from(130));
        }
    };
    tracing::info!(
        shards = summary.shards,
        records = summary.records,
        batches = summary.batches,
        failed_batches = summary.failed_batches,
        poison = summary.poison,
        partials = summary.partials,
        datums = summary.datums,
        "consume finished"
    );
    Ok(ExitCode::SUCCESS)
}

async fn run_replay(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    use tailrace_aggregator::replay::{replay_queue, replay_range, Range, ReplaySummary};
    logging::init(
        match args.log_format {
            Log::Text => LogFormat::Text,
            Log::Json => LogFormat::Json,
        },
        false,
    );
    // The environment's settings (the metric model and the tallies among
    // them: a replayed batch lands where the live path publishes), then
    // the flags.
    let settings = Settings {
        metadata: args.metadata,
        namespace: config::parse_namespace("--namespace", &args.namespace)?,
        raw_format: args.raw_format,
        raw_service: args.raw_service,
        window_secs: config::parse_window("--window", &args.window)?,
        idempotency_table: Some(args.idempotency_table),
        ..Settings::from_env()?
    };
    let sdk = sdk_config(args.endpoint_url.as_deref()).await;
    let clients = Clients::new(&sdk);
    let handler = build_handler(&settings, &clients)?;
    if let Some(store) = handler.claims() {
        store
            .ensure_table()
            .await
            .context("preparing the idempotency table")?;
    }
    let summary = match (&args.queue_url, &args.shard) {
        (Some(queue), _) => replay_queue(
            &clients.sqs,
            &clients.kinesis,
            &handler,
            queue,
            args.stream.as_deref(),
        )
        .await
        .context("replaying the failure queue")?,
        (None, Some(shard)) => {
            let range = Range {
                stream: args.stream.clone().unwrap_or_default(),
                shard: shard.clone(),
                from: args.from_sequence.clone().unwrap_or_default(),
                to: args.to_sequence.clone().unwrap_or_default(),
            };
            let mut summary = ReplaySummary::default();
            replay_range(&clients.kinesis, &handler, &range, &mut summary)
                .await
                .context("replaying the range")?;
            summary
        }
        (None, None) => anyhow::bail!("give --queue-url or --shard"),
    };
    tracing::info!(
        ranges = summary.ranges,
        records = summary.records,
        partials = summary.partials,
        duplicates = summary.duplicates,
        datums = summary.datums,
        "replay finished"
    );
    println!(
        "replayed {} ranges: {} records, {} partials published, {} already published",
        summary.ranges, summary.records, summary.partials, summary.duplicates
    );
    Ok(ExitCode::SUCCESS)
}

fn check_metadata(file: &PathBuf) -> anyhow::Result<ExitCode> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let parsed = Metadata::parse(&text);
    for e in &parsed.errors {
        println!("{}:{}: {}", file.display(), e.row, e.reason);
    }
    println!(
        "{}: {} entries, {} wrong rows",
        file.display(),
        parsed.metadata.len(),
        parsed.errors.len()
    );
    Ok(if parsed.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
