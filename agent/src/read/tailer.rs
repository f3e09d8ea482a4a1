//! The tailer: one flow's loop over all of its files, through rotation.
//!
//! It owns every [`FileWatcher`] of a flow and gathers the facts the pure
//! decisions of [`crate::read::decision`] need, then carries them out:
//! - discovery expands the flow's globs (promptly when names change, and on
//!   a polling interval as the fallback for file systems without events);
//!   a file's writes wake the reader once per read pass
//!   ([`crate::read::wake`]);
//! - a file is known by device + inode; where a new one starts (its
//!   checkpoint, a `copytruncate` copy's original offset, 0, or the end at a
//!   flow's real first start with `start_at: end`) is [`decision::start`];
//! - a file whose path no longer leads to it (renamed away, deleted) is read
//!   until [`decision::may_close`] says it may close: Apache keeps writing
//!   to a renamed log until it is signalled;
//! - a truncated file starts over at 0 as a new source, and its old reading
//!   becomes *displaced*, as does a checkpoint whose inode holds other bytes
//!   or whose file is gone: the rotated copy holding its unsent end, plain or
//!   compressed (gzip, xz, zstd, bzip2: [`crate::read::compressed`]), is looked for next to its path and in an
//!   `olddir` ([`decision::displaced`]), while running and at startup.
//!
//! - a file found under several names (links) is one reading, by one name
//!   ([`crate::read::names`]);
//! - while the reader is blocked, a [`Keeper`] holds new files open, so a
//!   file deleted before the reader could look is still read; a loss it
//!   could not avoid (a file gone before anything could hold it, the unread
//!   end of a file cut short) is logged with the file and its bytes, and
//!   counted (`BytesLost`).
//!
//! The tailer runs on its own thread; the sink it feeds may block, which is
//! how a slow Kinesis slows reading down (the file is the buffer).
//!
//! # Rooms
//!
//! This file holds the tailer's state, its loop ([`Tailer::run`]: when to
//! discover, when to read, waking on file-system events) and its set-up.
//! The jobs the loop calls are `impl Tailer` blocks of their own:
//! - `reading`: a pass over the open readings, truncations found there,
//!   closing the readings that are done;
//! - `discovery`: the globs expanded into readings, and where a new file
//!   starts;
//! - `displaced`: the search for the copy of a displaced reading;
//! - `unseen`: unseen-rotation recovery, generations no look saw.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::config::StartAt;
use crate::read::decision;
use crate::read::keeper::{Finder, Keeper};
use crate::read::seen::SeenFirsts;
use crate::read::wake::{self, Wake};
use crate::read::watcher::FileWatcher;
use crate::shared::counters::FlowStats;
use crate::shared::identity::{FileKey, Fingerprint};
use crate::shared::ledger::{Ledger, SourceId};
use crate::shared::positions::Shipped;
use crate::shared::sink::{LineSink, SinkClosed};
use crate::state::checkpoint::FileCheckpoint;

mod discovery;
mod displaced;
mod reading;
mod unseen;

/// How a tailer behaves; built from a flow's config.
#[derive(Debug, Clone)]
pub struct TailerSettings {
    /// Flow name (ledger and checkpoint key).
    pub flow: String,
    /// Globs of files to read.
    pub paths: Vec<String>,
    /// Globs of file names to skip.
    pub exclude: Vec<String>,
    /// Where files without a checkpoint start, for files present at the
    /// flow's first start (a flow with checkpoints reads new files whole).
    pub start_at: StartAt,
    /// Longest line passed whole.
    pub max_line: usize,
    /// How often to expand the globs without a file-system event.
    pub discover_interval: Duration,
    /// How long to sleep when nothing happened and no event came.
    pub poll_interval: Duration,
    /// How long to wait after a file-system event before reading, so that
    /// the lines written meanwhile are read in one pass. Apache writes each
    /// request with its own `write(2)`, one event each: reading on every
    /// one woke the reader, stat'ed the file and read one line thousands of
    /// times a second (BENCHMARKS.md, "Host budget").
    pub event_settle: Duration,
    /// How long a deleted file or a copy must be quiet (once drained)
    /// before closing, and how long waits for a copy's growth last.
    pub rotate_quiet: Duration,
    /// How long a file renamed away (still linked) must be quiet before
    /// closing: Apache's old children may still write to it.
    pub renamed_quiet: Duration,
}

