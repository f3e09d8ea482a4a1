//! The tailer: one flow's loop over all of its files, through rotation.
//!
//! It owns every [`FileWatcher`] of a flow and decides which files exist, what
//! each one is, and where reading starts:
//! - discovery expands the flow's globs (promptly on a `notify` event, and on
//!   a polling interval as the fallback for file systems without events);
//! - a file is known by device + inode; a new one resumes from its checkpoint
//!   when the fingerprint agrees (inode reuse otherwise), starts where an
//!   active file's reading stands when it is a `copytruncate` copy of it, and
//!   else starts at the beginning (or the end, for files present at the
//!   flow's first start — no checkpoints yet — with `start_at: end`);
//! - a file whose path no longer leads to it (renamed away, deleted) is read
//!   until it is drained and quiet, then closed: Apache keeps writing to a
//!   renamed log until it is signalled;
//! - a truncated file starts over at 0 as a new source;
//! - files rotated while the agent was down are found next to their last
//!   known path and drained from their checkpoint, or, compressed by a
//!   second rotation, in a `.gz` next to it ([`crate::compressed`]).
//!
//! The tailer runs on its own thread; the sink it feeds may block, which is
//! how a slow Kinesis slows reading down (the file is the buffer).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use notify::Watcher as _;

use crate::checkpoint::FileCheckpoint;
use crate::compressed::{self, GzInput};
use crate::config::StartAt;
use crate::identity::{read_prefix, FileKey, Fingerprint, FINGERPRINT_BYTES};
use crate::ledger::{Ledger, SourceId};
use crate::watcher::{FileWatcher, LineSink, Polled, SinkClosed};

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
    /// How long a rotated-away or deleted file must be quiet before closing.
    pub rotate_quiet: Duration,
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
            rotate_quiet: Duration::from_secs(5),
        }
    }
}

/// Bytes read from one file before moving to the next (fairness).
const READ_BUDGET: u64 = 4 * 1024 * 1024;

/// Where a newly found file starts, or why it must wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// Read from this offset.
    At(u64, &'static str),
    /// Empty: nothing to decide on yet (logrotate's `create`, or a copy
    /// that has not begun).
    WaitEmpty,
    /// A `copytruncate` copy still being written: wait until it reaches the
    /// offset the original was read to, so reading starts on that line
    /// boundary and nothing is sent twice.
    WaitCopy {
        /// The original's read offset when it was copied.
        target: u64,
    },
    /// Too short to compare with a truncated file's fingerprint yet.
    WaitShort,
    /// Starts like a file being read that was not truncated: wait for its
    /// truncation (then it is a copy), or read it from 0 if none comes.
    WaitOriginal,
}

/// A new file whose start is not decided yet. Lives in the tailer until it
/// becomes a watcher or disappears.
struct PendingFile {
    key: FileKey,
    /// When it was first seen.
    found: Instant,
    /// Size when last seen, and since when it has not changed.
    size: u64,
    still_since: Instant,
}

