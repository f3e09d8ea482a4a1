//! One flow's pieces, started alike by `run`, `replay` and `check --live`:
//! the sink its lines go to, its tailer (resuming from the checkpoint and
//! from the positions a removed flow left), its reader thread and shipper
//! task, and waiting for them to finish; what the checkpoint gives back to
//! the ledger at a start; what the checkpointer saves.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};

use crate::config::{Flow, Mode, Validated};
use crate::observe::registry::Registry;
use crate::pack::aggregate::WindowSink;
use crate::pack::keys::KeyMaker;
use crate::pack::packer::RawPacker;
use crate::read::tailer::{Tailer, TailerSettings};
use crate::shared::counters::FlowStats;
use crate::shared::ledger::Ledger;
use crate::shared::sink::LineSink;
use crate::ship::queue::RecordSender;
use crate::ship::shipper::Shipper;
use crate::state::checkpoint::{FileCheckpoint, State, Store};
use crate::state::checkpointer::{self};
use crate::state::sequences::Sequences;

/// Unacknowledged record bytes allowed per flow before readers wait.
pub const QUEUE_BUDGET_BYTES: u32 = 3 * 1024 * 1024;

/// Everything one flow runs.
pub(super) struct FlowHandles {
    pub(super) name: String,
    pub(super) reader: std::thread::JoinHandle<()>,
    pub(super) shipper: tokio::task::JoinHandle<()>,
    pub(super) stats: Arc<FlowStats>,
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
pub(super) struct FlowContext<'a> {
    pub(super) ledger: &'a Ledger,
    pub(super) client: &'a aws_sdk_kinesis::Client,
    pub(super) host_id: &'a str,
    pub(super) stop: &'a Arc<AtomicBool>,
    pub(super) sequences: &'a Sequences,
    pub(super) runtime: tokio::runtime::Handle,
}

pub(super) fn start_flow(
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

pub(super) fn tailer_settings(flow: &Flow) -> TailerSettings {
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
    let own: std::collections::HashSet<crate::shared::identity::FileKey> =
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
pub(super) async fn finish(handles: Vec<FlowHandles>, deadline: Instant) -> bool {
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

/// Put what the checkpoint remembers beyond positions back into the ledger:
/// each flow's memory, the retired positions, and, as retired too, the
/// positions of flows the config no longer has (renamed or removed while
/// the agent was stopped).
pub(crate) fn restore(ledger: &Ledger, state: &State, config: &Validated) {
    for (name, flow) in &state.flows {
        ledger.restore_memory(name, flow.memory());
    }
    let now = crate::shared::counters::now_ms();
    let mut retired: Vec<crate::shared::positions::Retired> =
        state.retired.iter().cloned().map(Into::into).collect();
    retired.extend(
        state
            .files
            .iter()
            .filter(|c| !config.flows.iter().any(|f| f.name() == c.flow))
            .map(|c| crate::shared::positions::Retired {
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
    own: &std::collections::HashSet<crate::shared::identity::FileKey>,
) -> Vec<crate::shared::positions::Position> {
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
    let keys: std::collections::HashSet<crate::shared::identity::FileKey> = found
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| crate::shared::identity::FileKey {
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
pub(super) struct CheckpointSource {
    pub(super) ledger: Ledger,
    pub(super) sequences: Sequences,
    pub(super) store: Arc<Store>,
    pub(super) registry: Arc<Registry>,
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
