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

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::config::StartAt;
use crate::observe::counters::FlowStats;
use crate::read::compressed::{self, Codec, CompressedInput};
use crate::read::decision::{
    self, CheckpointFit, Close, LeftoverAction, Offset, Resemblance, Start, Truncated, Waiting,
};
use crate::read::identity::{read_prefix, FileKey, Fingerprint, FINGERPRINT_BYTES};
use crate::read::keeper::{Finder, Keeper};
use crate::read::names;
use crate::read::seen::{FirstBytes, SeenFirsts};
use crate::read::wake::{self, Wake};
use crate::read::watcher::{FileWatcher, LineSink, Polled, SinkClosed};
use crate::ship::ledger::{Ledger, Shipped, SourceId};
use crate::state::checkpoint::FileCheckpoint;

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

    fn poll_all(&mut self, sink: &mut dyn LineSink) -> Result<Pass, SinkClosed> {
        let mut pass = Pass::default();
        for i in 0..self.watchers.len() {
            let w = &mut self.watchers[i];
            let from_start = w.offset() == 0 && w.pending() == 0 && !w.orphaned;
            match w.poll(sink, self.settings.max_line, READ_BUDGET) {
                Ok(Ok(Polled::Read(n))) => {
                    pass.more_waiting |= n >= READ_BUDGET;
                    if n > 0 {
                        pass.read_any = true;
                        // The first bytes of a live file's generation: an
                        // earlier one may have been written, copied and
                        // truncated before this reader saw any of it (its
                        // size never passed 0 when anyone looked).
                        self.truncated_since_look |= from_start;
                        self.ledger.set_processed_at(w.source, w.offset(), w.mark());
                        self.ledger.update(w.source, w.fingerprint, None);
                    }
                }
                Ok(Ok(Polled::Truncated { size })) => {
                    let read = w.offset();
                    let unread = w.seen_size.saturating_sub(read + w.pending() as u64);
                    // Few first bytes cannot tell the file from its next
                    // generation (a line's address and time).
                    let same_start = w.fingerprint.len as usize >= DECIDING_BYTES
                        && w.fingerprint.matches(w.file()).unwrap_or(false);
                    let facts = decision::Truncation {
                        size,
                        read,
                        same_start,
                    };
                    self.ledger.set_processed(w.source, read);
                    self.ledger.close(w.source);
                    self.truncated_since_look = true;
                    pass.read_any = true;
                    pass.more_waiting = true;
                    let cut = decision::after_truncation(&facts) == Truncated::Cut;
                    if cut {
                        tracing::warn!(flow = %self.settings.flow, path = %w.path.display(), read, size, "file truncated to a size other than 0 (truncate -s?); reading it again from the start: the lines it kept are sent again");
                    } else {
                        tracing::warn!(flow = %self.settings.flow, path = %w.path.display(), read, size, "file truncated (copytruncate?); reading it again from the start");
                    }
                    self.seen.remember(w.fingerprint);
                    if cut && unread > 0 {
                        report_loss(
                            &self.settings.flow,
                            self.stats.as_deref(),
                            &w.path,
                            unread,
                            "the file was cut short (truncated) before they were read",
                        );
                    } else if w.fingerprint.len > 0 {
                        let mut d = DisplacedReading::new(
                            w.fingerprint,
                            read,
                            w.path.clone(),
                            Some(w.source),
                        );
                        d.unread = unread;
                        d.tail = w.mark();
                        self.displaced.push(d);
                        // Look for its copy at once.
                        self.last_discover = None;
                    }
                    let fp = Fingerprint::of(w.file()).unwrap_or(Fingerprint::EMPTY);
                    let source =
                        self.ledger
                            .open(&self.settings.flow, w.key, fp, w.path.clone(), 0);
                    if w.target.is_some() {
                        self.ledger.set_target(source, w.target.clone());
                    }
                    w.restart(source, fp);
                }
                Ok(Err(closed)) => return Err(closed),
                Err(e) => {
                    tracing::warn!(flow = %self.settings.flow, path = %w.path.display(), error = %e, "read failed; will retry");
                }
            }
        }
        Ok(pass)
    }

    /// Close files that left their path (rotated away or deleted) or were
    /// read as copies, once drained and quiet ([`decision::may_close`]). A
    /// partial last line is shipped first: nobody will complete it.
    fn close_quiet(&mut self, sink: &mut dyn LineSink) -> Result<(), SinkClosed> {
        let times = decision::CloseTimes {
            quiet: self.settings.rotate_quiet,
            renamed_quiet: self.settings.renamed_quiet,
        };
        let mut i = 0;
        while i < self.watchers.len() {
            let w = &mut self.watchers[i];
            if !(w.orphaned || w.copy) {
                i += 1;
                continue;
            }
            let deleted = w.is_deleted();
            let reading = decision::Reading {
                orphaned: w.orphaned,
                deleted,
                copy: w.copy,
                drained: w
                    .size()
                    .map(|s| s <= w.offset() + w.pending() as u64)
                    .unwrap_or(true),
                quiet_for: w.last_growth.elapsed(),
            };
            if decision::may_close(&reading, &times) == Close::Keep {
                i += 1;
                continue;
            }
            if w.pending() > 0 {
                tracing::warn!(flow = %self.settings.flow, path = %w.path.display(), bytes = w.pending(), "closing file whose last line has no newline; shipping it as a line");
                w.flush_partial(sink)?;
                self.ledger.set_processed(w.source, w.offset());
            }
            tracing::info!(flow = %self.settings.flow, path = %w.path.display(), offset = w.offset(), deleted, "closed rotated file");
            self.ledger.close(w.source);
            self.seen.remember(w.fingerprint);
            self.watchers.swap_remove(i);
        }
        Ok(())
    }

    fn is_excluded(&self, path: &Path) -> bool {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        self.exclude.iter().any(|p| p.matches(&name))
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

    /// Expand the globs; open new files; notice files that left their path;
    /// look for the copies of displaced readings.
    pub fn discover(&mut self) {
        self.last_discover = Some(Instant::now());
        let previous_look = self.last_look.replace(SystemTime::now());
        let mut rotated = std::mem::take(&mut self.truncated_since_look);
        self.watch_dirs();
        let mut seen: HashSet<FileKey> = HashSet::new();
        let mut found: Vec<PathBuf> = Vec::new();
        for pattern in &self.patterns {
            crate::read::globs::expand(pattern, &mut found);
        }
        found.sort();
        found.dedup();
        found.retain(|p| !self.is_excluded(p));
        self.shipped = self
            .ledger
            .memory(&self.settings.flow)
            .shipped
            .into_iter()
            .collect();
        let mut fresh: Vec<(PathBuf, FileKey)> = Vec::new();
        // Watchers by inode: one lookup per path, not a scan (linear in
        // the number of files, not quadratic).
        let by_key: HashMap<FileKey, usize> = self
            .watchers
            .iter()
            .enumerate()
            .map(|(i, w)| (w.key, i))
            .collect();
        // One inode, one reading, by one name, whatever its links.
        for names::Found {
            key,
            names: paths,
            modified,
        } in names::group(&found)
        {
            seen.insert(key);
            if let Some(w) = by_key.get(&key).map(|&i| &mut self.watchers[i]) {
                if w.offset() == 0 && w.pending() == 0 {
                    // Nothing of this generation read yet: if the file
                    // changed, it may have been written, copied and
                    // truncated (`copytruncate`) between two looks, and
                    // the copy holds lines never seen here.
                    let mtime = modified;
                    rotated |= w.mtime_at_look.is_some() && mtime != w.mtime_at_look;
                    w.mtime_at_look = mtime;
                }
                let path = names::choose(&paths, Some(&w.path));
                if w.path != path {
                    tracing::info!(flow = %self.settings.flow, from = %w.path.display(), to = %path.display(), "file renamed");
                    w.path = path.to_path_buf();
                    self.ledger
                        .update(w.source, w.fingerprint, Some(path.to_path_buf()));
                }
                w.orphaned = false;
                continue;
            }
            let path = names::choose(&paths, None).to_path_buf();
            if paths.len() > 1 {
                tracing::info!(flow = %self.settings.flow, path = %path.display(), names = ?paths, "one file under several names (links); reading it once");
            }
            fresh.push((path, key));
        }
        // Files with a checkpoint first: a checkpoint found displaced (its
        // inode truncated while the agent was down) must be known before
        // its copy is classified.
        fresh.sort_by_key(|(_, key)| !self.checkpoints.contains_key(key));
        rotated |= !fresh.is_empty();
        for (path, _) in fresh {
            let file = match File::open(&path) {
                Ok(f) => {
                    self.unreadable.remove(&path);
                    f
                }
                Err(e) => {
                    if self.unreadable.insert(path.clone()) {
                        tracing::error!(flow = %self.settings.flow, path = %path.display(), error = %e, "cannot open log file; other files go on");
                    }
                    continue;
                }
            };
            let Ok(key) = FileKey::of(&file) else {
                continue;
            };
            seen.insert(key);
            if let Err(e) = self.open_new(path.clone(), file, key, false) {
                tracing::warn!(flow = %self.settings.flow, path = %path.display(), error = %e, "cannot start reading file");
            }
        }
        rotated |= self.adopt_kept(&seen);
        rotated |= self.follow_pending(&seen);
        for w in &mut self.watchers {
            if !seen.contains(&w.key) && !w.orphaned {
                tracing::info!(flow = %self.settings.flow, path = %w.path.display(), "file left its path (rotated or deleted); draining it");
                w.orphaned = true;
                rotated = true;
            }
        }
        if self.first_scan {
            self.first_scan = false;
            self.recover_rotated_while_down();
            self.search_displaced();
            // At the agent's start, rotations since the reader before it
            // last looked (saved in the checkpoint; else since the
            // checkpoint was written); at a flow's first start, none (what
            // is there is old).
            let since = match (self.looked_before, self.down_since) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => a.or(b).unwrap_or_else(SystemTime::now),
            };
            if !self.read_unseen_rotations(since) {
                self.unseen_since = Some(since);
            }
        } else if rotated {
            if let Some(previous) = previous_look {
                // Coarse file-system clocks can stamp a write just after
                // the previous look a little before it: look a second back.
                let since = previous
                    .checked_sub(Duration::from_secs(1))
                    .unwrap_or(previous);
                self.unseen_since = Some(self.unseen_since.map_or(since, |s| s.min(since)));
            }
        }
        self.search_displaced();
        if let Some(since) = self.unseen_since {
            if self.read_unseen_rotations(since) {
                self.unseen_since = None;
            }
        }
        self.note_looked();
    }

    /// Save (with the next checkpoint) the time before which every rotation
    /// was looked at: this discovery's start, less the coarse-clock margin,
    /// or the start of a search not finished yet. Published to the keeper
    /// too: the identities the reader follows now.
    fn note_looked(&mut self) {
        if let Some(look) = self.last_look {
            // Undecided files were looked at, not decided: before them.
            let look = self
                .pending
                .iter()
                .filter_map(|p| p.modified)
                .fold(look, SystemTime::min);
            let margin = look.checked_sub(Duration::from_secs(1)).unwrap_or(look);
            let at = self.unseen_since.map_or(margin, |u| u.min(margin));
            let ms = at
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            self.ledger.looked(&self.settings.flow, ms);
        }
        if let Some(k) = self.keeper.as_mut() {
            let keys = self
                .watchers
                .iter()
                .map(|w| w.key)
                .chain(self.pending.iter().map(|p| p.key));
            k.set_known(keys);
        }
    }

    /// Files the keeper held open while the reader was blocked: one still
    /// at a matched path is read from it as usual; one that left it (renamed
    /// or deleted, as `rotate 0` does) is followed through the descriptor,
    /// like a new file that left its path. Files it could not hold, gone
    /// now, are reported lost. Returns whether any left its path.
    fn adopt_kept(&mut self, seen: &HashSet<FileKey>) -> bool {
        let Some(keeper) = self.keeper.as_ref() else {
            return false;
        };
        let (kept, unheld) = (keeper.take_kept(), keeper.take_unheld());
        let mut left = false;
        for k in kept {
            let followed = seen.contains(&k.key)
                || self.watchers.iter().any(|w| w.key == k.key)
                || self.pending.iter().any(|p| p.key == k.key);
            if followed {
                continue;
            }
            left = true;
            let path = find_by_key(&k.path, k.key).unwrap_or(k.path);
            tracing::info!(flow = %self.settings.flow, path = %path.display(), "reading a file created and rotated away while the reader was blocked (kept open meanwhile)");
            if let Err(e) = self.open_new(path.clone(), k.file, k.key, true) {
                tracing::warn!(flow = %self.settings.flow, path = %path.display(), error = %e, "cannot start reading file");
            }
        }
        for u in unheld {
            // Still on disk (the inode number alone may be another file's
            // now): the rules for rotated files find it, or it is read.
            let on_disk = find_by_key(&u.path, u.key)
                .and_then(|p| std::fs::metadata(p).ok())
                .is_some_and(|m| u.is(&m));
            if on_disk {
                left = true;
                continue;
            }
            if u.size > 0 {
                self.lost(
                    &u.path,
                    u.size,
                    "the file was deleted before it could be read (more files were created and deleted while the reader was blocked than it keeps open)",
                );
            }
        }
        left
    }

    /// What `file`'s checkpoint says of it.
    fn checkpoint_fit(
        &mut self,
        key: FileKey,
        file: &File,
        size: u64,
    ) -> io::Result<CheckpointFit> {
        let Some(ck) = self.checkpoints.remove(&key) else {
            return Ok(CheckpointFit::None);
        };
        if ck.offset == 0 && ck.fingerprint.len == 0 {
            // The place held for an empty file: it says nothing of what the
            // file became (the live file, or a copy being filled).
            return Ok(CheckpointFit::None);
        }
        let fit = if !ck.fingerprint.matches(file)? {
            CheckpointFit::FingerprintDiffers
        } else if ck.offset > size {
            CheckpointFit::Shorter
        } else if ck
            .tail
            .is_some_and(|t| !t.matches_before(file, ck.offset).unwrap_or(true))
        {
            return Ok(CheckpointFit::Cut);
        } else {
            return Ok(CheckpointFit::Matches { offset: ck.offset });
        };
        if ck.fingerprint.len > 0 {
            let mut d = DisplacedReading::new(ck.fingerprint, ck.offset, ck.path, None);
            d.tail = ck.tail;
            self.displaced.push(d);
        }
        Ok(fit)
    }

    /// Undecided files the globs no longer found: dropped once deleted;
    /// renamed away (a rotation before their first line, say), they are
    /// followed by inode and decided with `left_path`.
    /// Returns whether an undecided file left its path (a rotation).
    fn follow_pending(&mut self, seen: &HashSet<FileKey>) -> bool {
        let mut left = false;
        let mut i = 0;
        while i < self.pending.len() {
            let p = &mut self.pending[i];
            if seen.contains(&p.key) {
                i += 1;
                continue;
            }
            // Deleted with bytes in it (renamed, then compressed by a
            // `delaycompress` rotation while the reader was blocked): those
            // bytes may exist only in the compressed copy now, and the
            // descriptor still reads them. Deleted empty: nothing to read.
            let gone = p
                .file
                .metadata()
                .map(|m| m.nlink() == 0 && m.len() == 0)
                .unwrap_or(true);
            if gone {
                let p = self.pending.swap_remove(i);
                if let Some(placeholder) = p.placeholder {
                    self.ledger.close(placeholder);
                }
                left = true;
                continue;
            }
            if !p.left_path {
                p.left_path = true;
                left = true;
                if let Some(path) = find_by_key(&p.path, p.key) {
                    p.path = path;
                }
                tracing::info!(flow = %self.settings.flow, path = %p.path.display(), "undecided file left its path (rotated); following it");
            }
            let (path, key) = (p.path.clone(), p.key);
            let file = match p.file.try_clone() {
                Ok(f) => f,
                Err(e) => {
                    tracing::warn!(flow = %self.settings.flow, path = %path.display(), error = %e, "cannot follow rotated file");
                    i += 1;
                    continue;
                }
            };
            let before = self.pending.len();
            if let Err(e) = self.open_new(path.clone(), file, key, true) {
                tracing::warn!(flow = %self.settings.flow, path = %path.display(), error = %e, "cannot start reading file");
            }
            if self.pending.len() == before {
                i += 1;
            }
        }
        left
    }

    fn open_new(
        &mut self,
        path: PathBuf,
        file: File,
        key: FileKey,
        left_path: bool,
    ) -> io::Result<()> {
        let size = file.metadata()?.len();
        let checkpoint = self.checkpoint_fit(key, &file, size)?;
        let (resemblance, displaced_at) = if checkpoint == CheckpointFit::None && size > 0 {
            self.resemblance(&file, size)?
        } else {
            (Resemblance::Nothing, None)
        };
        let pending = self.pending.iter_mut().find(|p| p.key == key);
        let waiting = pending.map(|p| {
            if p.size != size {
                p.size = size;
                p.still_since = Instant::now();
            }
            Waiting {
                since_found: p.found.elapsed(),
                since_still: p.still_since.elapsed(),
            }
        });
        let facts = decision::FoundFile {
            size,
            checkpoint,
            start_at_end: self.first_scan && self.start_at_end,
            resemblance,
            waiting,
            left_path,
            quiet: self.settings.rotate_quiet,
        };
        let decided = decision::start(&facts);
        let Start::At {
            offset,
            why,
            copy_of,
            claims_displaced,
            ..
        } = decided
        else {
            if waiting.is_none() {
                tracing::debug!(flow = %self.settings.flow, path = %path.display(), size, ?decided, "new file: deciding where to start");
                let placeholder = (decided == Start::Wait(decision::Wait::Empty)).then(|| {
                    self.ledger.open(
                        &self.settings.flow,
                        key,
                        Fingerprint::EMPTY,
                        path.clone(),
                        0,
                    )
                });
                let modified = file.metadata().and_then(|m| m.modified()).ok();
                let target = names::own_path(&path, key);
                if let Some(t) = &target {
                    remember_target(&mut self.link_targets, t);
                    if let Some(placeholder) = placeholder {
                        self.ledger.set_target(placeholder, target.clone());
                    }
                }
                self.pending.push(PendingFile {
                    target,
                    key,
                    path,
                    file,
                    left_path,
                    found: Instant::now(),
                    size,
                    still_since: Instant::now(),
                    modified,
                    placeholder,
                });
            }
            return Ok(());
        };
        let (placeholder, pending_target) = self
            .pending
            .iter()
            .position(|p| p.key == key)
            .map(|i| {
                let p = self.pending.swap_remove(i);
                (p.placeholder, p.target)
            })
            .unwrap_or_default();
        let offset = match offset {
            Offset::Byte(b) => b,
            Offset::LastLineBoundary => last_line_boundary(&file, size)?,
        };
        if claims_displaced {
            if let Some(i) = displaced_at {
                self.displaced.swap_remove(i);
            }
        }
        if let Some(original) = copy_of {
            self.displaced.retain(|d| d.original != Some(original));
        }
        let fp = Fingerprint::of(&file)?;
        tracing::info!(flow = %self.settings.flow, path = %path.display(), offset, size, reason = why, "reading file");
        let source = self
            .ledger
            .open(&self.settings.flow, key, fp, path.clone(), offset);
        if let Some(original) = copy_of {
            // Lines of the original not yet acknowledged are these bytes now:
            // the copy's checkpoint must not pass them.
            self.ledger.same_bytes_as(source, original);
        }
        if let Some(placeholder) = placeholder {
            // The reading holds its place from now on.
            self.ledger.close(placeholder);
        }
        let target = pending_target.or_else(|| names::own_path(&path, key));
        if let Some(t) = &target {
            self.ledger.set_target(source, target.clone());
            remember_target(&mut self.link_targets, t);
        }
        let mut w = FileWatcher::new(source, key, path, file, fp, offset);
        w.orphaned = left_path;
        w.why = why;
        w.target = target;
        self.track(w);
        Ok(())
    }

    /// What a new file without a checkpoint starts like (facts for
    /// [`decision::start`]): a reading that was truncated (its copy), a
    /// displaced checkpoint (its copy, made while the agent was down), a
    /// reading not truncated (a copy before the truncation, or identical
    /// first lines). Also returns the index of the displaced reading matched.
    fn resemblance(&self, file: &File, size: u64) -> io::Result<(Resemblance, Option<usize>)> {
        let mut short = false;
        for w in self.watchers.iter().filter(|w| !w.is_compressed()) {
            let truncated_now = w.size()? < w.offset();
            let current = (w.fingerprint, w.offset(), truncated_now, w.source, w.mark());
            let previous = w
                .previous
                .map(|(fp, offset, source, tail)| (fp, offset, true, source, tail));
            for (fp, offset, truncated, source, tail) in std::iter::once(current).chain(previous) {
                if fp.len == 0 {
                    continue;
                }
                let same = if u64::from(fp.len) <= size {
                    fp.matches(file)?
                } else if !truncated {
                    same_prefix(file, w.file(), size as usize)?
                } else {
                    short = true;
                    continue;
                };
                if same {
                    return Ok((
                        if truncated {
                            Resemblance::TruncatedReading {
                                offset,
                                source,
                                diverged: diverged_before(file, size, offset, tail)?,
                            }
                        } else {
                            Resemblance::LiveReading
                        },
                        None,
                    ));
                }
            }
        }
        for (i, d) in self.displaced.iter().enumerate() {
            if u64::from(d.fingerprint.len) <= size && d.fingerprint.matches(file)? {
                let diverged = diverged_before(file, size, d.offset, d.tail)?;
                return Ok((
                    match d.original {
                        Some(source) => Resemblance::TruncatedReading {
                            offset: d.offset,
                            source,
                            diverged,
                        },
                        None => Resemblance::DisplacedCheckpoint {
                            offset: d.offset,
                            diverged,
                        },
                    },
                    Some(i),
                ));
            }
        }
        if !self.shipped.is_empty() {
            let firsts = FirstBytes::of(file, None)?;
            if let Some(offset) = self.shipped_through(&firsts, Some(size)) {
                return Ok((Resemblance::Shipped { offset }, None));
            }
        }
        Ok((
            if short {
                Resemblance::TooShort
            } else {
                Resemblance::Nothing
            },
            None,
        ))
    }

    /// Files checkpointed before a restart that no glob found: look for them
    /// by inode next to their last path (rotated to a name the glob does not
    /// match, or into an `olddir`) and drain them from the checkpoint;
    /// failing that, their copy is looked for as a displaced reading.
    fn recover_rotated_while_down(&mut self) {
        let leftovers: Vec<FileCheckpoint> = self.checkpoints.drain().map(|(_, c)| c).collect();
        for ck in leftovers {
            if !self.recover_renamed(&ck) && ck.fingerprint.len > 0 {
                let mut d = DisplacedReading::new(ck.fingerprint, ck.offset, ck.path, None);
                d.tail = ck.tail;
                self.displaced.push(d);
            }
        }
    }

    /// Rotated files next to a watched path (named like it, in its
    /// directory or an `olddir`) that no glob matches, nothing names, and
    /// that were modified since `since` hold generations no discovery saw
    /// at their path (created and rotated away while the agent was down,
    /// or while the reader was blocked or between two looks): read them
    /// whole ([`decision::leftover`]). Older ones are remembered by
    /// their first bytes, so their later compressed copies are known.
    /// Returns false if a file could not be decided yet (a compressed one
    /// still being written): the search is then repeated.
    fn read_unseen_rotations(&mut self, since: SystemTime) -> bool {
        let mut decided = true;
        for path in self.rotated_siblings() {
            match self.read_if_unseen(&path, since) {
                Ok(d) => decided &= d,
                Err(e) => {
                    tracing::warn!(flow = %self.settings.flow, path = %path.display(), error = %e, "cannot examine a rotated file");
                }
            }
        }
        decided
    }

    /// Files named like a watched path (its glob's literal file-name
    /// prefix), next to it or one directory below, that discovery does not
    /// read (no glob matches them, or `exclude` skips them).
    fn rotated_siblings(&self) -> Vec<PathBuf> {
        let globs: Vec<glob::Pattern> = self
            .patterns
            .iter()
            .filter_map(|p| glob::Pattern::new(p).ok())
            .collect();
        let mut candidates: Vec<PathBuf> = Vec::new();
        for pattern in &self.patterns {
            let Some((dir, prefix)) = crate::read::globs::rotation_names(pattern) else {
                continue;
            };
            for path in sibling_files(&dir.join(&prefix)) {
                let named_like = path
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(&prefix));
                // What discovery reads is not a leftover; a compressed
                // rotation a wide glob matches but `exclude` skips is.
                let discovered =
                    globs.iter().any(|g| g.matches_path(&path)) && !self.is_excluded(&path);
                if named_like && !discovered {
                    candidates.push(path);
                }
            }
            // A link into dated directories: its other days, deeper than
            // one directory below, where nothing else looks.
            let Ok(base) = std::fs::canonicalize(&dir) else {
                continue;
            };
            for target in &self.link_targets {
                let (Ok(rel), Some(name)) = (target.strip_prefix(&base), target.file_name()) else {
                    continue;
                };
                let depth = rel.components().count();
                if depth > 2 {
                    candidates.extend(names::shaped_like(&base, depth, name, 4096));
                }
            }
        }
        candidates.sort();
        candidates.dedup();
        candidates
    }

    /// Whether `firsts` and the first bytes of a plain file being read,
    /// as it is now, begin alike: its `copytruncate` copy, perhaps still
    /// being made, before this reading's fingerprint covers those bytes.
    /// Fewer than [`DECIDING_BYTES`] in common say nothing (model seed 194:
    /// a live file cut to 2 bytes "started like" every rotation).
    fn starts_like_a_file_being_read(&self, firsts: &FirstBytes) -> bool {
        self.watchers
            .iter()
            .filter(|w| !w.is_compressed())
            .any(|w| {
                FirstBytes::of(w.file(), None).is_ok_and(|b| {
                    b.len().min(firsts.len()) >= DECIDING_BYTES && b.same_start(firsts)
                })
            })
    }

    /// [`Tailer::read_unseen_rotations`] for one file; false if it cannot
    /// be decided yet.
    fn read_if_unseen(&mut self, path: &Path, since: SystemTime) -> io::Result<bool> {
        let meta = std::fs::metadata(path)?;
        if !meta.is_file() {
            return Ok(true);
        }
        let key = FileKey {
            dev: meta.dev(),
            ino: meta.ino(),
        };
        if self.watchers.iter().any(|w| w.key == key) || self.pending.iter().any(|p| p.key == key) {
            return Ok(true);
        }
        let mtime = meta.modified().ok();
        let modified_since = mtime.is_some_and(|m| m > since);
        if !modified_since && !self.old_examined.insert((key, mtime)) {
            // Old, and its first bytes already remembered.
            return Ok(true);
        }
        if self.old_examined.len() > 4096 {
            self.old_examined.clear();
        }
        let file = File::open(path)?;
        let codec = Codec::of_file(path, &file);
        let firsts = match FirstBytes::of(&file, codec) {
            Ok(f) => f,
            // A compressed file whose first block is not written yet.
            Err(_) if codec.is_some() && modified_since => return Ok(false),
            Err(e) => return Err(e),
        };
        if !modified_since {
            // Old: shipped before, or there before the flow's first start.
            self.seen.remember(firsts.fingerprint());
            return Ok(true);
        }
        if codec.is_none()
            && firsts.len() < DECIDING_BYTES
            && mtime.is_some_and(|m| m.elapsed().unwrap_or_default() < self.settings.rotate_quiet)
        {
            // Too few bytes to tell it from another file yet, and still
            // being written (a copy in progress): look again.
            return Ok(false);
        }
        let followed = self
            .resumed_fingerprints
            .iter()
            .any(|&f| firsts.starts_with(f))
            || self
                .watchers
                .iter()
                .any(|w| firsts.starts_with(w.fingerprint))
            || self
                .displaced
                .iter()
                .any(|d| firsts.starts_with(d.fingerprint))
            || self.starts_like_a_file_being_read(&firsts);
        let shipped_through = self.shipped_through(&firsts, None);
        // Read only a complete stream: a compressor may still be writing
        // it (its lines are still in the plain file, or in its descriptor,
        // until it is done).
        let len = match codec {
            Some(codec) => match compressed::decompressed_len(&file, codec) {
                Ok(len) => len,
                Err(_) if followed => return Ok(true),
                Err(_) => return Ok(false),
            },
            None => meta.len(),
        };
        let facts = decision::Leftover {
            followed,
            shipped_through,
            seen: self.seen.knows(&firsts),
            len,
            modified_since,
        };
        let (from, why) = match decision::leftover(&facts) {
            LeftoverAction::Leave => return Ok(true),
            LeftoverAction::ReadWhole => (0, "a rotated file no discovery saw at its path (created and rotated while the agent was down or not looking)"),
            LeftoverAction::ReadFrom(offset) => (offset, "a rotated file this flow shipped up to this offset, longer now"),
        };
        let flow = self.settings.flow.clone();
        let mut w = match codec {
            Some(codec) => {
                let fp = firsts.fingerprint();
                let input = CompressedInput::open_at(&file, codec, from)?;
                let source = self.ledger.open(&flow, key, fp, path.to_path_buf(), from);
                FileWatcher::compressed(source, key, path.to_path_buf(), file, fp, input)
            }
            None => {
                let fp = Fingerprint::of(&file)?;
                let source = self.ledger.open(&flow, key, fp, path.to_path_buf(), from);
                let mut w = FileWatcher::new(source, key, path.to_path_buf(), file, fp, from);
                w.orphaned = true;
                w
            }
        };
        w.why = why;
        tracing::info!(flow = %flow, path = %path.display(), offset = from, "reading {why}");
        self.track(w);
        Ok(true)
    }

    /// The offset through which a file this flow is done with, whose first
    /// bytes `firsts` begin with, was shipped. Few first bytes say nothing
    /// (a line's address and time), unless they are the whole file (`size`).
    fn shipped_through(&self, firsts: &FirstBytes, size: Option<u64>) -> Option<u64> {
        self.shipped
            .iter()
            .rev()
            .find(|s| {
                let n = s.fingerprint.len as usize;
                (n >= DECIDING_BYTES || size.is_none_or(|s| s == n as u64))
                    && firsts.starts_with(s.fingerprint)
            })
            .map(|s| s.offset)
    }

    /// Find `ck`'s file by inode: at its own path when it was reached
    /// through a symbolic link (cronolog's link, moved to the next day's
    /// file), else next to its last path; true if found.
    fn recover_renamed(&mut self, ck: &FileCheckpoint) -> bool {
        let mut candidates: Vec<PathBuf> = ck.target.iter().cloned().collect();
        candidates.extend(sibling_files(&ck.path));
        if let Some(t) = &ck.target {
            candidates.extend(sibling_files(t));
        }
        for path in candidates {
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            if meta.dev() != ck.key.dev || meta.ino() != ck.key.ino {
                continue;
            }
            let Ok(file) = File::open(&path) else {
                continue;
            };
            if !ck.fingerprint.matches(&file).unwrap_or(false) || meta.len() < ck.offset {
                continue;
            }
            // A compressor's output that was given the inode of a deleted
            // file (inode numbers are reused): a renamed log is never
            // compressed in place, and an empty checkpoint's fingerprint
            // matches anything.
            if Codec::of_file(&path, &file).is_some() {
                continue;
            }
            // Cut and written again past the checkpoint while the agent was
            // down: the lines it kept are sent again.
            let cut = ck
                .tail
                .is_some_and(|t| !t.matches_before(&file, ck.offset).unwrap_or(true));
            let (offset, why) = if cut {
                (0, "cut to another size and written again while the agent was down (the lines it kept are sent again)")
            } else {
                (
                    ck.offset,
                    "checkpoint (the file left its path while the agent was down)",
                )
            };
            tracing::info!(flow = %self.settings.flow, path = %path.display(), offset, reason = why, "draining file rotated while the agent was down");
            let source = self.ledger.open(
                &self.settings.flow,
                ck.key,
                ck.fingerprint,
                path.clone(),
                offset,
            );
            let mut w = FileWatcher::new(source, ck.key, path, file, ck.fingerprint, offset);
            w.orphaned = true;
            w.why = why;
            self.track(w);
            return true;
        }
        false
    }

    /// Look for the copies of displaced readings next to their path (and
    /// one directory below): a plain or compressed file whose first bytes
    /// are the reading's is its copy, read from the reading's offset
    /// ([`decision::displaced`]). Searched for [`DISPLACED_SEARCH`], then
    /// given up with a warning.
    fn search_displaced(&mut self) {
        let mut i = 0;
        while i < self.displaced.len() {
            match self.search_one(i) {
                Ok(true) => {
                    self.displaced.swap_remove(i);
                }
                Ok(false) if self.displaced[i].since.elapsed() >= DISPLACED_SEARCH => {
                    let d = self.displaced.swap_remove(i);
                    if d.unread > 0 {
                        self.lost(&d.path, d.unread, "the file was truncated before they were read, and no copy of it was found");
                    } else if d.original.is_some() {
                        tracing::info!(flow = %self.settings.flow, path = %d.path.display(), offset = d.offset, "no copy found of a file truncated after it was read to its end; nothing of it was unsent");
                    } else {
                        tracing::warn!(flow = %self.settings.flow, path = %d.path.display(), offset = d.offset, "no copy found of a file truncated, replaced or gone while the agent was down; lines written to it after this offset, if any, were not shipped");
                    }
                }
                Ok(false) => i += 1,
                Err(e) => {
                    tracing::warn!(flow = %self.settings.flow, error = %e, "looking for a rotated copy failed; will retry");
                    i += 1;
                }
            }
        }
    }

    /// One displaced reading: true once its copy was found (or nothing in
    /// it was unsent).
    fn search_one(&mut self, i: usize) -> io::Result<bool> {
        let flow = self.settings.flow.clone();
        let quiet = self.settings.rotate_quiet;
        let (fp, offset, path, original, tail) = {
            let d = &self.displaced[i];
            (d.fingerprint, d.offset, d.path.clone(), d.original, d.tail)
        };
        let being_read = self
            .watchers
            .iter()
            .any(|w| !w.is_compressed() && w.fingerprint == fp);
        for candidate in sibling_files(&path) {
            let Ok(meta) = std::fs::metadata(&candidate) else {
                continue;
            };
            if !meta.is_file() {
                continue;
            }
            let key = FileKey::of_meta(&meta);
            let size = meta.len();
            // Files being read, or whose start discovery is deciding (a
            // copy matched by the globs), are not candidates.
            if self.watchers.iter().any(|w| w.key == key)
                || self.pending.iter().any(|p| p.key == key)
                || self.displaced[i].examined.contains(&(key, size))
            {
                continue;
            }
            let Ok(file) = File::open(&candidate) else {
                continue;
            };
            let codec = Codec::of_file(&candidate, &file);
            let gz = codec.is_some();
            let facts = if let Some(codec) = codec {
                let starts_like = compressed::starts_like(&file, codec, fp);
                // A stream cut short is still being written by its
                // compressor.
                let len = if starts_like {
                    compressed::decompressed_len(&file, codec).ok()
                } else {
                    None
                };
                let diverged = match (tail, len) {
                    (Some(t), Some(len)) if len >= offset => {
                        !compressed_tail_matches(&file, codec, offset, t)?
                    }
                    _ => false,
                };
                decision::Candidate {
                    starts_like,
                    diverged,
                    being_read,
                    len,
                }
            } else {
                let starts_like = u64::from(fp.len) <= size && fp.matches(&file)?;
                // A plain copy shorter than the offset may still be growing.
                let len = if starts_like && size < offset {
                    let d = &mut self.displaced[i];
                    let entry = d.short.entry(key).or_insert((size, Instant::now()));
                    if entry.0 != size {
                        *entry = (size, Instant::now());
                    }
                    (entry.1.elapsed() >= quiet).then_some(size)
                } else {
                    Some(size)
                };
                decision::Candidate {
                    starts_like,
                    diverged: starts_like
                        && size >= offset
                        && tail.is_some_and(|t| !t.matches_before(&file, offset).unwrap_or(true)),
                    being_read: false,
                    len,
                }
            };
            let decided = decision::displaced(&facts, offset);
            if decided == decision::Displaced::ReadFrom(0) && offset > 0 {
                tracing::warn!(flow = %flow, path = %candidate.display(), was = %path.display(), offset, "the copy of a file truncated or rotated does not hold what was read of it (cut and written again before it was copied): reading it whole, the lines it kept are sent again");
            }
            match decided {
                decision::Displaced::NotIt => {
                    self.displaced[i].examined.insert((key, size));
                }
                decision::Displaced::NotYet => {}
                decision::Displaced::NothingUnsent | decision::Displaced::ReadFrom(_) if !gz => {
                    // Read (or hold, when drained) the plain copy from where
                    // the reading stood, linked to it in the ledger so a
                    // crash now resumes at its unacknowledged lines.
                    let at = match decided {
                        decision::Displaced::ReadFrom(at) => at,
                        _ => offset.min(size),
                    };
                    tracing::info!(flow = %flow, path = %candidate.display(), was = %path.display(), offset = at, "reading the copy of a file truncated or replaced (copytruncate)");
                    let source = self.ledger.open(&flow, key, fp, candidate.clone(), at);
                    if let Some(original) = original {
                        self.ledger.same_bytes_as(source, original);
                    }
                    let mut w = FileWatcher::new(source, key, candidate, file, fp, at);
                    w.orphaned = true;
                    w.copy = true;
                    w.why = "copy of a file truncated or replaced (copytruncate)";
                    self.track(w);
                    return Ok(true);
                }
                decision::Displaced::NothingUnsent | decision::Displaced::ReadFrom(_) => {
                    let codec = codec.unwrap_or(Codec::Gzip);
                    let at = match decided {
                        decision::Displaced::ReadFrom(at) => at,
                        _ => offset,
                    };
                    if decided == decision::Displaced::NothingUnsent {
                        tracing::info!(flow = %flow, path = %candidate.display(), was = %path.display(), offset, "found the compressed copy of a truncated or rotated file; nothing in it was unsent");
                        if original
                            .is_none_or(|o| !self.ledger.entry(o).is_some_and(|e| e.is_held()))
                        {
                            return Ok(true);
                        }
                        // Its original's lines not yet acknowledged exist
                        // only here now: held (drained) and linked to it,
                        // so a crash resumes at them.
                    }
                    match CompressedInput::open_at(&file, codec, at) {
                        Ok(gz) => {
                            if decided != decision::Displaced::NothingUnsent {
                                tracing::info!(flow = %flow, path = %candidate.display(), was = %path.display(), offset = at, format = codec.name(), "reading the unsent end of a truncated or rotated file from its compressed copy");
                            }
                            let source = self.ledger.open(&flow, key, fp, candidate.clone(), at);
                            if let Some(original) = original {
                                self.ledger.same_bytes_as(source, original);
                            }
                            let mut w =
                                FileWatcher::compressed(source, key, candidate, file, fp, gz);
                            w.why = "compressed copy of a file truncated or rotated";
                            self.track(w);
                            return Ok(true);
                        }
                        Err(e) => {
                            tracing::error!(flow = %flow, path = %candidate.display(), was = %path.display(), offset, error = %e, "a compressed rotation holds this file's unsent lines but cannot be read; they are not shipped");
                            self.displaced[i].examined.insert((key, size));
                        }
                    }
                }
            }
        }
        Ok(false)
    }
}

