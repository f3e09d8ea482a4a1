//! The state directory (`state_dir`): everything the agent keeps on disk, and
//! the one way files there are written.
//!
//! | file | owner | written |
//! |---|---|---|
//! | `lock` | [`lock`] | created once; held (flock) while an agent runs |
//! | `checkpoints.json`, `.prev`, `.corrupt-*` | [`checkpoint`] | every `checkpoint_interval` when something changed, by [`checkpointer`]; fsynced |
//! | `status.json` | [`status_file`] | every 2 s by the monitor; not fsynced |
//!
//! Every write goes through [`write_atomic`]: a temp file beside the target,
//! renamed over it, so a reader (another agent after a crash, or
//! `tailrace status` now) sees the old version or the new one, never a torn
//! one. [`sequences`] is the per-flow state the checkpoint carries besides
//! file offsets.

pub mod checkpoint;
pub mod checkpointer;
pub mod lock;
pub mod sequences;
pub mod status_file;

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Errors reading or writing the state directory.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An I/O error on a named path.
    #[error("{path}: {error}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The error (not a `source`: the message already shows it).
        error: io::Error,
    },
    /// Another agent holds the state directory.
    #[error("{path}: another tailrace agent uses this state directory")]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
}

impl StoreError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, error: io::Error) -> StoreError {
        StoreError::Io {
            path: path.to_path_buf(),
            error,
        }
    }
}

/// `map_err` helper: an I/O error on `path`.
pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |error| StoreError::io(path, error)
}

/// Whether a write must reach the disk before it counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync the file before the rename and the directory after it: a crash
    /// or power loss leaves the old version or the new one.
    Synced,
    /// Rename only: readers never see a torn file, but after a power loss the
    /// file may be the old version or empty. For files that only inform.
    Unsynced,
}

/// Write `body` as `dir/name` atomically: a temp file (`name.tmp`) renamed
/// over the target. With `keep_previous_as`, the version being replaced is
/// first renamed to that name (a checkpoint corrupted later then costs one
/// interval of re-sending, not loss). Callers serialize writes of one name:
/// they share the temp file.
pub fn write_atomic(
    dir: &Path,
    name: &str,
    body: &[u8],
    keep_previous_as: Option<&str>,
    durability: Durability,
) -> Result<(), StoreError> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
    f.write_all(body).map_err(io_err(&tmp))?;
    if durability == Durability::Synced {
        f.sync_all().map_err(io_err(&tmp))?;
    }
    drop(f);
    if let Some(prev) = keep_previous_as {
        match fs::rename(&path, dir.join(prev)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&path)(e)),
        }
    }
    fs::rename(&tmp, &path).map_err(io_err(&path))?;
    if durability == Durability::Synced {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(dir))?;
    }
    Ok(())
}
