//! Wiring: config → readers, shippers, checkpointer; and the shutdown path.
//!
//! `run` starts, per flow, a reader thread (tailer + sink) and a shipper task,
//! plus, for the agent, one checkpointer task, the monitor (health, status
//! file), and when configured the CloudWatch self-metrics publisher and the
//! HTTP endpoint. SIGHUP reloads the config: flows added start, flows removed
//! stop the way SIGTERM stops them (their positions are kept as retired,
//! for a flow that reads the same files later: `flow_tailer`), flows
//! changed stop that way and start again from where they stood, others
//! are untouched (see [`crate::reload`]).
//! SIGTERM/SIGINT: the readers stop
//! reading and flush what they buffered, the shippers drain their queues until
//! every record is acknowledged, and the checkpoint is written a last time —
//! all bounded by `shutdown_timeout`. If time runs out, the checkpoint written
//! still only covers acknowledged lines, so nothing is lost; the rest is read
//! again on the next start.
//!
//! `replay` runs the same readers and shippers over a fixed list of files
//! once, without touching checkpoints.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use aws_config::BehaviorVersion;

use crate::config::{
    self, units::Toggle, AwsConfig, Flow, HealthConfig, Mode, MonitoringConfig, Validated,
};
use crate::observe::cloudwatch::Publisher;
use crate::observe::counters::FlowStats;
use crate::observe::registry::{FlowEntry, Registry};
use crate::pack::aggregate::WindowSink;
use crate::pack::packer::RawPacker;
use crate::pack::record::{KeyMaker, RecordSender};
use crate::read::tailer::{Tailer, TailerSettings};
use crate::read::watcher::LineSink;
use crate::reload;
use crate::ship::ledger::Ledger;
use crate::ship::shipper::Shipper;
use crate::state::checkpoint::{FileCheckpoint, State, Store};
use crate::state::checkpointer::{self, Checkpointer};
use crate::state::sequences::Sequences;

/// Unacknowledged record bytes allowed per flow before readers wait.
pub const QUEUE_BUDGET_BYTES: u32 = 3 * 1024 * 1024;

/// The SDK config from the config's AWS section and the SDK's default chain.
pub async fn sdk_config(aws: &AwsConfig) -> aws_config::SdkConfig {
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
    loader.load().await
}

/// Build a Kinesis client from the config's AWS section and the SDK's default chain.
pub async fn kinesis_client(aws: &AwsConfig) -> aws_sdk_kinesis::Client {
    aws_sdk_kinesis::Client::new(&sdk_config(aws).await)
}