impl TailerSettings {
    /// Defaults for the timing knobs.
    pub fn new(
        flow: &str,
        paths: Vec<String>,
        exclude: Vec<String>,
        start_at: StartAt,
        max_line: usize,
    ) -> Self {
        TailerSettings {
            flow: flow.to_string(),
            paths,
            exclude,
            start_at,
            max_line,
            discover_interval: Duration::from_secs(1),
            poll_interval: Duration::from_millis(250),
            event_settle: DEFAULT_EVENT_SETTLE,
            rotate_quiet: decision::DEFAULT_QUIET,
            renamed_quiet: decision::DEFAULT_RENAMED_QUIET,
        }
    }
}

/// Bytes read from one file before moving to the next (fairness).
const READ_BUDGET: u64 = 4 * 1024 * 1024;

/// [`TailerSettings::event_settle`]'s default: a twentieth of a second adds
/// nothing a reader of 5-minute windows (or of a raw stream batched for
/// `linger`) could notice, and bounds the passes over a busy file at 20 a
/// second however many writes it gets.
pub const DEFAULT_EVENT_SETTLE: Duration = Duration::from_millis(50);

/// What one pass over the open files did.
#[derive(Debug, Clone, Copy, Default)]
struct Pass {
    /// Some file gave bytes, or began again (truncated).
    read_any: bool,
    /// Some file stopped at its budget, not at its end: read again now,
    /// without waiting for an event.
    more_waiting: bool,
}

/// A new file whose start is not decided yet. Lives in the tailer until it
/// becomes a watcher or disappears.
struct PendingFile {
    key: FileKey,
    /// Where it was last seen, and the file itself: it is followed by inode
    /// when a rotation renames it out of the globs before a decision.
    path: PathBuf,
    file: File,
    /// Its path no longer leads to it.
    left_path: bool,
    /// When it was first seen.
    found: Instant,
    /// Size when last seen, and since when it has not changed.
    size: u64,
    still_since: Instant,
    /// Its own path when found through a symbolic link (the link may move
    /// on before it is decided).
    target: Option<PathBuf>,
    /// Its modification time when found: until it is decided, the flow's
    /// rotations are not all looked at from then on (a flow stopped now
    /// must look at it again when it starts).
    modified: Option<SystemTime>,
    /// A ledger entry at 0 holding an empty file's place in the checkpoint,
    /// so a crash before its first line does not forget it
    /// ([`decision::Wait::Empty`]). Superseded by its reading once decided.
    placeholder: Option<SourceId>,
}

/// A reading whose file now holds other bytes — a checkpoint found
/// truncated or reused at startup, or a file truncated while the agent ran
/// (`copytruncate`) — whose unsent end may live in a rotated copy of it,
/// plain or compressed, next to its path or one directory below (logrotate's
/// `olddir`).
struct DisplacedReading {
    fingerprint: Fingerprint,
    /// Everything before it was read (or acknowledged, for a checkpoint).
    offset: u64,
    /// Last path of the file.
    path: PathBuf,
    /// The reading truncated while the agent ran, if so: its copy is linked
    /// to it in the ledger.
    original: Option<SourceId>,
    /// Bytes a poll saw in it past `offset` that were not read before it
    /// was truncated: lost unless its copy is found (0: none, or unknown
    /// for a checkpoint).
    unread: u64,
    /// The bytes just before `offset`, when known: a copy without them
    /// there is a copy of the file cut and written again.
    tail: Option<Fingerprint>,
    /// When it was displaced; searched for [`DISPLACED_SEARCH`].
    since: Instant,
    /// Candidates already found not to be its copy, with their size then.
    examined: HashSet<(FileKey, u64)>,
    /// Plain candidates shorter than `offset`: size and since when stable.
    short: HashMap<FileKey, (u64, Instant)>,
}

/// How long a displaced reading's copy is looked for.
const DISPLACED_SEARCH: Duration = Duration::from_secs(600);

/// Fewer first bytes than this cannot tell a rotated file from another
/// (a line's address and time differ within them); a file still being
/// written with fewer is looked at again.
const DECIDING_BYTES: usize = crate::read::seen::TELLING_BYTES;

