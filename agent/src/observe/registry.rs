//! The agent's view of itself: which flows run, where their files stand,
//! whether it is healthy, and what the status file ([`crate::state::status_file`]) says.
//!
//! The [`Registry`] holds, per running flow, its counters ([`FlowStats`]) and
//! health thresholds, plus the checkpointer's last error. Once a second the
//! [`Sampler`] turns the ledger's positions into per-file views (size,
//! acknowledged offset, when that offset last moved) and per-flow gauges
//! (backlog bytes, age of the oldest unacknowledged line). Everything that
//! reports — CloudWatch self-metrics, the HTTP endpoint, the status file —
//! reads the registry; nothing here touches the data path beyond reading its
//! relaxed counters and taking the ledger's lock once per sample.
//!
//! Age of the oldest unacknowledged line: the sampler remembers, per file,
//! when each size was first seen; the oldest unacknowledged byte (the
//! checkpoint offset) was written no later than the first sample whose size
//! passed it. The age is therefore exact to the sampling interval (1 s), and
//! counts at most from the agent's start for bytes already waiting then.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crate::config::{HealthConfig, Mode};
use crate::shared::counters::{now_ms, FlowStats};
use crate::shared::identity::FileKey;
use crate::shared::ledger::Ledger;
use crate::shared::positions::Position;
use crate::shared::ratelog::Repeats;
use crate::state::status_file::{self, FileView, FlowView, StatusFile};

/// What the registry knows of one running flow.
#[derive(Debug, Clone)]
pub struct FlowEntry {
    /// Its counters (kept across restarts of the flow by a reload).
    pub stats: Arc<FlowStats>,
    /// Its stream.
    pub stream: String,
    /// Nothing acknowledged for this long while bytes wait: stalled.
    pub stall_after: Duration,
}

impl FlowEntry {
    /// The entry for a flow: `stall_after` is raised, for aggregate flows, to
    /// a window plus its lateness plus a minute (a window holds its lines
    /// that long before anything is sent).
    pub fn new(
        stats: Arc<FlowStats>,
        flow: &crate::config::Flow,
        health: &HealthConfig,
    ) -> FlowEntry {
        let c = &flow.config;
        let stall_after = match c.mode {
            Mode::Raw => health.stall_after.max(c.linger + Duration::from_secs(60)),
            Mode::Aggregate => health
                .stall_after
                .max(c.window.value + c.allowed_lateness + Duration::from_secs(60)),
        };
        FlowEntry {
            stats,
            stream: c.stream.clone(),
            stall_after,
        }
    }
}

/// Shared view of the running agent.
#[derive(Debug)]
pub struct Registry {
    flows: RwLock<BTreeMap<String, FlowEntry>>,
    files: Mutex<Vec<FileView>>,
    checkpoint_error: Mutex<Option<(u64, String)>>,
    health: RwLock<HealthConfig>,
}

impl Registry {
    /// An empty registry with these health thresholds.
    pub fn new(health: HealthConfig) -> Registry {
        Registry {
            flows: RwLock::new(BTreeMap::new()),
            files: Mutex::new(Vec::new()),
            checkpoint_error: Mutex::new(None),
            health: RwLock::new(health),
        }
    }

    /// Add or replace a flow.
    pub fn insert(&self, name: &str, entry: FlowEntry) {
        if let Ok(mut f) = self.flows.write() {
            f.insert(name.to_string(), entry);
        }
    }

    /// Forget a flow (it was removed).
    pub fn remove(&self, name: &str) {
        if let Ok(mut f) = self.flows.write() {
            f.remove(name);
        }
    }

    /// The stats of a flow, if it runs (or ran and was kept).
    pub fn stats(&self, name: &str) -> Option<Arc<FlowStats>> {
        self.flows
            .read()
            .ok()
            .and_then(|f| f.get(name).map(|e| e.stats.clone()))
    }