/// The EC2 instance id from the instance metadata service (IMDSv2, short
/// timeout); `None` off EC2 or when `AWS_EC2_METADATA_DISABLED=true`.
pub async fn imds_instance_id() -> Option<String> {
    let imds_disabled =
        std::env::var("AWS_EC2_METADATA_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
    if imds_disabled {
        return None;
    }
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
    match got {
        Ok(Ok(id)) => Some(String::from(id)).filter(|id| !id.is_empty()),
        _ => None,
    }
}

/// The host id: a literal from the config, or for `auto` the EC2 instance id
/// (IMDSv2, short timeout), else the hostname.
pub async fn resolve_host_id(configured: &str) -> String {
    if configured != "auto" {
        return configured.to_string();
    }
    host_id_from(configured, imds_instance_id().await)
}

fn host_id_from(configured: &str, instance_id: Option<String>) -> String {
    if configured != "auto" {
        return configured.to_string();
    }
    instance_id.unwrap_or_else(|| gethostname::gethostname().to_string_lossy().into_owned())
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
    stats: Arc<FlowStats>,
    beats: Option<(
        Arc<crate::observe::watchdog::Beat>,
        Arc<crate::observe::watchdog::Beat>,
    )>,
) -> Result<FlowHandles> {
    let (tx, rx) =
        RecordSender::channel(QUEUE_BUDGET_BYTES, ctx.ledger.clone(), ctx.runtime.clone());
    let shipper = Shipper::new(
        ctx.client.clone(),
        flow.config.stream.clone(),
        ctx.ledger.clone(),
        stats.clone(),
        flow.name().to_string(),
    );
    let (shipper, mut sink) = match beats {
        Some((reader_beat, shipper_beat)) => (
            ctx.runtime.spawn(crate::observe::watchdog::Beating::new(
                shipper.run(rx),
                shipper_beat,
            )),
            Some(reader_beat),
        ),
        None => (ctx.runtime.spawn(shipper.run(rx)), None),
    };
    let plain = make_sink(
        &flow,
        tx,
        ctx.host_id,
        stats.clone(),
        next_sequence,
        ctx.sequences.clone(),
    );
    let mut sink = match sink.take() {
        Some(beat) => crate::observe::watchdog::BeatSink::wrap(plain, beat),
        None => plain,
    };
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

/// The tailer of `flow`, resuming from `checkpoints` and from the positions
/// a removed flow left for its files; `resumed`: the flow ran before (files
/// without a checkpoint appeared meanwhile: read whole, whatever
/// `start_at`); `down_since`: when the checkpoint of the agent's start was
/// written. `run` and `check --live` start flows alike through this.
pub(crate) fn flow_tailer(
    flow: &Flow,
    ledger: &Ledger,
    mut checkpoints: Vec<FileCheckpoint>,
    resumed: bool,
    down_since: Option<std::time::SystemTime>,
) -> Tailer {
    let name = flow.name();
    // Positions belong to files, not to a flow's name: a flow removed (by a
    // reload or a restart) left its positions behind, and a flow reading
    // those files now resumes from them (added back, renamed).
    let own: std::collections::HashSet<crate::read::identity::FileKey> =
        checkpoints.iter().map(|c| c.key).collect();
    let taken = claim_retired(ledger, flow, &own);
    if !taken.is_empty() {
        let mut from: Vec<&str> = taken.iter().map(|p| p.flow.as_str()).collect();
        from.dedup();
        tracing::info!(flow = %name, files = taken.len(), ?from, "resuming from the positions a removed flow left for these files");
        checkpoints.extend(taken.into_iter().map(|p| FileCheckpoint {
            flow: name.to_string(),
            ..p.into()
        }));
    }
    let mut settings = tailer_settings(flow);
    if resumed {
        settings.start_at = crate::config::StartAt::Beginning;
    }
    let mut tailer = Tailer::new(settings, ledger.clone(), checkpoints);
    if let Some(t) = down_since {
        tailer.set_down_since(t);
    }
    tailer
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

/// A flow while it runs.
struct RunningFlow {
    /// Its settings.
    flow: Arc<Flow>,
    /// Its settings, to compare with a reloaded config.
    fingerprint: String,
    /// Set to stop its reader.
    stop: Arc<AtomicBool>,
    handles: FlowHandles,
}

/// The daemon's state: what `run` set up, and the flows running now.
struct Agent {
    config_path: PathBuf,
    state_dir: PathBuf,
    host_id: String,
    client: aws_sdk_kinesis::Client,
    /// `host_id` and `aws` as configured, to notice a change on reload.
    shared: String,
    ledger: Ledger,
    sequences: Sequences,
    registry: Arc<Registry>,
    health: HealthConfig,
    monitoring: MonitoringConfig,
    shutdown_timeout: Duration,
    checkpoint_interval_ms: Arc<AtomicU64>,
    flows: BTreeMap<String, RunningFlow>,
    /// Progress of each flow's loops, for the systemd watchdog.
    heartbeats: Arc<crate::observe::watchdog::Heartbeats>,
    /// When the checkpoint the agent started from was written; only the
    /// flows of the agent's start use it (see `Tailer::set_down_since`).
    down_since: Option<std::time::SystemTime>,
}

impl Agent {
    /// Start `flow`, resuming from `checkpoints`. A flow that ran before
    /// (restarted by a reload) keeps its counters.
    /// `resumed`: the flow ran before this start (a reload changed it), so
    /// files it finds without a checkpoint appeared meanwhile and are read
    /// from their beginning whatever `start_at` says.
    fn start(&mut self, flow: Flow, checkpoints: Vec<FileCheckpoint>, resumed: bool) -> Result<()> {
        let flow = Arc::new(flow);
        let name = flow.name().to_string();
        let stats = self
            .registry
            .stats(&name)
            .unwrap_or_else(|| Arc::new(FlowStats::started_now()));
        self.registry
            .insert(&name, FlowEntry::new(stats.clone(), &flow, &self.health));
        let stop = Arc::new(AtomicBool::new(false));
        let ctx = FlowContext {
            ledger: &self.ledger,
            client: &self.client,
            host_id: &self.host_id,
            stop: &stop,
            sequences: &self.sequences,
            runtime: tokio::runtime::Handle::current(),
        };
        let mut tailer = flow_tailer(&flow, &self.ledger, checkpoints, resumed, self.down_since);
        tailer.set_stats(stats.clone());
        let next_sequence = self.sequences.register(&name);
        let beats = self.heartbeats.register(&name);
        let handles = start_flow(
            flow.clone(),
            &ctx,
            tailer,
            next_sequence,
            false,
            stats,
            Some(beats),
        )?;
        self.flows.insert(
            name,
            RunningFlow {
                fingerprint: reload::flow_fingerprint(&flow),
                flow,
                stop,
                handles,
            },
        );
        Ok(())
    }

    /// Stop these flows: their readers flush, their shippers drain until
    /// every record is acknowledged, bounded by `shutdown_timeout`. Returns
    /// whether all of them finished in time.
    async fn stop(&mut self, names: &[String]) -> bool {
        let mut handles = Vec::new();
        for name in names {
            if let Some(running) = self.flows.remove(name) {
                self.heartbeats.remove(name);
                running.stop.store(true, Ordering::Relaxed);
                handles.push(running.handles);
            }
        }
        finish(handles, Instant::now() + self.shutdown_timeout).await
    }

    /// Where `flow`'s files stand now, as checkpoints to resume from.
    fn positions_of(&self, flow: &str) -> Vec<FileCheckpoint> {
        self.ledger
            .positions()
            .into_iter()
            .filter(|p| p.flow == flow)
            .map(Into::into)
            .collect()
    }

    /// SIGHUP: read the config again and apply the difference (see
    /// [`crate::reload`]). A config that does not load is rejected, with
    /// the reason logged, and the running one stays.
    async fn reload(&mut self) {
        let path = self.config_path.clone();
        tracing::info!(config = %path.display(), "SIGHUP: reloading the configuration");
        let new = match config::Validated::load(&path) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(
                    "configuration reload rejected, the running configuration stays: {e}"
                );
                return;
            }
        };
        if new.state_dir != self.state_dir {
            tracing::error!(
                "configuration reload rejected, the running configuration stays: state_dir cannot change while the agent runs ({} → {}); restart the agent",
                self.state_dir.display(),
                new.state_dir.display()
            );
            return;
        }
        if new.monitoring.cloudwatch != self.monitoring.cloudwatch
            || new.monitoring.http != self.monitoring.http
        {
            tracing::warn!(
                "monitoring.cloudwatch and monitoring.http changes take effect at the next restart"
            );
        }
        self.health = new.monitoring.health.clone();
        self.registry.set_health(self.health.clone());
        // Flows left running get the new stall threshold too.
        for (name, running) in &self.flows {
            if let Some(stats) = self.registry.stats(name) {
                self.registry
                    .insert(name, FlowEntry::new(stats, &running.flow, &self.health));
            }
        }
        self.shutdown_timeout = new.shutdown_timeout;
        self.checkpoint_interval_ms.store(
            new.checkpoint_interval.as_millis() as u64,
            Ordering::Relaxed,
        );
        let shared = reload::shared_fingerprint(&new);
        let shared_changed = shared != self.shared;
        let running = self
            .flows
            .iter()
            .map(|(n, r)| (n.clone(), r.fingerprint.clone()))
            .collect();
        let plan = reload::plan(&running, shared_changed, &new);
        if shared_changed {
            self.host_id = resolve_host_id(&new.host_id).await;
            self.client = kinesis_client(&new.aws).await;
            self.shared = shared;
        }
        let stopping: Vec<String> = plan.stop.iter().chain(&plan.restart).cloned().collect();
        if !self.stop(&stopping).await {
            tracing::warn!("flows stopped by the reload still had unacknowledged records at the deadline (shutdown_timeout); those lines will be read and sent again");
        }
        for name in &plan.stop {
            self.registry.remove(name);
            // Its positions stay, as retired: a flow that reads its files
            // later (the same flow added back, or renamed) resumes there.
            self.ledger
                .retire_flow(name, crate::observe::counters::now_ms());
        }
        let mut flows: BTreeMap<String, Flow> = new
            .flows
            .into_iter()
            .map(|f| (f.name().to_string(), f))
            .collect();
        for name in plan.restart.iter().chain(&plan.start) {
            if let Some(flow) = flows.remove(name) {
                let checkpoints = self.positions_of(name);
                // The new readings replace the old ones.
                self.ledger.forget_flow(name);
                let resumed = plan.restart.contains(name);
                if let Err(e) = self.start(flow, checkpoints, resumed) {
                    tracing::error!(flow = %name, "cannot start flow: {e:#}");
                }
            }
        }
        tracing::info!(
            started = ?plan.start,
            stopped = ?plan.stop,
            restarted = ?plan.restart,
            unchanged = ?plan.unchanged,
            "configuration reloaded"
        );
    }
}

/// `tailrace run`: the daemon. Returns when a signal asked it to stop;
/// SIGHUP reloads `config_path`.
pub async fn run(config: Validated, config_path: &Path) -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    // First of all: SIGHUP's default action would end the process.
    let mut hup = signal(SignalKind::hangup()).context("installing SIGHUP handler")?;
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;

    crate::limits::raise_nofile();
    for problem in crate::read::globs::probe_flows(&config, config_path) {
        tracing::error!("{problem}");
    }
    let store = Store::open(&config.state_dir)
        .with_context(|| format!("opening state directory {}", config.state_dir.display()))?;
    // When the checkpoint resumed from was written: files rotated since
    // then that nothing names hold lines written while the agent was down.
    let down_since = std::fs::metadata(store.path())
        .and_then(|m| m.modified())
        .ok();
    let state = store.load().context("loading checkpoints")?;
    let ledger = Ledger::new();
    restore(&ledger, &state, &config);
    let selfmetrics = &config.monitoring.cloudwatch;
    let need_imds = config.host_id == "auto" || selfmetrics.enabled == Toggle::Auto;
    let instance_id = if need_imds {
        imds_instance_id().await
    } else {
        None
    };
    let publish = match selfmetrics.enabled {
        Toggle::On => true,
        Toggle::Off => false,
        Toggle::Auto => instance_id.is_some(),
    };
    let host_id = host_id_from(&config.host_id, instance_id);
    let sdk = sdk_config(&config.aws).await;
    let client = aws_sdk_kinesis::Client::new(&sdk);
    let registry = Arc::new(Registry::new(config.monitoring.health.clone()));
    let listener = if config.monitoring.http.enabled {
        let addr = &config.monitoring.http.listen;
        Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("monitoring.http: cannot listen on {addr}"))?,
        )
    } else {
        None
    };
    tracing::info!(host_id = %host_id, flows = config.flows.len(), state_dir = %config.state_dir.display(), self_metrics = publish, http = ?listener.as_ref().and_then(|l| l.local_addr().ok()), "tailrace starting");

    let mut agent = Agent {
        config_path: config_path.to_path_buf(),
        state_dir: config.state_dir.clone(),
        host_id: host_id.clone(),
        client,
        shared: reload::shared_fingerprint(&config),
        ledger,
        sequences: Sequences::new(&state.flows),
        registry: registry.clone(),
        health: config.monitoring.health.clone(),
        monitoring: config.monitoring.clone(),
        shutdown_timeout: config.shutdown_timeout,
        checkpoint_interval_ms: Arc::new(AtomicU64::new(
            config.checkpoint_interval.as_millis() as u64
        )),
        flows: BTreeMap::new(),
        heartbeats: Arc::new(crate::observe::watchdog::Heartbeats::new()),
        down_since,
    };
    for flow in config.flows {
        let (checkpoints, ran_before) = state.of_flow(flow.name());
        agent.start(flow, checkpoints, ran_before)?;
    }
    // Flows started by a reload resume from the running agent's state.
    agent.down_since = None;

    let (done_tx, done_rx) = tokio::sync::watch::channel(false);
    let store = Arc::new(store);
    let checkpointer = Checkpointer::spawn(
        Arc::new(CheckpointSource {
            ledger: agent.ledger.clone(),
            sequences: agent.sequences.clone(),
            store: store.clone(),
            registry: registry.clone(),
        }),
        agent.checkpoint_interval_ms.clone(),
    );
    let watchdog = tokio::spawn(crate::observe::watchdog::run(
        agent.heartbeats.clone(),
        done_rx.clone(),
    ));
    crate::observe::watchdog::ready(agent.flows.len());
    let monitor = tokio::spawn(crate::observe::registry::run(
        agent.ledger.clone(),
        registry.clone(),
        config.state_dir.clone(),
        done_rx.clone(),
    ));
    let publisher = publish.then(|| {
        let m = &config.monitoring.cloudwatch;
        let publisher = Publisher::new(
            aws_sdk_cloudwatch::Client::new(&sdk),
            m.namespace.clone(),
            m.host_dimension.then(|| host_id.clone()),
            registry.clone(),
        );
        tokio::spawn(publisher.run(m.interval, done_rx.clone()))
    });
    let server = listener.map(|l| tokio::spawn(crate::observe::http::serve(l, registry.clone())));

    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => agent.reload().await,
        }
    }
    tracing::info!("stopping: flushing and waiting for acknowledgements");
    crate::observe::watchdog::stopping();
    let names: Vec<String> = agent.flows.keys().cloned().collect();
    let clean = agent.stop(&names).await;
    // A periodic save still running completes before the final one (never a
    // stale checkpoint written after it); if it hangs, the final save is skipped.
    let saved: Result<()> = if checkpointer.stop(Duration::from_secs(10)).await {
        let state = checkpointer::snapshot(&agent.ledger, &agent.sequences);
        let s = store.clone();
        match tokio::task::spawn_blocking(move || s.save(&state)).await {
            Ok(r) => r.map_err(Into::into),
            Err(e) => Err(anyhow::anyhow!("checkpoint task failed: {e}")),
        }
    } else {
        Err(anyhow::anyhow!(
            "the previous checkpoint save still hangs; the last complete checkpoint stands and lines after it will be read again"
        ))
    };
    registry.checkpoint_result(saved.as_ref().err().map(ToString::to_string));
    let _ = tokio::time::timeout(Duration::from_secs(1), watchdog).await;
    // Last status file and last self-metrics, briefly.
    let _ = done_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(2), monitor).await;
    if let Some(p) = publisher {
        let _ = tokio::time::timeout(Duration::from_secs(5), p).await;
    }
    if let Some(s) = server {
        s.abort();
    }
    saved.context("writing the final checkpoint")?;
    if clean {
        tracing::info!("stopped cleanly");
    }
    Ok(())
}

