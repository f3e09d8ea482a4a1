//! Wiring: config → readers, shippers, checkpointer; and the shutdown path.
//!
//! `run` starts, per flow, a reader thread (tailer + sink) and a shipper task,
//! plus one checkpointer task for the agent. SIGTERM/SIGINT: the readers stop
//! reading and flush what they buffered, the shippers drain their queues until
//! every record is acknowledged, and the checkpoint is written a last time —
//! all bounded by `shutdown_timeout`. If time runs out, the checkpoint written
//! still only covers acknowledged lines, so nothing is lost; the rest is read
//! again on the next start.
//!
//! `replay` runs the same readers and shippers over a fixed list of files
//! once, without touching checkpoints.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use aws_config::BehaviorVersion;

use crate::aggregate::{Sequences, WindowSink};
use crate::checkpoint::{State, Store};
use crate::config::{AwsConfig, Flow, Mode, Validated};
use crate::ledger::Ledger;
use crate::packer::RawPacker;
use crate::record::{KeyMaker, RecordSender};
use crate::shipper::Shipper;
use crate::stats::FlowStats;
use crate::tailer::{Tailer, TailerSettings};
use crate::watcher::LineSink;

/// Unacknowledged record bytes allowed per flow before readers wait.
pub const QUEUE_BUDGET_BYTES: u32 = 3 * 1024 * 1024;

/// Build a Kinesis client from the config's AWS section and the SDK's default chain.
pub async fn kinesis_client(aws: &AwsConfig) -> aws_sdk_kinesis::Client {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(region) = &aws.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    // Without an attempt timeout, an endpoint that accepts a call and never
    // answers would hold the flow's shipper forever; the shipper retries.
    loader = loader.timeout_config(
        aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(5))
            .operation_attempt_timeout(Duration::from_secs(30))
            .build(),
    );
    if let Some(endpoint) = &aws.endpoint_url {
        loader = loader.endpoint_url(endpoint);
    }
    let sdk = loader.load().await;
    aws_sdk_kinesis::Client::new(&sdk)
}

/// The host id: a literal from the config, or for `auto` the EC2 instance id
/// (IMDSv2, short timeout), else the hostname.
pub async fn resolve_host_id(configured: &str) -> String {
    if configured != "auto" {
        return configured.to_string();
    }
    let imds_disabled =
        std::env::var("AWS_EC2_METADATA_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
    if !imds_disabled {
        let client = aws_config::imds::Client::builder()
            .connect_timeout(Duration::from_millis(300))
            .read_timeout(Duration::from_millis(500))
            .max_attempts(1)
            .build();
        let got = tokio::time::timeout(
            Duration::from_secs(2),
            client.get("/latest/meta-data/instance-id"),
        )
        .await;
        if let Ok(Ok(id)) = got {
            let id: String = id.into();
            if !id.is_empty() {
                return id;
            }
        }
    }
    gethostname::gethostname().to_string_lossy().into_owned()
}

/// Everything one flow runs.
struct FlowHandles {
    name: String,
    reader: std::thread::JoinHandle<()>,
    shipper: tokio::task::JoinHandle<()>,
    stats: Arc<FlowStats>,
}

/// Build the sink a flow's lines go to.
fn make_sink(
    flow: &Flow,
    out: RecordSender,
    host_id: &str,
    stats: Arc<FlowStats>,
    next_sequence: u64,
    sequences: Sequences,
) -> Box<dyn LineSink + Send> {
    let keys = KeyMaker::new(flow.config.partition_key.clone(), host_id);
    match flow.config.mode {
        Mode::Raw => Box::new(RawPacker::new(
            out,
            keys,
            flow.config.max_record_bytes as usize,
            flow.config.linger,
            stats,
        )),
        Mode::Aggregate => Box::new(WindowSink::new(
            flow,
            out,
            keys,
            host_id,
            stats,
            next_sequence,
            sequences,
        )),
    }
}

fn max_line(flow: &Flow) -> usize {
    // A line plus its newline and the longest key must fit in one record.
    let cap = flow.config.max_record_bytes as usize - 256 - 1;
    (flow.config.max_line_bytes as usize).min(cap)
}

/// What `start_flow` needs besides the flow.
struct FlowContext<'a> {
    ledger: &'a Ledger,
    client: &'a aws_sdk_kinesis::Client,
    host_id: &'a str,
    stop: &'a Arc<AtomicBool>,
    sequences: &'a Sequences,
    runtime: tokio::runtime::Handle,
}