    /// A snapshot of the flows.
    pub fn flows(&self) -> Vec<(String, FlowEntry)> {
        self.flows
            .read()
            .map(|f| f.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }

    /// The files as last sampled.
    pub fn files(&self) -> Vec<FileView> {
        self.files.lock().map(|f| f.clone()).unwrap_or_default()
    }

    /// The checkpointer wrote the checkpoint (`None`) or failed (`Some(error)`).
    pub fn checkpoint_result(&self, error: Option<String>) {
        if let Ok(mut e) = self.checkpoint_error.lock() {
            match error {
                None => *e = None,
                Some(msg) => {
                    let since = e.as_ref().map_or_else(now_ms, |(t, _)| *t);
                    *e = Some((since, msg));
                }
            }
        }
    }

    /// Since when the checkpoint cannot be written (Unix ms) and why.
    pub fn checkpoint_error(&self) -> Option<(u64, String)> {
        self.checkpoint_error.lock().ok().and_then(|e| e.clone())
    }

    /// Replace the health thresholds (a reload).
    pub fn set_health(&self, health: HealthConfig) {
        if let Ok(mut h) = self.health.write() {
            *h = health;
        }
    }

    /// Health problems at `now` (Unix ms); empty when healthy.
    pub fn problems(&self, now: u64) -> Vec<String> {
        let health = self.health.read().map(|h| h.clone()).unwrap_or_default();
        let mut out = Vec::new();
        if let Some((since, error)) = self.checkpoint_error() {
            out.push(format!(
                "checkpoint cannot be written (for {}): {error}",
                ago(now, since)
            ));
        }
        for (name, f) in self.flows() {
            let s = &f.stats;
            let failing = s.failing_since_ms.get();
            if failing != 0
                && now.saturating_sub(failing) >= health.kinesis_failing_after.as_millis() as u64
            {
                let error = s.last_error().map(|(_, e)| e).unwrap_or_default();
                out.push(format!(
                    "flow {name}: Kinesis calls failing for {} (stream {}): {error}",
                    ago(now, failing),
                    f.stream
                ));
            }
            let backlog = s.backlog_bytes.get();
            let since = s.last_ack_ms.get().max(s.started_ms.get());
            if backlog > 0 && now.saturating_sub(since) >= f.stall_after.as_millis() as u64 {
                out.push(format!(
                    "flow {name}: nothing acknowledged for {} while {backlog} bytes wait in its files",
                    ago(now, since)
                ));
            }
            // A loss is a stall that already cost lines: reported for as
            // long as a stall must last to be one.
            let lost_at = s.last_loss_ms.get();
            if lost_at != 0 && now.saturating_sub(lost_at) < f.stall_after.as_millis() as u64 {
                out.push(format!(
                    "flow {name}: {} bytes lost (files deleted or cut short before they could be read; the log names them), the last {} ago",
                    s.bytes_lost.get(),
                    ago(now, lost_at)
                ));
            }
        }
        out
    }

    /// The status file's content now.
    pub fn status_file(&self, now: u64) -> StatusFile {
        let flows = self
            .flows()
            .into_iter()
            .map(|(name, f)| {
                let s = &f.stats;
                let nz = |v: u64| (v != 0).then_some(v);
                FlowView {
                    name,
                    stream: f.stream.clone(),
                    lines_read: s.lines_read.get(),
                    records_sent: s.records_sent.get(),
                    last_ack_ms: nz(s.last_ack_ms.get()),
                    failing_since_ms: nz(s.failing_since_ms.get()),
                    service_errors: s.service_errors.get(),
                    transport_errors: s.transport_errors.get(),
                    records_throttled: s.records_throttled.get(),
                    records_failed: s.records_failed.get(),
                    parse_rejects: s.parse_rejects.get(),
                    last_error: s.last_error(),
                    backlog_bytes: s.backlog_bytes.get(),
                    oldest_unacked_secs: s.oldest_unacked_secs.get(),
                    bytes_lost: s.bytes_lost.get(),
                    last_loss_ms: nz(s.last_loss_ms.get()),
                }
            })
            .collect();
        StatusFile {
            written_ms: now,
            pid: std::process::id(),
            problems: self.problems(now),
            flows,
            files: self.files(),
        }
    }
}

/// `5m3s`-style duration from `since` to `now` (Unix ms), whole seconds.
fn ago(now: u64, since: u64) -> String {
    humantime::format_duration(Duration::from_secs(now.saturating_sub(since) / 1000)).to_string()
}

/// Per file: what the sampler remembers between samples.
#[derive(Debug, Default)]
struct Track {
    /// (size, when first seen at that size), sizes increasing.
    growth: VecDeque<(u64, u64)>,
    last_size: u64,
    acknowledged: u64,
    last_ack_ms: Option<u64>,
    /// When the file was last looked at (`stat`): the monotonic clock, as
    /// the wall clock can step.
    stat_at: Option<std::time::Instant>,
}

/// Most growth samples kept per file (one per second of growth: an hour).
const MAX_GROWTH: usize = 3600;

/// A file all acknowledged at its last look is looked at again only after
/// this long: with a thousand idle files, a `stat` of each every
/// second was most of an idle agent's CPU. New bytes in it are seen at
/// most this late; a file with unacknowledged bytes is looked at every
/// sample, so ages are exact to the second while something waits.
const IDLE_RESTAT: Duration = Duration::from_secs(5);

/// Turns ledger positions into file views and flow gauges.
#[derive(Debug, Default)]
pub struct Sampler {
    tracks: HashMap<(String, FileKey), Track>,
}

impl Sampler {
    /// A sampler with no history.
    pub fn new() -> Sampler {
        Sampler::default()
    }

