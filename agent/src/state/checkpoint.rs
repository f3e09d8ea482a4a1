//! The durable checkpoint file: `<state_dir>/checkpoints.json`.
//!
//! One file per agent holds, per (flow, file identity), the offset up to which
//! every line was acknowledged by Kinesis, plus per-flow state (sequence
//! numbers, the files a flow is done with, how far back its rotations were
//! looked at) and the positions of flows no longer configured. It is
//! written atomically ([`super::write_atomic`]: temp file, fsync, rename,
//! fsync of the directory), so a crash leaves either the old or the new version, never a torn one. The
//! format is a tagged, versioned enum: a change of format is a new variant.
//!
//! The version it replaces is kept as `checkpoints.json.prev`. A file that
//! cannot be parsed (disk corruption, a hand edit) is moved aside and the
//! agent resumes from the previous version — older by one checkpoint
//! interval, so lines since then are sent again rather than lost. Only when
//! neither can be read does it start without checkpoints, loudly:
//! crash-looping on it would stop every flow.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::shared::identity::{FileKey, Fingerprint};
use crate::shared::positions::{FlowMemory, Position, Retired, Shipped};

use super::lock::DirLock;
use super::{io_err, write_atomic, Durability, StoreError};

const FILE_NAME: &str = "checkpoints.json";
const PREV_NAME: &str = "checkpoints.json.prev";

/// One file's checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileCheckpoint {
    /// Flow that reads the file.
    pub flow: String,
    /// Device + inode.
    #[serde(flatten)]
    pub key: FileKey,
    /// Fingerprint of the first bytes.
    pub fingerprint: Fingerprint,
    /// Last path the file was seen at.
    pub path: PathBuf,
    /// The file's own path, when `path` reached it through a symbolic link
    /// (cronolog's `access.log` pointing into dated directories): where it
    /// is looked for once the link points elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<PathBuf>,
    /// Resume offset: every byte before it was acknowledged.
    pub offset: u64,
    /// A fingerprint of the bytes just before `offset` (up to 32), when the
    /// reader saw them: a file that no longer has them there was cut and
    /// written again while the agent was down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tail: Option<Fingerprint>,
}

impl From<Position> for FileCheckpoint {
    fn from(p: Position) -> Self {
        FileCheckpoint {
            flow: p.flow,
            key: p.key,
            fingerprint: p.fingerprint,
            path: p.path,
            target: p.target,
            offset: p.offset,
            tail: p.tail,
        }
    }
}

impl From<FileCheckpoint> for Position {
    fn from(c: FileCheckpoint) -> Self {
        Position {
            flow: c.flow,
            key: c.key,
            fingerprint: c.fingerprint,
            path: c.path,
            target: c.target,
            offset: c.offset,
            tail: c.tail,
        }
    }
}

/// The position of a flow no longer configured ([`Retired`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetiredCheckpoint {
    /// The position, under the removed flow's name.
    #[serde(flatten)]
    pub file: FileCheckpoint,
    /// When the flow was removed (Unix ms).
    pub retired_ms: u64,
}

impl From<Retired> for RetiredCheckpoint {
    fn from(r: Retired) -> Self {
        RetiredCheckpoint {
            file: r.position.into(),
            retired_ms: r.retired_ms,
        }
    }
}

impl From<RetiredCheckpoint> for Retired {
    fn from(r: RetiredCheckpoint) -> Self {
        Retired {
            position: r.file.into(),
            retired_ms: r.retired_ms,
        }
    }
}

/// Per-flow durable state. A flow named here has started on this host
/// before, even when it holds no files now: `start_at: end` is behind it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowState {
    /// Next record sequence number for aggregate partials.
    pub next_sequence: u64,
    /// Every rotated file modified before this time (Unix ms) was looked at
    /// by the flow's reader ([`FlowMemory::looked_ms`]); a start looks at
    /// the rotations modified since. Absent: the checkpoint's own time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub looked_ms: Option<u64>,
    /// Files the flow is done with ([`Shipped`]), oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shipped: Vec<Shipped>,
}

impl FlowState {
    /// What the flow remembered, for the ledger.
    pub fn memory(&self) -> FlowMemory {
        FlowMemory {
            shipped: self.shipped.iter().copied().collect(),
            looked_ms: self.looked_ms,
        }
    }
}

/// Everything the checkpoint file holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    /// File positions.
    pub files: Vec<FileCheckpoint>,
    /// Per-flow state.
    pub flows: BTreeMap<String, FlowState>,
    /// Positions of flows no longer configured.
    pub retired: Vec<RetiredCheckpoint>,
}

