//! While a flow's reader is blocked (Kinesis slow or down: the sink waits,
//! and with it discovery), files can be created and deleted before it looks
//! again: `rotate 0`, `rotate N` outrunning the backlog, time-named files
//! removed by cron. The [`Keeper`] is a small thread beside the reader that,
//! only while the reader has not come back for [`STALLED_AFTER`], expands
//! the flow's globs (when names change, and every [`LOOK_INTERVAL`]) and
//! opens the files the reader does not know yet. A
//! file deleted meanwhile stays readable through that descriptor; the
//! reader takes the descriptors at its next discovery and reads what they
//! hold.
//!
//! Bounds, per flow: at most [`MAX_KEPT`] descriptors (a deleted file held
//! open keeps its disk space until the reader has read it; the backlog is
//! on disk anyway, the file being the buffer). Past that, a new file is
//! only remembered by name, identity and the size last seen (looked at
//! again when it is written, at most every [`RESTAT_INTERVAL`]; at most
//! [`MAX_UNHELD`] of them, about 100 bytes each); if it is gone when the
//! reader comes back, those bytes are reported lost (at least: what was
//! written after the last look is not known).

use std::collections::HashSet;
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::shared::counters::now_ms;
use crate::shared::identity::FileKey;

/// How long the reader must be away from its loop before the keeper looks.
pub const STALLED_AFTER: Duration = Duration::from_secs(1);

/// How often the keeper looks while the reader is away, without events.
pub const LOOK_INTERVAL: Duration = Duration::from_millis(250);

/// How often, at most, files seen but not held are looked at again when
/// written to.
pub const RESTAT_INTERVAL: Duration = Duration::from_millis(20);

/// Descriptors held per flow at most: far more generations than one outage
/// of an hourly or daily rotation makes, few enough that deleted files held
/// open cannot fill a disk that `rotate N` was meant to keep free.
pub const MAX_KEPT: usize = 64;

/// Files remembered without a descriptor per flow at most.
pub const MAX_UNHELD: usize = 4096;

/// A file opened while the reader was blocked.
pub struct Kept {
    /// Where it was found.
    pub path: PathBuf,
    /// Its identity.
    pub key: FileKey,
    /// Its descriptor.
    pub file: File,
}

/// A file seen while the reader was blocked but not held (past
/// [`MAX_KEPT`]).
#[derive(Debug, Clone)]
pub struct Unheld {
    /// Where it was found.
    pub path: PathBuf,
    /// Its identity. Without a descriptor held, the inode number of a
    /// deleted file is soon given to the next new one: `born` tells them
    /// apart.
    pub key: FileKey,
    /// Its creation time, where the file system keeps one.
    pub born: Option<std::time::SystemTime>,
    /// Its size when last seen.
    pub size: u64,
}

impl Unheld {
    /// Whether `meta` is this file (not another that got its inode).
    pub fn is(&self, meta: &std::fs::Metadata) -> bool {
        use std::os::unix::fs::MetadataExt;
        meta.dev() == self.key.dev
            && meta.ino() == self.key.ino
            && (self.born.is_none() || meta.created().ok() == self.born)
            && meta.len() >= self.size
    }
}

/// What the reader and the keeper share.
#[derive(Default)]
struct Shared {
    /// Identities the reader follows (reading or deciding), published at
    /// each discovery.
    known: Mutex<HashSet<FileKey>>,
    kept: Mutex<Vec<Kept>>,
    unheld: Mutex<Vec<Unheld>>,
    /// When the reader last came back to its loop (Unix ms).
    alive_ms: AtomicU64,
    stop: AtomicBool,
}

/// How the keeper finds a flow's files.
pub struct Finder {
    /// The flow's globs.
    pub patterns: Vec<String>,
    /// File-name globs to skip.
    pub exclude: Vec<glob::Pattern>,
}

impl Finder {
    fn files(&self) -> Vec<PathBuf> {
        let mut found = Vec::new();
        for p in &self.patterns {
            crate::read::globs::expand(p, &mut found);
        }
        found.retain(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default();
            !self.exclude.iter().any(|e| e.matches(&name))
        });
        found.sort();
        found.dedup();
        found
    }
}

/// The keeper of one flow; its thread ends when this is dropped.
pub struct Keeper {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    /// The last set of identities published (its size and a hash), so an
    /// unchanged one is not published again.
    published: (usize, u64),
}