    /// Sample the ledger now and update `registry`.
    pub fn sample(&mut self, ledger: &Ledger, registry: &Registry) {
        let running: std::collections::HashSet<String> =
            registry.flows().into_iter().map(|(n, _)| n).collect();
        // Removed flows keep their positions in the checkpoint (a flow added
        // back resumes there) but are not reported.
        let positions = ledger
            .positions()
            .into_iter()
            .filter(|p| running.contains(&p.flow));
        let now = now_ms();
        let sized: Vec<(Position, Option<u64>)> = positions
            .map(|p| {
                // One lookup (one key allocation) per file per sample.
                let size = match self.tracks.get_mut(&(p.flow.clone(), p.key)) {
                    Some(t)
                        if t.last_size <= p.offset
                            && t.stat_at.is_some_and(|at| at.elapsed() < IDLE_RESTAT) =>
                    {
                        Some(t.last_size)
                    }
                    track => {
                        if let Some(t) = track {
                            t.stat_at = Some(std::time::Instant::now());
                        }
                        std::fs::metadata(&p.path)
                            .ok()
                            .filter(|m| m.dev() == p.key.dev && m.ino() == p.key.ino)
                            .map(|m| m.len())
                    }
                };
                (p, size)
            })
            .collect();
        let views = self.update(sized.into_iter(), now);
        let mut per_flow: HashMap<&str, (u64, u64)> = HashMap::new();
        for (view, age) in &views {
            let e = per_flow.entry(view.flow.as_str()).or_default();
            if let Some(size) = view.size {
                e.0 += size.saturating_sub(view.acknowledged);
            }
            e.1 = e.1.max(*age);
        }
        for (name, f) in registry.flows() {
            let (backlog, age) = per_flow.get(name.as_str()).copied().unwrap_or_default();
            f.stats.backlog_bytes.set(backlog);
            f.stats.oldest_unacked_secs.set(age);
        }
        if let Ok(mut files) = registry.files.lock() {
            *files = views.into_iter().map(|(v, _)| v).collect();
        }
    }

    /// The pure part of a sample: views and ages (seconds) from positions
    /// with the files' sizes, at `now` (Unix ms).
    fn update(
        &mut self,
        positions: impl Iterator<Item = (Position, Option<u64>)>,
        now: u64,
    ) -> Vec<(FileView, u64)> {
        let mut seen = HashMap::new();
        let mut out = Vec::new();
        for (p, size) in positions {
            let id = (p.flow.clone(), p.key);
            let t = self.tracks.entry(id.clone()).or_default();
            if let Some(size) = size {
                if size < t.last_size || p.offset < t.acknowledged {
                    // Truncated, or a new generation: start over.
                    *t = Track::default();
                }
                if size > t.last_size || t.growth.is_empty() {
                    t.growth.push_back((size, now));
                    if t.growth.len() > MAX_GROWTH {
                        t.growth.pop_front();
                    }
                    t.last_size = size;
                }
            }
            if p.offset > t.acknowledged {
                t.last_ack_ms = Some(now);
            }
            t.acknowledged = p.offset;
            // Drop the samples whose bytes are all acknowledged: the front
            // is then the first size that passed the checkpoint.
            while t.growth.len() > 1 && t.growth.front().is_some_and(|&(s, _)| s <= p.offset) {
                t.growth.pop_front();
            }
            // Growth is pushed whenever the size rises, so when bytes wait
            // the front now holds a size past the offset.
            let age = match (size, t.growth.front()) {
                (Some(size), Some(&(_, at))) if size > p.offset => now.saturating_sub(at) / 1000,
                _ => 0,
            };
            out.push((
                FileView {
                    flow: p.flow,
                    path: p.path,
                    dev: p.key.dev,
                    ino: p.key.ino,
                    acknowledged: p.offset,
                    size,
                    last_ack_ms: t.last_ack_ms,
                },
                age,
            ));
            seen.insert(id, ());
        }
        self.tracks.retain(|k, _| seen.contains_key(k));
        out
    }
}

/// The monitor task: samples every second, writes the status file every
/// two, logs parse rejects (count and a sample) once a minute. When `done`
/// turns true it samples and writes the status file a last time and returns.
pub async fn run(
    ledger: Ledger,
    registry: Arc<Registry>,
    state_dir: PathBuf,
    mut done: tokio::sync::watch::Receiver<bool>,
) {
    let mut sampler = Sampler::new();
    let status_errors = Repeats::default();
    let mut tick: u64 = 0;
    let mut rejects_seen: HashMap<String, u64> = HashMap::new();
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let last = tokio::select! {
            _ = interval.tick() => false,
            _ = done.wait_for(|d| *d) => true,
        };
        tick += 1;
        sampler.sample(&ledger, &registry);
        if last || tick.is_multiple_of(2) {
            let status = registry.status_file(now_ms());
            if let Err(e) = status_file::write(&state_dir, &status) {
                if let Some(more) = status_errors.check() {
                    tracing::warn!(dir = %state_dir.display(), error = %e, "cannot write the status file{more}");
                }
            }
        }
        if last || tick.is_multiple_of(60) {
            log_rejects(&registry, &mut rejects_seen);
        }
        if last {
            return;
        }
    }
}