fn start_flow(
    flow: Arc<Flow>,
    ctx: &FlowContext<'_>,
    tailer: Tailer,
    next_sequence: u64,
    replay: bool,
) -> Result<FlowHandles> {
    let stats = Arc::new(FlowStats::default());
    let (tx, rx) =
        RecordSender::channel(QUEUE_BUDGET_BYTES, ctx.ledger.clone(), ctx.runtime.clone());
    let shipper = Shipper::new(
        ctx.client.clone(),
        flow.config.stream.clone(),
        ctx.ledger.clone(),
        stats.clone(),
        flow.name().to_string(),
    );
    let shipper = ctx.runtime.spawn(shipper.run(rx));
    let mut sink = make_sink(
        &flow,
        tx,
        ctx.host_id,
        stats.clone(),
        next_sequence,
        ctx.sequences.clone(),
    );
    let stop = ctx.stop.clone();
    let name = flow.name().to_string();
    let thread_name = format!("read-{name}");
    let mut tailer = tailer;
    let reader = std::thread::Builder::new()
        .name(thread_name)
        .spawn(move || {
            let result = if replay {
                tailer.drain_once(sink.as_mut())
            } else {
                tailer.run(sink.as_mut(), &stop)
            };
            if result.is_err() {
                tracing::warn!(flow = %flow.name(), "shipper stopped before the reader; unsent lines will be read again on restart");
            }
        })
        .context("spawning reader thread")?;
    Ok(FlowHandles {
        name,
        reader,
        shipper,
        stats,
    })
}

fn tailer_settings(flow: &Flow) -> TailerSettings {
    TailerSettings::new(
        flow.name(),
        flow.config.paths.value.clone(),
        flow.config.exclude.clone(),
        flow.config.start_at,
        max_line(flow),
    )
}

/// Wait for the readers to finish and the shippers to drain, bounded by `deadline`.
async fn finish(handles: Vec<FlowHandles>, deadline: Instant) -> bool {
    let mut clean = true;
    for h in handles {
        let reader = h.reader;
        let joined = tokio::task::spawn_blocking(move || reader.join());
        let left = deadline.saturating_duration_since(Instant::now());
        if tokio::time::timeout(left, joined).await.is_err() {
            tracing::warn!(flow = %h.name, "reader did not stop in time");
            clean = false;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if tokio::time::timeout(left, h.shipper).await.is_err() {
            tracing::warn!(flow = %h.name, "records still unacknowledged at the shutdown deadline; they will be read again on restart");
            clean = false;
        }
        tracing::info!(flow = %h.name, "{}", h.stats.summary());
    }
    clean
}

fn checkpoint_state(ledger: &Ledger, sequences: &Sequences) -> State {
    State {
        files: ledger.positions().into_iter().map(Into::into).collect(),
        flows: sequences.snapshot(),
    }
}

/// `tailrace run`: the daemon. Returns when a signal asked it to stop.
pub async fn run(config: Validated) -> Result<()> {
    let store = Store::open(&config.state_dir)
        .with_context(|| format!("opening state directory {}", config.state_dir.display()))?;
    let state = store.load().context("loading checkpoints")?;
    let host_id = resolve_host_id(&config.host_id).await;
    let client = kinesis_client(&config.aws).await;
    let ledger = Ledger::new();
    let sequences = Sequences::new(&state.flows);
    let stop = Arc::new(AtomicBool::new(false));
    tracing::info!(host_id = %host_id, flows = config.flows.len(), state_dir = %config.state_dir.display(), "tailrace starting");

    let ctx = FlowContext {
        ledger: &ledger,
        client: &client,
        host_id: &host_id,
        stop: &stop,
        sequences: &sequences,
        runtime: tokio::runtime::Handle::current(),
    };
    let mut handles = Vec::new();
    let flows: Vec<Arc<Flow>> = config.flows.into_iter().map(Arc::new).collect();
    for flow in &flows {
        let checkpoints = state
            .files
            .iter()
            .filter(|c| c.flow == flow.name())
            .cloned()
            .collect();
        let tailer = Tailer::new(tailer_settings(flow), ledger.clone(), checkpoints);
        let next_sequence = sequences.register(flow.name());
        handles.push(start_flow(
            flow.clone(),
            &ctx,
            tailer,
            next_sequence,
            false,
        )?);
    }

    let checkpointer = {
        let ledger = ledger.clone();
        let sequences = sequences.clone();
        let interval = config.checkpoint_interval;
        let store_path = store.path();
        let store = Arc::new(store);
        let store2 = store.clone();
        let task = tokio::spawn(async move {
            let mut last = (u64::MAX, u64::MAX);
            let mut failing = false;
            loop {
                tokio::time::sleep(interval).await;
                let version = (ledger.version(), sequences.version());
                if version == last {
                    continue;
                }
                let state = checkpoint_state(&ledger, &sequences);
                let store = store2.clone();
                match tokio::task::spawn_blocking(move || store.save(&state)).await {
                    Ok(Ok(())) => {
                        if failing {
                            tracing::info!(path = %store_path.display(), "checkpoint written again");
                        }
                        failing = false;
                        last = version;
                    }
                    Ok(Err(e)) => {
                        if !failing {
                            tracing::error!(error = %e, "cannot write checkpoint; lines keep flowing but a restart would re-send them");
                        }
                        failing = true;
                    }
                    Err(e) => tracing::error!(error = %e, "checkpoint task failed"),
                }
            }
        });
        (task, store)
    };

    wait_for_signal().await?;
    tracing::info!("stopping: flushing and waiting for acknowledgements");
    stop.store(true, Ordering::Relaxed);
    let deadline = Instant::now() + config.shutdown_timeout;
    let clean = finish(handles, deadline).await;
    checkpointer.0.abort();
    let state = checkpoint_state(&ledger, &sequences);
    checkpointer
        .1
        .save(&state)
        .context("writing the final checkpoint")?;
    if clean {
        tracing::info!("stopped cleanly");
    }
    Ok(())
}

async fn wait_for_signal() -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
    Ok(())
}