impl Keeper {
    /// Start the keeper's thread for a flow; `wake` waits for a file-system
    /// event at most its argument, and says whether one came and whether
    /// names changed.
    /// `watching` is set while the keeper watches (the reader is away), so
    /// that writes wake it only then.
    pub fn start(
        flow: &str,
        finder: Finder,
        wake: impl Fn(Duration) -> (bool, bool) + Send + 'static,
        watching: Arc<AtomicBool>,
    ) -> std::io::Result<Keeper> {
        let shared = Arc::new(Shared::default());
        shared.alive_ms.store(now_ms(), Ordering::Relaxed);
        let s = shared.clone();
        let flow = flow.to_string();
        let thread = std::thread::Builder::new()
            .name(format!("keep-{flow}"))
            .spawn(move || run(&flow, &finder, &s, wake, &watching))?;
        Ok(Keeper {
            shared,
            thread: Some(thread),
            published: (usize::MAX, 0),
        })
    }

    /// The reader is in its loop now.
    pub fn alive(&self) {
        self.shared.alive_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// The identities the reader follows now (published when changed).
    pub fn set_known(&mut self, keys: impl Iterator<Item = FileKey>) {
        let keys: HashSet<FileKey> = keys.collect();
        let digest = keys.iter().fold(0u64, |h, k| {
            h ^ k.ino.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ k.dev
        });
        if (keys.len(), digest) == self.published {
            return;
        }
        self.published = (keys.len(), digest);
        if let Ok(mut known) = self.shared.known.lock() {
            *known = keys;
        }
    }

    /// The files opened while the reader was away.
    pub fn take_kept(&self) -> Vec<Kept> {
        self.shared
            .kept
            .lock()
            .map(|mut k| std::mem::take(&mut *k))
            .unwrap_or_default()
    }

    /// The files seen but not held while the reader was away.
    pub fn take_unheld(&self) -> Vec<Unheld> {
        self.shared
            .unheld
            .lock()
            .map(|mut u| std::mem::take(&mut *u))
            .unwrap_or_default()
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(
    flow: &str,
    finder: &Finder,
    s: &Shared,
    wake: impl Fn(Duration) -> (bool, bool),
    watching: &AtomicBool,
) {
    let mut last_look = std::time::Instant::now();
    while !s.stop.load(Ordering::Relaxed) {
        let (happened, renamed) = wake(LOOK_INTERVAL);
        let away = now_ms().saturating_sub(s.alive_ms.load(Ordering::Relaxed));
        let stalled = away >= STALLED_AFTER.as_millis() as u64;
        watching.store(stalled, Ordering::Relaxed);
        if !stalled {
            continue;
        }
        if renamed || !happened || last_look.elapsed() >= LOOK_INTERVAL {
            look(flow, finder, s);
            last_look = std::time::Instant::now();
        } else {
            // Only writes: the sizes of the files not held, cheaply.
            restat(s);
            std::thread::sleep(RESTAT_INTERVAL);
        }
    }
}

/// Update the sizes of the files seen but not held that are still at the
/// path they were seen at.
fn restat(s: &Shared) {
    let Ok(mut unheld) = s.unheld.lock() else {
        return;
    };
    for u in unheld.iter_mut() {
        if let Ok(m) = std::fs::metadata(&u.path) {
            if u.is(&m) {
                u.size = m.len();
            }
        }
    }
}

/// One look while the reader is away: open what it does not know.
fn look(flow: &str, finder: &Finder, s: &Shared) {
    restat(s);
    let known = match s.known.lock() {
        Ok(k) => k.clone(),
        Err(_) => return,
    };
    for found in crate::read::names::group(&finder.files()) {
        let key = found.key;
        if known.contains(&key) {
            continue;
        }
        let path = crate::read::names::choose(&found.names, None).to_path_buf();
        let Ok(mut kept) = s.kept.lock() else { return };
        if kept.iter().any(|k| k.key == key) {
            continue;
        }
        let Ok(mut unheld) = s.unheld.lock() else {
            return;
        };
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if let Some(u) = unheld.iter_mut().find(|u| u.is(&meta)) {
            u.size = meta.len();
            continue;
        }
        let size = meta.len();
        if kept.len() < MAX_KEPT {
            match File::open(&path) {
                Ok(file) if crate::shared::identity::FileKey::of(&file).ok() == Some(key) => {
                    tracing::debug!(flow, path = %path.display(), "keeping a new file open while the reader is blocked");
                    kept.push(Kept { path, key, file });
                }
                _ => {}
            }
        } else if unheld.len() < MAX_UNHELD {
            if unheld.is_empty() {
                tracing::warn!(flow, kept = MAX_KEPT, "the reader is blocked and more new files appeared than it keeps open; a file deleted before it is read will be reported lost");
            }
            unheld.push(Unheld {
                path,
                key,
                born: meta.created().ok(),
                size,
            });
        }
    }
}
