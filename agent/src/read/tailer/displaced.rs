//! The displaced-copy search (a part of [`super::Tailer`]): a reading whose
//! file now holds other bytes (truncated by `copytruncate`, a checkpoint
//! whose inode was reused, a checkpointed file gone) may have its unsent
//! end in a rotated copy, plain or compressed, next to its path or in an
//! `olddir`; each discovery looks for it for [`super::DISPLACED_SEARCH`]
//! ([`decision::displaced`]). At a start, checkpointed files no glob matches
//! are first looked for by inode and drained from their checkpoint.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::Instant;

use crate::read::compressed::{self, Codec, CompressedInput};
use crate::read::decision::{self};
use crate::read::watcher::FileWatcher;
use crate::shared::identity::{FileKey, Fingerprint, FINGERPRINT_BYTES};
use crate::shared::ledger::SourceId;
use crate::state::checkpoint::FileCheckpoint;

use super::{sibling_files, DisplacedReading, Tailer, DISPLACED_SEARCH};

impl Tailer {
    /// Files checkpointed before a restart that no glob found: look for them
    /// by inode next to their last path (rotated to a name the glob does not
    /// match, or into an `olddir`) and drain them from the checkpoint;
    /// failing that, their copy is looked for as a displaced reading.
    pub(super) fn recover_rotated_while_down(&mut self) {
        let leftovers: Vec<FileCheckpoint> = self.checkpoints.drain().map(|(_, c)| c).collect();
        for ck in leftovers {
            if !self.recover_renamed(&ck) && ck.fingerprint.len > 0 {
                let mut d = DisplacedReading::new(ck.fingerprint, ck.offset, ck.path, None);
                d.tail = ck.tail;
                self.displaced.push(d);
            }
        }
    }

    /// Find `ck`'s file by inode: at its own path when it was reached
    /// through a symbolic link (cronolog's link, moved to the next day's
    /// file), else next to its last path; true if found.
    pub(super) fn recover_renamed(&mut self, ck: &FileCheckpoint) -> bool {
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
    pub(super) fn search_displaced(&mut self) {
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
    pub(super) fn search_one(&mut self, i: usize) -> io::Result<bool> {
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
    pub(super) fn new(
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

/// Whether the decompressed bytes of `file` just before `offset` are those
/// `tail` was taken of.
pub(super) fn compressed_tail_matches(
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