impl State {
    /// What flow `name` starts from: its checkpoints, and whether it ran on
    /// this host before (named in the per-flow state, even with no files
    /// now): then `start_at` is behind it.
    pub fn of_flow(&self, name: &str) -> (Vec<FileCheckpoint>, bool) {
        let files = self
            .files
            .iter()
            .filter(|c| c.flow == name)
            .cloned()
            .collect();
        (files, self.flows.contains_key(name))
    }
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "version")]
enum OnDisk {
    #[serde(rename = "1")]
    V1 {
        files: Vec<FileCheckpoint>,
        #[serde(default)]
        flows: BTreeMap<String, FlowState>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        retired: Vec<RetiredCheckpoint>,
    },
}

/// Read and parse a checkpoint file: `Ok(None)` when it does not exist, the
/// parse result otherwise (callers decide what a corrupt file means).
fn read_state(path: &Path) -> Result<Option<Result<State, serde_json::Error>>, StoreError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path)(e)),
    };
    Ok(Some(serde_json::from_slice::<OnDisk>(&bytes).map(
        |OnDisk::V1 {
             files,
             flows,
             retired,
         }| State {
            files,
            flows,
            retired,
        },
    )))
}

/// Read the checkpoint of `dir` without locking it (for `tailrace status`,
/// while an agent may be running): `Ok(None)` when there is none yet. Between
/// the two renames of a save only the previous version exists; it is read then.
pub fn peek(dir: &Path) -> Result<Option<State>, StoreError> {
    let mut path = dir.join(FILE_NAME);
    let mut state = read_state(&path)?;
    if state.is_none() {
        path = dir.join(PREV_NAME);
        state = read_state(&path)?;
    }
    state
        .transpose()
        .map_err(|e| io_err(&path)(io::Error::new(io::ErrorKind::InvalidData, e)))
}

/// The state directory: the checkpoint file and the lock that keeps a second
/// agent out. Lives as long as the agent runs. A directory deleted or
/// replaced while it runs is made again, locked again, and the positions
/// the agent keeps in memory are written there at the next save.
pub struct Store {
    dir: PathBuf,
    /// The lock held; replaced when the directory is made again. Also
    /// serializes saves (they share one temp file name).
    lock: std::sync::Mutex<DirLock>,
}