/// One flow's file server. Lives for the flow's lifetime on its own thread.
pub struct Tailer {
    settings: TailerSettings,
    ledger: Ledger,
    patterns: Vec<String>,
    exclude: Vec<glob::Pattern>,
    watchers: Vec<FileWatcher>,
    /// Checkpoints of this flow not yet claimed by an open file.
    checkpoints: HashMap<FileKey, FileCheckpoint>,
    /// Readings whose file now holds other bytes, whose copy is looked for.
    displaced: Vec<DisplacedReading>,
    first_scan: bool,
    /// Paths we could not open, so each is reported once until it recovers.
    unreadable: HashSet<PathBuf>,
    /// New files whose starting offset is not decided yet.
    pending: Vec<PendingFile>,
    /// File-system events: names, and one wake per pass for writes (see
    /// [`crate::read::wake`]); none: polling only.
    fs_events: Option<Wake>,
    last_discover: Option<Instant>,
    /// `start_at: end` applies: the flow's first start (no checkpoints).
    start_at_end: bool,
    /// When the checkpoint this start resumes from was written (set at the
    /// agent's start, not by a reload): rotated files modified since, that
    /// nothing names, hold lines written while the agent was down.
    down_since: Option<SystemTime>,
    /// Fingerprints of the checkpoints this start resumed from.
    resumed_fingerprints: Vec<Fingerprint>,
    /// Own paths of files read through a symbolic link (a checkpoint's or
    /// a reading's, at most [`LINK_SHAPES`] distinct shapes): the link's
    /// other files (cronolog's other days) are looked for where they are.
    link_targets: Vec<PathBuf>,
    /// First bytes of files this flow is done with (closed readings,
    /// rotations found already old): their copies are not unseen
    /// generations.
    seen: SeenFirsts,
    /// Rotated files found old (inode, modification time): their first
    /// bytes are remembered in `seen` already.
    old_examined: HashSet<(FileKey, Option<SystemTime>)>,
    /// When the previous discovery looked (wall clock).
    last_look: Option<SystemTime>,
    /// A rotation was noticed: rotated files modified since this time may
    /// hold generations no discovery saw at their path. Kept until every
    /// such file could be decided (a compressor may still be writing one).
    unseen_since: Option<SystemTime>,
    /// A reading was found truncated, or began reading a live file's new
    /// generation, since the last discovery: a rotation may have happened.
    truncated_since_look: bool,
    /// Every rotation modified before this time was looked at by this
    /// flow's reader before this start (from the checkpoint, or from the
    /// reading a reload replaced).
    looked_before: Option<SystemTime>,
    /// Files this flow is done with, as the ledger remembers them (taken
    /// again at each discovery).
    shipped: Vec<Shipped>,
    /// Counters of the flow (lost bytes), when it runs for real.
    stats: Option<Arc<FlowStats>>,
    /// Holds new files open while the reader is blocked (`run` only).
    keeper: Option<Keeper>,
    /// The keeper watches (the reader is away): only then does it take
    /// file-system events ([`wake::keeper_wake`]).
    keeper_watching: Arc<AtomicBool>,
}

impl Tailer {
    /// A tailer for one flow, resuming from `checkpoints` (this flow's only).
    pub fn new(
        settings: TailerSettings,
        ledger: Ledger,
        checkpoints: Vec<FileCheckpoint>,
    ) -> Tailer {
        let exclude = settings
            .exclude
            .iter()
            .filter_map(|p| glob::Pattern::new(p).ok())
            .collect();
        let keeper_watching = Arc::new(AtomicBool::new(false));
        let fs_events = Wake::new()
            .map_err(|e| tracing::warn!(error = %e, "file-system events unavailable; polling only"))
            .ok();
        // `start_at` is for a flow's first start only. Once it has
        // checkpoints, a file without one appeared while the agent was down
        // (a rotation's new file, a new site) and all of it is unsent.
        let start_at_end = settings.start_at == StartAt::End && checkpoints.is_empty();
        let resumed_fingerprints = checkpoints
            .iter()
            .map(|c| c.fingerprint)
            .filter(|f| f.len > 0)
            .collect();
        let mut link_targets = Vec::new();
        for t in checkpoints.iter().filter_map(|c| c.target.as_ref()) {
            remember_target(&mut link_targets, t);
        }
        let memory = ledger.memory(&settings.flow);
        let looked_before = memory
            .looked_ms
            .map(|ms| std::time::UNIX_EPOCH + Duration::from_millis(ms));
        Tailer {
            start_at_end,
            down_since: None,
            resumed_fingerprints,
            link_targets,
            patterns: settings.paths.clone(),
            settings,
            ledger,
            exclude,
            watchers: Vec::new(),
            checkpoints: checkpoints.into_iter().map(|c| (c.key, c)).collect(),
            displaced: Vec::new(),
            first_scan: true,
            unreadable: HashSet::new(),
            pending: Vec::new(),
            fs_events,
            last_discover: None,
            seen: SeenFirsts::default(),
            old_examined: HashSet::new(),
            last_look: None,
            unseen_since: None,
            truncated_since_look: false,
            looked_before,
            shipped: memory.shipped.into_iter().collect(),
            stats: None,
            keeper: None,
            keeper_watching,
        }
    }