/// `tailrace replay`: ship the given files once from start to end.
pub async fn replay(config: Validated, flow_name: Option<&str>, files: &[PathBuf]) -> Result<()> {
    let Validated {
        flows,
        host_id,
        aws,
        ..
    } = config;
    let names: Vec<String> = flows.iter().map(|f| f.name().to_string()).collect();
    let flow = match flow_name {
        Some(name) => flows
            .into_iter()
            .find(|f| f.name() == name)
            .with_context(|| {
                format!(
                    "no flow named `{name}` in the config (it has: {})",
                    names.join(", ")
                )
            })?,
        None if names.len() == 1 => flows.into_iter().next().context("no flows")?,
        None => bail!(
            "the config has {} flows; choose one with --flow ({})",
            names.len(),
            names.join(", ")
        ),
    };
    let flow = Arc::new(flow);
    let host_id = resolve_host_id(&host_id).await;
    let client = kinesis_client(&aws).await;
    let ledger = Ledger::new();
    let stop = Arc::new(AtomicBool::new(false));
    let sequences = Sequences::default();
    sequences.register(flow.name());
    let ctx = FlowContext {
        ledger: &ledger,
        client: &client,
        host_id: &host_id,
        stop: &stop,
        sequences: &sequences,
        runtime: tokio::runtime::Handle::current(),
    };
    let mut tailer = Tailer::new(tailer_settings(&flow), ledger.clone(), Vec::new());
    let mut total = 0u64;
    for f in files {
        tailer
            .add_file_from_start(f)
            .with_context(|| format!("cannot read {}", f.display()))?;
        total += std::fs::metadata(f).map(|m| m.len()).unwrap_or(0);
    }
    // Replays get their own sequence space so they never collide with `run`.
    let first_sequence = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(1)
        << 1;
    let started = Instant::now();
    let handle = start_flow(flow.clone(), &ctx, tailer, first_sequence, true)?;
    let progress = crate::progress::Progress::new(total);
    let stats = handle.stats.clone();
    let progress_task = {
        let stats = stats.clone();
        let progress = progress.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                progress.set(stats.bytes_read.get());
            }
        })
    };
    let clean = finish(
        vec![handle],
        Instant::now() + Duration::from_secs(365 * 24 * 3600),
    )
    .await;
    progress_task.abort();
    progress.finish();
    if !clean || ledger.outstanding() > 0 {
        bail!("replay did not finish shipping");
    }
    let secs = started.elapsed().as_secs_f64();
    tracing::info!(
        lines = stats.lines_read.get(),
        records = stats.records_sent.get(),
        bytes = stats.bytes_sent.get(),
        seconds = format!("{secs:.2}"),
        "replay done"
    );
    Ok(())
}
