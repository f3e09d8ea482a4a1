//! Unseen-rotation recovery (a part of [`super::Tailer`]): a generation
//! created at a watched path and rotated away before any discovery looked
//! (while the agent was stopped, or the reader blocked, or between two
//! looks) is found among the files named like a watched path, next to it or
//! one directory below, and read whole unless its first bytes say it was
//! read already ([`decision::leftover`]).

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::read::compressed::{self, Codec, CompressedInput};
use crate::read::decision::{self, LeftoverAction};
use crate::read::names;
use crate::read::seen::FirstBytes;
use crate::read::watcher::FileWatcher;
use crate::shared::identity::{FileKey, Fingerprint};

use super::{sibling_files, Tailer, DECIDING_BYTES};

impl Tailer {
    /// Rotated files next to a watched path (named like it, in its
    /// directory or an `olddir`) that no glob matches, nothing names, and
    /// that were modified since `since` hold generations no discovery saw
    /// at their path (created and rotated away while the agent was down,
    /// or while the reader was blocked or between two looks): read them
    /// whole ([`decision::leftover`]). Older ones are remembered by
    /// their first bytes, so their later compressed copies are known.
    /// Returns false if a file could not be decided yet (a compressed one
    /// still being written): the search is then repeated.
    pub(super) fn read_unseen_rotations(&mut self, since: SystemTime) -> bool {
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
    pub(super) fn rotated_siblings(&self) -> Vec<PathBuf> {
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
    pub(super) fn starts_like_a_file_being_read(&self, firsts: &FirstBytes) -> bool {
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
    pub(super) fn read_if_unseen(&mut self, path: &Path, since: SystemTime) -> io::Result<bool> {
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
    pub(super) fn shipped_through(&self, firsts: &FirstBytes, size: Option<u64>) -> Option<u64> {
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
}
