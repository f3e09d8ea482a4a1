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
use tailrace_aggregator::clients::{
    build_handler, build_notifier, metadata_source, sdk_config_for, Clients,
};
use tailrace_aggregator::config::{Settings, SettingsFlags};
use tailrace_aggregator::entry::consume::{consume, ConsumeOptions, StartPosition, MAX_BATCH};
use tailrace_aggregator::join::metadata::Metadata;
use tailrace_aggregator::logging::{self, LogFormat};

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

impl Command {
    /// The command's settings: the environment (through `lookup`), then
    /// its flags. Every command that has settings takes them from here, as
    /// the Lambda does from [`Settings::from_env`]; `check-metadata` has
    /// none.
    fn settings(&self, lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<Settings> {
        let flags = match self {
            Command::Consume(a) => &a.settings,
            Command::Replay(a) => &a.settings,
            Command::Notify(a) => &a.settings,
            Command::Resend(a) => &a.settings,
            #[cfg(feature = "inventory")]
            Command::Inventory(InventoryCommand::Sync(a)) => &a.settings,
            Command::CheckMetadata { .. } => return Ok(Settings::default()),
        };
        Ok(Settings::from_lookup_and_flags(lookup, flags)?)
    }
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
    /// Print the diff and the new file; write nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    inventory: tailrace_aggregator::entry::inventory::InventoryFlags,
    #[command(flatten)]
    settings: SettingsFlags,
}

#[cfg(feature = "inventory")]
async fn run_inventory(cmd: InventoryCommand, settings: Settings) -> anyhow::Result<ExitCode> {
    use tailrace_aggregator::entry::inventory;
    let InventoryCommand::Sync(a) = cmd;
    logging::init(LogFormat::Text, false);
    let metadata = inventory::metadata_file(&settings)?;
    let sdk = sdk_config_for(&a.settings).await;
    let (mut options, keys) = a.inventory.options(|name| std::env::var(name).ok())?;
    options.dry_run = a.dry_run;
    let out = inventory::sync_once(&sdk, metadata, keys, options)
        .await
        .with_context(|| format!("inventory sync of {metadata}"))?;
    tailrace_inventory::lambda::log_outcome(&inventory::location(metadata), &out);
    println!("{}", out.diff);
    if a.dry_run {
        println!(
            "dry run: nothing written; {metadata} would be:\n{}",
            out.text
        );
    } else {
        println!(
            "{metadata}: {}",
            if out.written { "written" } else { "unchanged" }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The notifier as the Lambda builds it (bin/bootstrap.rs), from the
/// command's settings (the metric model among them), with its own
/// metadata source.
async fn notifier(
    settings: &Settings,
    flags: &SettingsFlags,
) -> anyhow::Result<(tailrace_aggregator::notify::Notifier, Clients)> {
    let topic = settings
        .notify_topic
        .as_deref()
        .context("no notification topic: give --topic or set TAILRACE_NOTIFY_TOPIC")?;
    let sdk = sdk_config_for(flags).await;
    let clients = Clients::new(&sdk);
    let metadata = metadata_source(settings, &clients);
    let notifier = build_notifier(settings, &clients, &metadata, topic);
    Ok((notifier, clients))
}

/// `notify`: the alarm notifier outside Lambda (tailrace_aggregator::notify).
#[derive(clap::Args)]
struct NotifyArgs {
    /// A Lambda SNS event, an SNS message envelope (as an SQS subscriber
    /// receives it) or CloudWatch's alarm JSON; `-` reads standard input.
    event: PathBuf,
    #[command(flatten)]
    settings: SettingsFlags,
}

async fn run_notify(args: NotifyArgs, settings: Settings) -> anyhow::Result<ExitCode> {
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
    let (notifier, _) = notifier(&settings, &args.settings).await?;
    let sent = notifier.handle(&messages).await?;
    for n in &sent {
        println!("{}", n.subject);
    }
    Ok(ExitCode::SUCCESS)
}

/// `resend`: the notifier's failure queue (tailrace_aggregator::notify::resend).
#[derive(clap::Args)]
struct ResendArgs {
    /// The on-failure queue (SQS URL; the stack's output NotifyFailuresQueue).
    #[arg(long)]
    queue_url: String,
    /// List the kept alarms; send and delete nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    settings: SettingsFlags,
}

async fn run_resend(args: ResendArgs, settings: Settings) -> anyhow::Result<ExitCode> {
    use tailrace_aggregator::notify::resend::resend_queue;
    logging::init(LogFormat::Text, false);
    let (notifier, clients) = notifier(&settings, &args.settings).await?;
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

impl Log {
    fn init(self) {
        logging::init(
            match self {
                Log::Text => LogFormat::Text,
                Log::Json => LogFormat::Json,
            },
            false,
        );
    }
}

#[derive(clap::Args)]
struct ConsumeArgs {
    /// Kinesis stream name.
    #[arg(long)]
    stream: String,
    /// Exit 0 after this long without new records (e.g. 5s).
    #[arg(long, value_parser = humantime::parse_duration)]
    exit_when_idle: Option<Duration>,
    /// Where to start reading.
    #[arg(long, value_enum, default_value = "trim-horizon")]
    from: From,
    /// Records per batch (at most 200).
    #[arg(long, default_value_t = MAX_BATCH)]
    batch_size: usize,
    /// Pause between polls that found nothing.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    poll_interval: Duration,
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    log_format: Log,
    #[command(flatten)]
    settings: SettingsFlags,
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
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    log_format: Log,
    #[command(flatten)]
    settings: SettingsFlags,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command.settings(|name| std::env::var(name).ok()) {
        Err(e) => Err(e),
        Ok(settings) => match cli.command {
            Command::Consume(args) => run_consume(*args, settings).await,
            Command::Replay(args) => run_replay(*args, settings).await,
            Command::CheckMetadata { file } => check_metadata(&file),
            Command::Notify(args) => run_notify(*args, settings).await,
            Command::Resend(args) => run_resend(*args, settings).await,
            #[cfg(feature = "inventory")]
            Command::Inventory(cmd) => run_inventory(cmd, settings).await,
        },
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tailrace-aggregator: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The handler as the Lambda builds it, and the clients it uses; the claim
/// table is made ready when the settings name one.
async fn handler(
    settings: &Settings,
    flags: &SettingsFlags,
) -> anyhow::Result<(tailrace_aggregator::entry::handler::Handler, Clients)> {
    let sdk = sdk_config_for(flags).await;
    let clients = Clients::new(&sdk);
    let metadata = metadata_source(settings, &clients);
    let handler = build_handler(settings, &clients, &metadata)?;
    if let Some(store) = handler.claims() {
        store
            .ensure_table()
            .await
            .context("preparing the idempotency table")?;
    }
    Ok((handler, clients))
}

async fn run_consume(args: ConsumeArgs, settings: Settings) -> anyhow::Result<ExitCode> {
    args.log_format.init();
    let (handler, clients) = handler(&settings, &args.settings).await?;
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

async fn run_replay(args: ReplayArgs, settings: Settings) -> anyhow::Result<ExitCode> {
    use tailrace_aggregator::entry::replay::{replay_queue, replay_range, Range, ReplaySummary};
    args.log_format.init();
    // The same settings as `consume` and the Lambda (the metric model and
    // the tallies among them: a replayed batch lands where the live path
    // publishes); the claim table is required: what was published before
    // is not published again.
    if settings.idempotency_table.is_none() {
        anyhow::bail!(
            "replay needs the Lambda's claim table: give --idempotency-table or set TAILRACE_IDEMPOTENCY_TABLE"
        );
    }
    let (handler, clients) = handler(&settings, &args.settings).await?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use tailrace_aggregator::publish::model::{DimensionSet, Metric};

    fn settings_of(args: &[&str], env: &[(&str, &str)]) -> Settings {
        let cli = Cli::try_parse_from(args).expect("valid command line");
        cli.command
            .settings(|name| {
                env.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            })
            .expect("valid settings")
    }

    /// Issue #24: `replay` built its settings apart from `consume`'s and
    /// published every metric whatever TAILRACE_DIMENSIONS and
    /// TAILRACE_METRICS said, so a replayed batch landed where the live path
    /// publishes nothing. Every command now takes the same front door.
    #[test]
    fn replay_and_consume_publish_the_same_model_for_the_same_environment() {
        let env = [
            ("TAILRACE_DIMENSIONS", "SourceApplication"),
            ("TAILRACE_METRICS", "Requests"),
            ("TAILRACE_IDEMPOTENCY_TABLE", "claims"),
        ];
        let consume = settings_of(&["tailrace-aggregator", "consume", "--stream", "s"], &env);
        let replay = settings_of(
            &["tailrace-aggregator", "replay", "--queue-url", "http://q"],
            &env,
        );
        assert_eq!(consume.model.dimension_sets(), &[DimensionSet::Application]);
        assert_eq!(consume.model.metrics(), &[Metric::Requests]);
        assert_eq!(replay, consume);
        let notify = settings_of(&["tailrace-aggregator", "notify", "-"], &env);
        assert_eq!(notify, consume);
    }

    #[test]
    fn flags_override_the_environment_and_keep_the_rest() {
        let env = [
            ("TAILRACE_NAMESPACE", "FromEnv"),
            ("TAILRACE_METRICS", "Requests"),
            ("TAILRACE_WINDOW", "1m"),
        ];
        let s = settings_of(
            &[
                "tailrace-aggregator",
                "consume",
                "--stream",
                "s",
                "--namespace",
                "FromFlag",
                "--dimensions",
                "Service",
            ],
            &env,
        );
        assert_eq!(s.namespace, "FromFlag");
        assert_eq!(s.window_secs, 60);
        assert_eq!(s.model.dimension_sets(), &[DimensionSet::Service]);
        assert_eq!(s.model.metrics(), &[Metric::Requests]);
        let none = settings_of(&["tailrace-aggregator", "consume", "--stream", "s"], &[]);
        assert_eq!(none, Settings::default());
    }
}