/// Put what the checkpoint remembers beyond positions back into the ledger:
/// each flow's memory, the retired positions, and, as retired too, the
/// positions of flows the config no longer has (renamed or removed while
/// the agent was stopped).
pub(crate) fn restore(ledger: &Ledger, state: &State, config: &Validated) {
    for (name, flow) in &state.flows {
        ledger.restore_memory(name, flow.memory());
    }
    let now = crate::observe::counters::now_ms();
    let mut retired: Vec<crate::ship::ledger::Retired> =
        state.retired.iter().cloned().map(Into::into).collect();
    retired.extend(
        state
            .files
            .iter()
            .filter(|c| !config.flows.iter().any(|f| f.name() == c.flow))
            .map(|c| crate::ship::ledger::Retired {
                position: c.clone().into(),
                retired_ms: now,
            }),
    );
    if !retired.is_empty() {
        ledger.restore_retired(retired);
    }
}

/// The retired positions that are `flow`'s files now: their path (or the
/// file's own path, through a link) matches one of its globs or is named
/// like a rotation of its files, or their file is one its globs match now.
/// Files the flow has its own position for (`own`) are not taken.
fn claim_retired(
    ledger: &Ledger,
    flow: &Flow,
    own: &std::collections::HashSet<crate::read::identity::FileKey>,
) -> Vec<crate::ship::ledger::Position> {
    use std::os::unix::fs::MetadataExt;
    let globs: Vec<glob::Pattern> = flow
        .config
        .paths
        .value
        .iter()
        .filter_map(|p| glob::Pattern::new(p).ok())
        .collect();
    let mut found = Vec::new();
    for p in &flow.config.paths.value {
        crate::read::globs::expand(p, &mut found);
    }
    let keys: std::collections::HashSet<crate::read::identity::FileKey> = found
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| crate::read::identity::FileKey {
            dev: m.dev(),
            ino: m.ino(),
        })
        .collect();
    let patterns = &flow.config.paths.value;
    ledger.claim_retired(flow.name(), |p| {
        !own.contains(&p.key)
            && (keys.contains(&p.key)
                || std::iter::once(&p.path)
                    .chain(p.target.as_ref())
                    .any(|path| {
                        globs.iter().any(|g| g.matches_path(path))
                            || patterns
                                .iter()
                                .any(|pat| crate::read::globs::is_rotation_of(pat, path))
                    }))
    })
}

/// What the checkpointer saves: the ledger's positions and the flows' sequences.
struct CheckpointSource {
    ledger: Ledger,
    sequences: Sequences,
    store: Arc<Store>,
    registry: Arc<Registry>,
}

impl crate::state::checkpointer::Source for CheckpointSource {
    type State = State;
    fn version(&self) -> (u64, u64) {
        (self.ledger.version(), self.sequences.version())
    }
    fn snapshot(&self) -> State {
        checkpointer::snapshot(&self.ledger, &self.sequences)
    }
    fn save(&self, state: &State) -> Result<(), String> {
        self.store.save(state).map_err(|e| e.to_string())
    }
    fn lost(&self) -> bool {
        self.store.is_missing()
    }
    fn advice(&self) -> String {
        self.store.restart_advice()
    }
    fn report(&self, error: Option<String>) {
        self.registry.checkpoint_result(error);
    }
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
    let stats = Arc::new(FlowStats::started_now());
    let handle = start_flow(
        flow.clone(),
        &ctx,
        tailer,
        first_sequence,
        true,
        stats,
        None,
    )?;
    let progress = crate::commands::progress::Progress::new(total);
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