impl DisplacedReading {
    fn new(
        fingerprint: Fingerprint,
        offset: u64,
        path: PathBuf,
        original: Option<SourceId>,
    ) -> Self {
        DisplacedReading {
            fingerprint,
            offset,
            path,
            original,
            unread: 0,
            tail: None,
            since: Instant::now(),
            examined: HashSet::new(),
            short: HashMap::new(),
        }
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

/// The path of file `key` next to `path` (or one directory below), if any.
fn find_by_key(path: &Path, key: FileKey) -> Option<PathBuf> {
    sibling_files(path)
        .into_iter()
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.dev() == key.dev && m.ino() == key.ino))
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

/// Whether the decompressed bytes of `file` just before `offset` are those
/// `tail` was taken of.
fn compressed_tail_matches(
    file: &File,
    codec: Codec,
    offset: u64,
    tail: Fingerprint,
) -> io::Result<bool> {
    let n = u64::from(tail.len).min(offset);
    let mut input = CompressedInput::open_at(file, codec, offset - n)?;
    let mut buf = [0u8; FINGERPRINT_BYTES];
    let mut got = 0;
    while (got as u64) < n {
        let r = input.read(&mut buf[got..n as usize])?;
        if r == 0 {
            break;
        }
        got += r;
    }
    Ok(Fingerprint::of_bytes(&buf[..got]) == tail)
}

/// Whether a copy (`file`, `size` bytes) lacks, just before `offset`, the
/// bytes `tail` a reading saw there: its original was cut and written
/// again before it was copied. Unknown (no tail, or the copy is shorter):
/// not diverged.
fn diverged_before(
    file: &File,
    size: u64,
    offset: u64,
    tail: Option<Fingerprint>,
) -> io::Result<bool> {
    match tail {
        Some(t) if size >= offset => Ok(!t.matches_before(file, offset)?),
        _ => Ok(false),
    }
}

/// Whether two files start with the same `len` bytes (`len` ≤ FINGERPRINT_BYTES).
fn same_prefix(a: &File, b: &File, len: usize) -> io::Result<bool> {
    let mut x = [0u8; FINGERPRINT_BYTES];
    let mut y = [0u8; FINGERPRINT_BYTES];
    let n = read_prefix(a, &mut x[..len])?;
    let m = read_prefix(b, &mut y[..len])?;
    Ok(n == len && m == len && x[..n] == y[..m])
}

/// Offset just after the last newline before `size` (so `start_at: end`
/// never starts in the middle of a line).
fn last_line_boundary(file: &File, size: u64) -> io::Result<u64> {
    let from = size.saturating_sub(64 * 1024);
    let mut buf = vec![0u8; (size - from) as usize];
    let n = file.read_at(&mut buf, from)?;
    Ok(match memchr::memrchr(b'\n', &buf[..n]) {
        Some(i) => from + i as u64 + 1,
        None if from == 0 => 0,
        None => size,
    })
}
