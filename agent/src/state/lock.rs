//! The state directory's lock, `<state_dir>/lock`: one agent per directory.
//!
//! An exclusive `flock` held for as long as the agent runs; `tailrace status`
//! takes a shared one for an instant to learn whether an agent runs. The file
//! is created once and then held through a read-only descriptor (flock does
//! not need write access), so the agent keeps nothing open for writing in the
//! state directory between saves.

use std::fs::{self, File, OpenOptions};
use std::path::Path;

use super::{io_err, StoreError};

/// Name of the lock file in the state directory.
pub const FILE_NAME: &str = "lock";

/// The held lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    /// Create (if needed) and lock `dir`'s lock file; [`StoreError::Locked`]
    /// when another agent holds it.
    pub fn acquire(dir: &Path) -> Result<DirLock, StoreError> {
        let path = dir.join(FILE_NAME);
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        let file = File::open(&path).map_err(io_err(&path))?;
        // A few tries: `tailrace status` takes a shared lock for an instant.
        let mut tries = 0;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(DirLock { _file: file }),
                Err(fs::TryLockError::WouldBlock) if tries < 10 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(fs::TryLockError::WouldBlock) => return Err(StoreError::Locked { path }),
                Err(fs::TryLockError::Error(e)) => return Err(io_err(&path)(e)),
            }
        }
    }
}

impl DirLock {
    /// Whether `dir`'s lock file is still the one held (the directory was
    /// not deleted or replaced meanwhile).
    pub fn is_current(&self, dir: &Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        match (fs::metadata(dir.join(FILE_NAME)), self._file.metadata()) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
}

/// Whether an agent holds the lock of state directory `dir` now.
pub fn is_locked(dir: &Path) -> bool {
    let Ok(lock) = OpenOptions::new().read(true).open(dir.join(FILE_NAME)) else {
        return false;
    };
    matches!(lock.try_lock_shared(), Err(fs::TryLockError::WouldBlock))
}