/// Log, per flow, the lines rejected since the last call, with a sample.
fn log_rejects(registry: &Registry, seen: &mut HashMap<String, u64>) {
    for (name, f) in registry.flows() {
        let now = f.stats.parse_rejects.get();
        let before = seen.insert(name.clone(), now).unwrap_or(0);
        let new = now.saturating_sub(before);
        let sample = f.stats.take_reject_sample();
        if new > 0 {
            match sample {
                Some(sample) => {
                    tracing::warn!(flow = %name, rejected = new, sample = %sample, "{new} lines did not match the flow's format in the last minute (counted, shipped as rejects)")
                }
                None => {
                    tracing::warn!(flow = %name, rejected = new, "{new} lines did not match the flow's format in the last minute (counted, shipped as rejects)")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::identity::Fingerprint;

    fn pos(offset: u64) -> Position {
        Position {
            flow: "web".into(),
            key: FileKey { dev: 1, ino: 2 },
            fingerprint: Fingerprint::EMPTY,
            path: "/x".into(),
            target: None,
            offset,
            tail: None,
        }
    }

    #[test]
    fn age_of_the_oldest_unacknowledged_line() {
        let mut s = Sampler::new();
        // t=0: 100 bytes, all acknowledged.
        let v = s.update([(pos(100), Some(100))].into_iter(), 0);
        assert_eq!(v[0].1, 0);
        // t=1s: grows to 150; t=2s: to 200; nothing acknowledged.
        s.update([(pos(100), Some(150))].into_iter(), 1000);
        let v = s.update([(pos(100), Some(200))].into_iter(), 2000);
        assert_eq!(v[0].1, 1, "the first unacknowledged bytes appeared at t=1s");
        // t=5s: the first 50 acknowledged; the oldest waiting appeared at 2s.
        let v = s.update([(pos(150), Some(200))].into_iter(), 5000);
        assert_eq!(v[0].1, 3);
        assert_eq!(v[0].0.last_ack_ms, Some(5000));
        // t=6s: all acknowledged.
        let v = s.update([(pos(200), Some(200))].into_iter(), 6000);
        assert_eq!(v[0].1, 0);
        // Truncated: starts over.
        let v = s.update([(pos(0), Some(10))].into_iter(), 7000);
        assert_eq!(v[0].1, 0);
        assert_eq!(v[0].0.size, Some(10));
    }

    #[test]
    fn health_reports_stalls_failures_and_checkpoint_errors() {
        let r = Registry::new(HealthConfig {
            stall_after: Duration::from_secs(60),
            kinesis_failing_after: Duration::from_secs(30),
        });
        let stats = Arc::new(FlowStats::default());
        stats.started_ms.set(1_000);
        r.insert(
            "web",
            FlowEntry {
                stats: stats.clone(),
                stream: "s".into(),
                stall_after: Duration::from_secs(60),
            },
        );
        assert!(r.problems(2_000).is_empty());
        stats.backlog_bytes.set(10);
        assert!(r.problems(50_000).is_empty());
        let p = r.problems(62_000);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("nothing acknowledged for 1m 1s"), "{p:?}");
        stats.note_ack();
        stats.backlog_bytes.set(0);
        assert!(r.problems(now_ms()).is_empty());
        stats.failing_since_ms.set(now_ms() - 31_000);
        stats.note_error("ResourceNotFoundException: gone".into());
        let p = r.problems(now_ms());
        assert!(
            p.iter().any(|p| p.contains("ResourceNotFoundException")),
            "{p:?}"
        );
        stats.note_ack();
        r.checkpoint_result(Some("disk full".into()));
        let p = r.problems(now_ms());
        assert!(p.len() == 1 && p[0].contains("disk full"), "{p:?}");
        r.checkpoint_result(None);
        assert!(r.problems(now_ms()).is_empty());
    }
}