impl Store {
    /// Open (creating if needed) and lock the state directory.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let lock = DirLock::acquire(dir)?;
        Ok(Store {
            dir: dir.to_path_buf(),
            lock: std::sync::Mutex::new(lock),
        })
    }

    /// Whether the checkpoint file is missing (the directory was deleted or
    /// emptied while the agent runs): it must be written again even when
    /// nothing changed.
    pub fn is_missing(&self) -> bool {
        !self.path().exists()
    }

    /// What a restart would do now that a save failed, for the error.
    pub fn restart_advice(&self) -> String {
        let written = [self.path(), self.dir.join(PREV_NAME)]
            .iter()
            .find_map(|p| fs::metadata(p).and_then(|m| m.modified()).ok());
        match written {
            Some(t) => format!(
                "lines keep flowing; a restart now would resume from the checkpoint written at {} and send the lines acknowledged since then again",
                tailrace_logformat::rfc3339_utc(
                    t.duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs() as i64)
                )
            ),
            None => "lines keep flowing; no checkpoint is on disk, so a restart now would start every file where `start_at` says (with `start_at: end`, skipping what was written meanwhile)".to_string(),
        }
    }

    /// Path of the checkpoint file.
    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    /// Load the checkpoint. A missing file is an empty state; a corrupt one
    /// is moved aside (and reported) and the previous version is used; with
    /// neither readable, the state is empty.
    pub fn load(&self) -> Result<State, StoreError> {
        let path = self.path();
        let prev = self.dir.join(PREV_NAME);
        match read_state(&path)? {
            Some(Ok(state)) => return Ok(state),
            // A crash between the two renames of a save: only `.prev` exists.
            None => {}
            Some(Err(e)) => {
                let aside = self.dir.join(format!(
                    "{FILE_NAME}.corrupt-{}",
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or(0)
                ));
                tracing::error!(
                    path = %path.display(),
                    moved_to = %aside.display(),
                    error = %e,
                    "checkpoint file is unreadable; moved aside"
                );
                fs::rename(&path, &aside).map_err(io_err(&path))?;
            }
        }
        match read_state(&prev)? {
            None => Ok(State::default()),
            Some(Ok(state)) => {
                tracing::warn!(path = %prev.display(), "resuming from the previous checkpoint; lines since it are sent again");
                Ok(state)
            }
            Some(Err(e)) => {
                tracing::error!(
                    path = %prev.display(),
                    error = %e,
                    "previous checkpoint is unreadable too; starting without checkpoints (files present now start where `start_at` says)"
                );
                Ok(State::default())
            }
        }
    }

    /// Write the checkpoint atomically; first make the directory again (and
    /// lock it) if it was deleted or replaced.
    pub fn save(&self, state: &State) -> Result<(), StoreError> {
        let mut lock = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        if !lock.is_current(&self.dir) {
            fs::create_dir_all(&self.dir).map_err(io_err(&self.dir))?;
            *lock = DirLock::acquire(&self.dir)?;
            tracing::warn!(dir = %self.dir.display(), "the state directory was deleted or replaced while the agent ran; made it again, writing the positions kept in memory");
        }
        let path = self.path();
        let body = serde_json::to_vec_pretty(&OnDisk::V1 {
            files: state.files.clone(),
            flows: state.flows.clone(),
            retired: state.retired.clone(),
        })
        .map_err(|e| io_err(&path)(io::Error::other(e)))?;
        write_atomic(
            &self.dir,
            FILE_NAME,
            &body,
            Some(PREV_NAME),
            Durability::Synced,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tailrace-ckpt-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn round_trip_and_lock() -> Result<(), StoreError> {
        let dir = tempdir("rt");
        let store = Store::open(&dir)?;
        assert!(matches!(Store::open(&dir), Err(StoreError::Locked { .. })));
        assert_eq!(store.load()?, State::default());
        let mut state = state_with_offset(1234);
        state.flows.insert(
            "web".into(),
            FlowState {
                next_sequence: 7,
                looked_ms: Some(1_796_108_400_000),
                shipped: vec![Shipped {
                    fingerprint: Fingerprint { len: 256, hash: 5 },
                    offset: 9000,
                }],
            },
        );
        state.retired.push(RetiredCheckpoint {
            file: FileCheckpoint {
                flow: "gone".into(),
                key: FileKey { dev: 3, ino: 9 },
                fingerprint: Fingerprint { len: 10, hash: 98 },
                path: "/var/log/access.log".into(),
                target: Some("/var/log/2026/12/01/access.log".into()),
                offset: 77,
                tail: Some(Fingerprint { len: 32, hash: 7 }),
            },
            retired_ms: 1_796_108_400_000,
        });
        store.save(&state)?;
        assert_eq!(store.load()?, state);
        drop(store);
        let _ = fs::remove_dir_all(&dir);
        Ok(())
    }

    fn state_with_offset(offset: u64) -> State {
        let mut state = State::default();
        state.files.push(FileCheckpoint {
            flow: "web".into(),
            key: FileKey { dev: 3, ino: 4 },
            fingerprint: Fingerprint { len: 10, hash: 99 },
            path: "/var/log/a".into(),
            target: None,
            offset,
            tail: None,
        });
        state
    }

    #[test]
    fn torn_file_falls_back_to_the_previous_version() -> Result<(), StoreError> {
        let dir = tempdir("torn-prev");
        let store = Store::open(&dir)?;
        store.save(&state_with_offset(100))?;
        store.save(&state_with_offset(200))?;
        assert_eq!(store.load()?, state_with_offset(200));
        fs::write(store.path(), b"{\"version\":\"1\",\"files\":[{\"fl").map_err(io_err(&dir))?;
        assert_eq!(store.load()?, state_with_offset(100));
        // A crash between the two renames of a save leaves only `.prev`.
        assert_eq!(peek(&dir)?, Some(state_with_offset(100)));
        drop(store);
        let _ = fs::remove_dir_all(&dir);
        Ok(())
    }

    #[test]
    fn torn_file_is_moved_aside() -> Result<(), StoreError> {
        let dir = tempdir("torn");
        let store = Store::open(&dir)?;
        fs::write(store.path(), b"{\"version\":\"1\",\"files\":[{\"fl").map_err(io_err(&dir))?;
        fs::write(dir.join(PREV_NAME), b"\0\0\0").map_err(io_err(&dir))?;
        assert_eq!(store.load()?, State::default());
        let aside = fs::read_dir(&dir)
            .map_err(io_err(&dir))?
            .filter_map(Result::ok)
            .any(|e| e.file_name().to_string_lossy().contains("corrupt"));
        assert!(aside, "corrupt checkpoint kept for inspection");
        drop(store);
        let _ = fs::remove_dir_all(&dir);
        Ok(())
    }
}