    /// Count what this flow loses in `stats`.
    pub fn set_stats(&mut self, stats: Arc<FlowStats>) {
        self.stats = Some(stats);
    }

    /// Where each open file is read from and why, and the files still
    /// undecided: `(path, Some(offset), why)` or `(path, None, why it waits)`.
    /// For `tailrace check --live`, after one [`Tailer::discover`].
    pub fn planned(&self) -> Vec<(PathBuf, Option<u64>, String)> {
        let mut out: Vec<(PathBuf, Option<u64>, String)> = self
            .watchers
            .iter()
            .map(|w| (w.path.clone(), Some(w.offset()), w.why.to_string()))
            .collect();
        out.extend(self.pending.iter().map(|p| {
            (
                p.path.clone(),
                None,
                if p.size == 0 {
                    "empty: decided once it has a line".to_string()
                } else {
                    "undecided: it starts like a file being read (a copy being made?)".to_string()
                },
            )
        }));
        out.sort();
        out
    }

    /// Follow `w` from now on. One that starts past 0 tells the ledger the
    /// bytes before its offset at once: a checkpoint written before it
    /// reads anything can already tell a cut at the next start.
    fn track(&mut self, w: FileWatcher) {
        if w.offset() > 0 {
            if let Some(tail) = w.mark() {
                self.ledger
                    .set_processed_at(w.source, w.offset(), Some(tail));
            }
        }
        self.watchers.push(w);
    }

    /// Lines were lost: `bytes` of `path`, for the reason `how`. Logged
    /// with the file and the bytes, and counted (`BytesLost`).
    fn lost(&self, path: &Path, bytes: u64, how: &str) {
        report_loss(&self.settings.flow, self.stats.as_deref(), path, bytes, how);
    }

    /// The checkpoint this start resumes from was written at `t` (the
    /// agent's start after a stop or a crash).
    pub fn set_down_since(&mut self, t: SystemTime) {
        self.down_since = Some(t);
    }

    /// Number of files open.
    pub fn open_files(&self) -> usize {
        self.watchers.len()
    }

