//! `tailrace run`: the daemon. The flows running now, the checkpointer, the
//! monitor and the optional publishers; SIGHUP reloads the config, SIGTERM
//! and SIGINT stop it (see the module comment of [`super`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::config::{self, units::Toggle, Flow, HealthConfig, MonitoringConfig, Validated};
use crate::observe::cloudwatch::Publisher;
use crate::observe::registry::{FlowEntry, Registry};
use crate::reload;
use crate::shared::counters::FlowStats;
use crate::shared::ledger::Ledger;
use crate::state::checkpoint::{FileCheckpoint, Store};
use crate::state::checkpointer::{self, Checkpointer};
use crate::state::sequences::Sequences;

use super::aws::{host_id_from, imds_instance_id, kinesis_client, resolve_host_id, sdk_config};
use super::flows::{
    finish, flow_tailer, restore, start_flow, CheckpointSource, FlowContext, FlowHandles,
};

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
                .retire_flow(name, crate::shared::counters::now_ms());
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
