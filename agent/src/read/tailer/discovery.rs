//! Discovery (a part of [`super::Tailer`]): expanding the flow's globs into
//! the files it reads. One reading per file whatever its names
//! ([`crate::read::names`]); the files the keeper held while the reader was
//! blocked are adopted; readings whose path no longer leads to them are
//! noticed; a new file's start is decided ([`decision::start`]) from the
//! facts gathered here (its checkpoint, the readings it resembles, the
//! files the flow is done with), or it waits undecided ([`PendingFile`]).
//! Each discovery then looks for displaced copies ([`super::displaced`]) and,
//! when a rotation happened, for generations no look saw ([`super::unseen`]).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::read::decision::{self, CheckpointFit, Offset, Resemblance, Start, Waiting};
use crate::read::names;
use crate::read::seen::FirstBytes;
use crate::read::watcher::FileWatcher;
use crate::shared::identity::{read_prefix, FileKey, Fingerprint, FINGERPRINT_BYTES};

use super::{remember_target, sibling_files, DisplacedReading, PendingFile, Tailer};

impl Tailer {
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
    pub(super) fn note_looked(&mut self) {
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
    pub(super) fn adopt_kept(&mut self, seen: &HashSet<FileKey>) -> bool {
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
    pub(super) fn checkpoint_fit(
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
    pub(super) fn follow_pending(&mut self, seen: &HashSet<FileKey>) -> bool {
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

    pub(super) fn open_new(
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
    pub(super) fn resemblance(
        &self,
        file: &File,
        size: u64,
    ) -> io::Result<(Resemblance, Option<usize>)> {
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

    pub(super) fn is_excluded(&self, path: &Path) -> bool {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        self.exclude.iter().any(|p| p.matches(&name))
    }
}

/// The path of file `key` next to `path` (or one directory below), if any.
pub(super) fn find_by_key(path: &Path, key: FileKey) -> Option<PathBuf> {
    sibling_files(path)
        .into_iter()
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.dev() == key.dev && m.ino() == key.ino))
}

/// Whether a copy (`file`, `size` bytes) lacks, just before `offset`, the
/// bytes `tail` a reading saw there: its original was cut and written
/// again before it was copied. Unknown (no tail, or the copy is shorter):
/// not diverged.
pub(super) fn diverged_before(
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
pub(super) fn same_prefix(a: &File, b: &File, len: usize) -> io::Result<bool> {
    let mut x = [0u8; FINGERPRINT_BYTES];
    let mut y = [0u8; FINGERPRINT_BYTES];
    let n = read_prefix(a, &mut x[..len])?;
    let m = read_prefix(b, &mut y[..len])?;
    Ok(n == len && m == len && x[..n] == y[..m])
}

/// Offset just after the last newline before `size` (so `start_at: end`
/// never starts in the middle of a line).
pub(super) fn last_line_boundary(file: &File, size: u64) -> io::Result<u64> {
    let from = size.saturating_sub(64 * 1024);
    let mut buf = vec![0u8; (size - from) as usize];
    let n = file.read_at(&mut buf, from)?;
    Ok(match memchr::memrchr(b'\n', &buf[..n]) {
        Some(i) => from + i as u64 + 1,
        None if from == 0 => 0,
        None => size,
    })
}