    /// Run until `stop` is set or the sink closes; then flush the sink.
    ///
    /// With file-system events, an idle reader looks at its files when an
    /// event says something changed, and at every discovery interval
    /// regardless (events can be missed, and an `olddir` is not watched);
    /// without events, at every poll interval. It ticks its sink (linger,
    /// watchdog) every poll interval either way.
    pub fn run(&mut self, sink: &mut dyn LineSink, stop: &AtomicBool) -> Result<(), SinkClosed> {
        self.start_keeper();
        let mut poll_due = true;
        let mut last_poll = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            if let Some(k) = &self.keeper {
                k.alive();
            }
            let idle = self.idle_interval();
            let due = self.last_discover.is_none_or(|t| t.elapsed() >= idle);
            if due {
                self.discover();
                poll_due = true;
            }
            let progressed = if poll_due || self.fs_events.is_none() || last_poll.elapsed() >= idle
            {
                last_poll = Instant::now();
                self.arm_wakes();
                self.poll_all(sink)?.more_waiting
            } else {
                false
            };
            if let Some(k) = &self.keeper {
                k.alive();
            }
            sink.tick()?;
            self.close_quiet(sink)?;
            poll_due = progressed || self.wait_for_event(progressed);
        }
        // Stopped while an event settled ([`TailerSettings::event_settle`]):
        // read what it announced, one pass (each file's budget at most),
        // so lines written just before the stop go with the flush, as they
        // did when every event was read at once.
        if poll_due {
            self.poll_all(sink)?;
        }
        self.keeper = None;
        sink.flush()
    }

    /// Start the [`Keeper`] (not for a replay, nor for `check --live`).
    fn start_keeper(&mut self) {
        let finder = Finder {
            patterns: self.patterns.clone(),
            exclude: self.exclude.clone(),
        };
        let wake = wake::keeper_wake(&self.patterns, self.keeper_watching.clone());
        match Keeper::start(
            &self.settings.flow,
            finder,
            wake,
            self.keeper_watching.clone(),
        ) {
            Ok(k) => self.keeper = Some(k),
            Err(e) => {
                tracing::warn!(flow = %self.settings.flow, error = %e, "cannot start the thread that keeps new files open while the reader is blocked; files deleted during an outage may be lost")
            }
        }
    }

    /// Read every file once to its end (replay), then flush.
    pub fn drain_once(&mut self, sink: &mut dyn LineSink) -> Result<(), SinkClosed> {
        while self.poll_all(sink)?.read_any {}
        sink.flush()
    }

    /// Open `path` as a source read from the start, regardless of globs
    /// (replay). Errors name the file.
    pub fn add_file_from_start(&mut self, path: &Path) -> io::Result<()> {
        let file = File::open(path)?;
        let key = FileKey::of(&file)?;
        let fp = Fingerprint::of(&file)?;
        let source = self
            .ledger
            .open(&self.settings.flow, key, fp, path.to_path_buf(), 0);
        let mut w = FileWatcher::new(source, key, path.to_path_buf(), file, fp, 0);
        w.orphaned = true;
        w.why = "replay";
        self.track(w);
        Ok(())
    }

    /// Unless the last poll left bytes unread, wait up to a poll interval
    /// for a file-system event, then [`TailerSettings::event_settle`] for
    /// the writes that follow it; returns whether one came (the files need
    /// a look). Names changing also makes a discovery due.
    fn wait_for_event(&mut self, progressed: bool) -> bool {
        if progressed {
            return true;
        }
        let timeout = self.settings.poll_interval;
        match &mut self.fs_events {
            Some(events) => {
                let wake::Woken {
                    happened,
                    rediscover,
                } = events.wait(timeout);
                if rediscover {
                    self.last_discover = None;
                }
                if happened && !self.settings.event_settle.is_zero() {
                    std::thread::sleep(self.settings.event_settle);
                }
                happened
            }
            None => {
                std::thread::sleep(timeout);
                true
            }
        }
    }

    fn watch_dirs(&mut self) {
        let Some(w) = self.fs_events.as_mut() else {
            return;
        };
        for pattern in &self.patterns {
            let dir = crate::read::globs::base_dir(pattern);
            if w.watches_dir(&dir) || !dir.is_dir() {
                continue;
            }
            match w.watch_dir(&dir) {
                Ok(()) => {}
                Err(e) => {
                    tracing::debug!(dir = %dir.display(), error = %e, "cannot watch directory; polling it")
                }
            }
        }
    }

    /// Before a read pass: arm the one-shot write watch of every plain file
    /// read whose watch fired (or is new), so a write during the pass wakes
    /// the next one ([`Wake::arm`]).
    fn arm_wakes(&mut self) {
        if let Some(events) = self.fs_events.as_mut() {
            events.arm(
                self.watchers
                    .iter()
                    .filter(|w| !w.is_compressed())
                    .map(|w| (w.key, w.file())),
            );
        }
    }

    /// How often an idle reader discovers and looks at its files without
    /// an event: the discovery interval. (Five of them when every glob's
    /// directory raises events was tried: `aggregate_moto`'s three agents
    /// under load then missed lines before their stop, not yet explained;
    /// see docs/RELIABILITY.md.)
    fn idle_interval(&self) -> Duration {
        self.settings.discover_interval
    }
}

/// How many shapes of link targets a flow remembers.
const LINK_SHAPES: usize = 16;

/// Remember `target` (a file's own path behind a link) unless one of the
/// same shape (name and depth) is remembered.
fn remember_target(targets: &mut Vec<PathBuf>, target: &Path) {
    let shape = |p: &Path| (p.file_name().map(ToOwned::to_owned), p.components().count());
    if targets.len() < LINK_SHAPES && !targets.iter().any(|t| shape(t) == shape(target)) {
        targets.push(target.to_path_buf());
    }
}

/// Lines were lost: `bytes` of `path`, for the reason `how`. Logged with the
/// file and the bytes, and counted in `stats` (`BytesLost`).
fn report_loss(flow: &str, stats: Option<&FlowStats>, path: &Path, bytes: u64, how: &str) {
    tracing::warn!(flow, path = %path.display(), bytes, "lines lost: {how}");
    if let Some(stats) = stats {
        stats.lost(bytes);
    }
}

/// Files next to `path` and one directory below its directory (logrotate's
/// `olddir`), sorted.
fn sibling_files(path: &Path) -> Vec<PathBuf> {
    let Some(dir) = path.parent() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.filter_map(Result::ok) {
        let p = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => {
                if let Ok(inner) = std::fs::read_dir(&p) {
                    out.extend(inner.filter_map(Result::ok).map(|e| e.path()));
                }
            }
            Ok(_) => out.push(p),
            Err(_) => {}
        }
    }
    out.sort();
    out
}