/// One flow's file server. Lives for the flow's lifetime on its own thread.
pub struct Tailer {
    settings: TailerSettings,
    ledger: Ledger,
    patterns: Vec<String>,
    exclude: Vec<glob::Pattern>,
    watchers: Vec<FileWatcher>,
    /// Checkpoints of this flow not yet claimed by an open file.
    checkpoints: HashMap<FileKey, FileCheckpoint>,
    /// Checkpoints whose inode now holds other bytes (truncated or reused
    /// while the agent was down): their unsent end may live on in a
    /// compressed rotation.
    displaced: Vec<FileCheckpoint>,
    first_scan: bool,
    /// Paths we could not open, so each is reported once until it recovers.
    unreadable: HashSet<PathBuf>,
    /// New files whose starting offset is not decided yet.
    pending: Vec<PendingFile>,
    /// File-system events: `true` when names changed (rediscover).
    fs_events: Option<mpsc::Receiver<bool>>,
    fs_watcher: Option<notify::RecommendedWatcher>,
    watched_dirs: HashSet<PathBuf>,
    last_discover: Option<Instant>,
    /// `start_at: end` applies: the flow's first start (no checkpoints).
    start_at_end: bool,
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
        let (tx, rx) = mpsc::channel();
        let fs_watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            // Opening and reading files (ours included) raises access events:
            // reacting to them would make discovery wake itself forever.
            // Appends only wake the loop; names changing also rediscover.
            if let Ok(event) = res {
                use notify::event::{EventKind, ModifyKind};
                let rediscover = match event.kind {
                    EventKind::Access(_) => return,
                    EventKind::Create(_) | EventKind::Remove(_) => true,
                    EventKind::Modify(ModifyKind::Name(_)) => true,
                    _ => false,
                };
                let _ = tx.send(rediscover);
            }
        })
        .map_err(|e| tracing::warn!(error = %e, "file-system events unavailable; polling only"))
        .ok();
        // `start_at` is for a flow's first start only. Once it has
        // checkpoints, a file without one appeared while the agent was down
        // (a rotation's new file, a new site) and all of it is unsent.
        let start_at_end = settings.start_at == StartAt::End && checkpoints.is_empty();
        Tailer {
            start_at_end,
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
            fs_events: fs_watcher.as_ref().map(|_| rx),
            fs_watcher,
            watched_dirs: HashSet::new(),
            last_discover: None,
        }
    }

    /// Number of files open.
    pub fn open_files(&self) -> usize {
        self.watchers.len()
    }

    /// Run until `stop` is set or the sink closes; then flush the sink.
    pub fn run(&mut self, sink: &mut dyn LineSink, stop: &AtomicBool) -> Result<(), SinkClosed> {
        while !stop.load(Ordering::Relaxed) {
            let due = self
                .last_discover
                .is_none_or(|t| t.elapsed() >= self.settings.discover_interval);
            if due {
                self.discover();
            }
            let progressed = self.poll_all(sink)?;
            sink.tick()?;
            self.close_quiet();
            if !progressed {
                self.wait_for_event();
            }
        }
        sink.flush()
    }

    /// Read every file once to its end (replay), then flush.
    pub fn drain_once(&mut self, sink: &mut dyn LineSink) -> Result<(), SinkClosed> {
        while self.poll_all(sink)? {}
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
        self.watchers.push(w);
        Ok(())
    }

    fn wait_for_event(&mut self) {
        let timeout = self.settings.poll_interval;
        match &self.fs_events {
            Some(rx) => {
                if let Ok(first) = rx.recv_timeout(timeout) {
                    // Coalesce a burst of events; rediscover promptly if
                    // names changed, else just read again.
                    let mut rediscover = first;
                    while let Ok(more) = rx.try_recv() {
                        rediscover |= more;
                    }
                    if rediscover {
                        self.last_discover = None;
                    }
                }
            }
            None => std::thread::sleep(timeout),
        }
    }

    fn poll_all(&mut self, sink: &mut dyn LineSink) -> Result<bool, SinkClosed> {
        let mut progressed = false;
        for i in 0..self.watchers.len() {
            let w = &mut self.watchers[i];
            match w.poll(sink, self.settings.max_line, READ_BUDGET) {
                Ok(Ok(Polled::Read(n))) => {
                    if n > 0 {
                        progressed = true;
                        self.ledger.set_processed(w.source, w.offset());
                        self.ledger.update(w.source, w.fingerprint, None);
                    }
                }
                Ok(Ok(Polled::Truncated { size })) => {
                    tracing::warn!(
                        flow = %self.settings.flow,
                        path = %w.path.display(),
                        read = w.offset(),
                        size,
                        "file truncated (copytruncate?); reading it again from the start"
                    );
                    self.ledger.close(w.source);
                    let fp = Fingerprint::of(w.file()).unwrap_or(Fingerprint::EMPTY);
                    let source =
                        self.ledger
                            .open(&self.settings.flow, w.key, fp, w.path.clone(), 0);
                    w.restart(source, fp);
                    progressed = true;
                }
                Ok(Err(closed)) => return Err(closed),
                Err(e) => {
                    tracing::warn!(flow = %self.settings.flow, path = %w.path.display(), error = %e, "read failed; will retry");
                }
            }
        }
        Ok(progressed)
    }

    /// Close files that left their path (rotated away or deleted) once they
    /// are drained and quiet.
    fn close_quiet(&mut self) {
        let quiet = self.settings.rotate_quiet;
        let ledger = &self.ledger;
        let flow = &self.settings.flow;
        self.watchers.retain(|w| {
            let deleted = w.is_deleted();
            if !(w.orphaned || deleted) || w.last_growth.elapsed() < quiet {
                return true;
            }
            let drained = w.size().map(|s| s <= w.offset() + w.pending() as u64).unwrap_or(true);
            if !drained {
                return true;
            }
            if w.pending() > 0 {
                tracing::warn!(flow = %flow, path = %w.path.display(), bytes = w.pending(), "closing file whose last line has no newline; those bytes are not shipped");
            }
            tracing::info!(flow = %flow, path = %w.path.display(), offset = w.offset(), deleted, "closed rotated file");
            ledger.close(w.source);
            false
        });
    }

    fn is_excluded(&self, path: &Path) -> bool {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        self.exclude.iter().any(|p| p.matches(&name))
    }

    fn watch_dirs(&mut self) {
        let Some(w) = self.fs_watcher.as_mut() else {
            return;
        };
        for pattern in &self.patterns {
            let dir = glob_base_dir(pattern);
            if self.watched_dirs.contains(&dir) || !dir.is_dir() {
                continue;
            }
            match w.watch(&dir, notify::RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.watched_dirs.insert(dir);
                }
                Err(e) => {
                    tracing::debug!(dir = %dir.display(), error = %e, "cannot watch directory; polling it")
                }
            }
        }
    }

    /// Expand the globs; open new files; notice files that left their path.
    pub fn discover(&mut self) {
        self.last_discover = Some(Instant::now());
        self.watch_dirs();
        let mut seen: HashSet<FileKey> = HashSet::new();
        let mut found: Vec<PathBuf> = Vec::new();
        for pattern in &self.patterns {
            crate::globs::expand(pattern, &mut found);
        }
        found.sort();
        found.dedup();
        for path in found {
            if self.is_excluded(&path) || !path.is_file() {
                continue;
            }
            // Known files by stat alone: no open per file per discovery.
            if let Ok(meta) = std::fs::metadata(&path) {
                let key = FileKey {
                    dev: meta.dev(),
                    ino: meta.ino(),
                };
                if let Some(w) = self.watchers.iter_mut().find(|w| w.key == key) {
                    seen.insert(key);
                    if w.path != path {
                        tracing::info!(flow = %self.settings.flow, from = %w.path.display(), to = %path.display(), "file renamed");
                        w.path = path.clone();
                        self.ledger.update(w.source, w.fingerprint, Some(path));
                    }
                    w.orphaned = false;
                    continue;
                }
            }
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
            if let Err(e) = self.open_new(path.clone(), file, key) {
                tracing::warn!(flow = %self.settings.flow, path = %path.display(), error = %e, "cannot start reading file");
            }
        }
        // Pending files that vanished (deleted before anything was decided).
        self.pending.retain(|p| seen.contains(&p.key));
        for w in &mut self.watchers {
            if !seen.contains(&w.key) && !w.orphaned {
                tracing::info!(flow = %self.settings.flow, path = %w.path.display(), "file left its path (rotated or deleted); draining it");
                w.orphaned = true;
            }
        }
        if self.first_scan {
            self.first_scan = false;
            self.recover_rotated_while_down();
        }
    }

    fn open_new(&mut self, path: PathBuf, file: File, key: FileKey) -> io::Result<()> {
        let size = file.metadata()?.len();
        let mut copy_of = None;
        let start = if let Some(ck) = self.checkpoints.remove(&key) {
            if !ck.fingerprint.matches(&file)? {
                self.displaced.push(ck);
                Start::At(0, "inode reused by a new file")
            } else if ck.offset > size {
                self.displaced.push(ck);
                Start::At(
                    0,
                    "shorter than its checkpoint: truncated while the agent was down",
                )
            } else {
                Start::At(ck.offset, "checkpoint")
            }
        } else if self.first_scan && self.start_at_end {
            Start::At(last_line_boundary(&file, size)?, "start_at: end")
        } else {
            let (start, original) = self.classify_new(&file, size)?;
            copy_of = original;
            start
        };
        let start = match (start, self.pending.iter().position(|p| p.key == key)) {
            (Start::At(..), _) => start,
            (_, None) => {
                tracing::debug!(flow = %self.settings.flow, path = %path.display(), size, ?start, "new file: deciding where to start");
                self.pending.push(PendingFile {
                    key,
                    found: Instant::now(),
                    size,
                    still_since: Instant::now(),
                });
                return Ok(());
            }
            (_, Some(i)) => {
                let p = &mut self.pending[i];
                if p.size != size {
                    p.size = size;
                    p.still_since = Instant::now();
                }
                let quiet = self.settings.rotate_quiet;
                match start {
                    // The copy stopped growing short of the original's offset.
                    Start::WaitCopy { .. } if p.still_since.elapsed() >= quiet => Start::At(
                        last_line_boundary(&file, size)?,
                        "copy shorter than what was read of the original",
                    ),
                    // No truncation came: same first bytes by coincidence.
                    Start::WaitShort | Start::WaitOriginal if p.found.elapsed() >= quiet => {
                        Start::At(0, "new file")
                    }
                    _ => return Ok(()),
                }
            }
        };
        self.pending.retain(|p| p.key != key);
        let Start::At(offset, why) = start else {
            return Ok(());
        };
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
        self.watchers
            .push(FileWatcher::new(source, key, path, file, fp, offset));
        Ok(())
    }

    /// Where a new file without a checkpoint starts. A file whose first bytes
    /// equal those of a file that was truncated is a `copytruncate` copy of
    /// it: it starts where the original's reading stood, once the copy got
    /// that far. A file whose first bytes equal those of a file *not*
    /// truncated may be a copy whose original is about to be truncated, or a
    /// coincidence (identical lines from a load test): it waits for the
    /// truncation, and is read from 0 if none comes.
    /// Also returns, for a copy, the source (reading) of the original whose
    /// bytes it repeats.
    fn classify_new(&self, file: &File, size: u64) -> io::Result<(Start, Option<SourceId>)> {
        if size == 0 {
            return Ok((Start::WaitEmpty, None));
        }
        let mut short = false;
        for w in self.watchers.iter().filter(|w| !w.is_compressed()) {
            let truncated_now = w.size()? < w.offset();
            let current = (w.fingerprint, w.offset(), truncated_now, w.source);
            let previous = w
                .previous
                .map(|(fp, offset, source)| (fp, offset, true, source));
            for (fp, offset, truncated, source) in std::iter::once(current).chain(previous) {
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
                    return Ok(if truncated {
                        (copy_start(offset, size), Some(source))
                    } else {
                        (Start::WaitOriginal, None)
                    });
                }
            }
        }
        Ok(if short {
            (Start::WaitShort, None)
        } else {
            (Start::At(0, "new file"), None)
        })
    }

    /// Files checkpointed before a restart that no glob found: look for them
    /// next to their last path (rotated to a name the glob does not match)
    /// and drain them from the checkpoint; failing that, and for files whose
    /// inode now holds other bytes, look for a gzip rotation of them.
    fn recover_rotated_while_down(&mut self) {
        let leftovers: Vec<FileCheckpoint> = self.checkpoints.drain().map(|(_, c)| c).collect();
        for ck in leftovers {
            if !self.recover_renamed(&ck) {
                self.recover_compressed(
                    &ck,
                    "is gone (deleted, or moved out of its directory, while the agent was down)",
                );
            }
        }
        for ck in std::mem::take(&mut self.displaced) {
            self.recover_compressed(
                &ck,
                "was truncated or replaced while the agent was down, and no copy of it was found",
            );
        }
    }

    /// Find `ck`'s file by inode next to its last path; true if found.
    fn recover_renamed(&mut self, ck: &FileCheckpoint) -> bool {
        let Some(dir) = ck.path.parent() else {
            return false;
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return false;
        };
        for entry in entries.filter_map(Result::ok) {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.dev() != ck.key.dev || meta.ino() != ck.key.ino {
                continue;
            }
            let path = entry.path();
            let Ok(file) = File::open(&path) else {
                continue;
            };
            if !ck.fingerprint.matches(&file).unwrap_or(false) || meta.len() < ck.offset {
                continue;
            }
            tracing::info!(flow = %self.settings.flow, path = %path.display(), offset = ck.offset, "draining file rotated while the agent was down");
            let source = self.ledger.open(
                &self.settings.flow,
                ck.key,
                ck.fingerprint,
                path.clone(),
                ck.offset,
            );
            let mut w = FileWatcher::new(source, ck.key, path, file, ck.fingerprint, ck.offset);
            w.orphaned = true;
            self.watchers.push(w);
            return true;
        }
        false
    }

    /// Read the unsent end of `ck`'s file from a gzip rotation of it next to
    /// its last path: a `.gz` whose decompressed start has the checkpoint's
    /// fingerprint and that is longer than the checkpoint's offset. Skipped
    /// while a plain file with the same start is being read (the rotation
    /// was not compressed yet, or gzip is still writing the `.gz`).
    /// Several matches (identical first lines) are all read: a duplicate
    /// rather than a loss.
    /// `lost` says what became of the file, for the warning when no copy is
    /// found.
    fn recover_compressed(&mut self, ck: &FileCheckpoint, lost: &str) {
        let flow = self.settings.flow.clone();
        if ck.fingerprint.len == 0 {
            return;
        }
        if self
            .watchers
            .iter()
            .any(|w| !w.is_compressed() && w.fingerprint == ck.fingerprint)
        {
            return;
        }
        let Some(dir) = ck.path.parent() else {
            return;
        };
        let mut candidates: Vec<PathBuf> = match std::fs::read_dir(dir) {
            Ok(entries) => entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| compressed::is_gzip_name(p) && p.is_file())
                .collect(),
            Err(_) => Vec::new(),
        };
        candidates.sort();
        let mut found = false;
        for path in candidates {
            let Ok(file) = File::open(&path) else {
                continue;
            };
            if !compressed::starts_like(&file, ck.fingerprint) {
                continue;
            }
            found = true;
            let opened = compressed::decompressed_len(&file).and_then(|len| {
                if len <= ck.offset {
                    return Ok(None);
                }
                let key = FileKey::of(&file)?;
                Ok(Some((
                    len,
                    key,
                    GzInput::open_at(File::open(&path)?, ck.offset)?,
                )))
            });
            match opened {
                Ok(None) => {
                    tracing::info!(flow = %flow, path = %path.display(), was = %ck.path.display(), offset = ck.offset, "file rotated and compressed while the agent was down; nothing in it was unsent")
                }
                Ok(Some((len, key, gz))) => {
                    tracing::info!(flow = %flow, path = %path.display(), was = %ck.path.display(), offset = ck.offset, unsent = len - ck.offset, "file rotated and compressed while the agent was down; reading its unsent end from the compressed copy");
                    let source =
                        self.ledger
                            .open(&flow, key, ck.fingerprint, path.clone(), ck.offset);
                    self.watchers.push(FileWatcher::compressed(
                        source,
                        key,
                        path,
                        file,
                        ck.fingerprint,
                        gz,
                    ));
                }
                Err(e) => {
                    tracing::error!(flow = %flow, path = %path.display(), was = %ck.path.display(), offset = ck.offset, error = %e, "a compressed rotation holds this file's unsent lines but cannot be read; they are not shipped")
                }
            }
        }
        if !found {
            tracing::warn!(flow = %flow, path = %ck.path.display(), offset = ck.offset, "a checkpointed file {lost}; lines written to it after this offset, if any, were not shipped");
        }
    }
}

/// The directory a glob's matches live in: the longest leading part without
/// glob metacharacters.
fn glob_base_dir(pattern: &str) -> PathBuf {
    let mut base = PathBuf::new();
    for comp in Path::new(pattern).components() {
        let s = comp.as_os_str().to_string_lossy();
        if s.contains(['*', '?', '[', '{']) {
            break;
        }
        base.push(comp);
    }
    if base.as_os_str() == pattern {
        base.pop();
    }
    base
}

/// Where a copy of a file read up to `target` starts, given its size now.
fn copy_start(target: u64, size: u64) -> Start {
    if size >= target {
        Start::At(target, "copy of a file being read (copytruncate)")
    } else {
        Start::WaitCopy { target }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_dir_of_globs() {
        assert_eq!(
            glob_base_dir("/var/log/apache2/access.log*"),
            PathBuf::from("/var/log/apache2")
        );
        assert_eq!(
            glob_base_dir("/var/log/*/access.log"),
            PathBuf::from("/var/log")
        );
        assert_eq!(
            glob_base_dir("/var/log/httpd/access_log"),
            PathBuf::from("/var/log/httpd")
        );
    }
}
