//! Waking a flow's reader (and its keeper) on file-system events: once per
//! read pass, not once per `write(2)`.
//!
//! Apache writes each request with its own `write(2)`, and each one is an
//! inotify `IN_MODIFY` event. notify 8 (used before) subscribes every
//! watched directory to `IN_MODIFY` with no way to leave it out, so its
//! thread woke, read the event and allocated its path once per line
//! written: 68.5% of the agent's CPU at 10k lines/s (BENCHMARKS.md, "the
//! host budget"). This module uses the `inotify` crate directly, with two
//! kinds of watch in one inotify instance per flow ([`Wake`]):
//!
//! - each directory of the flow's globs, for **names only** (`IN_CREATE`,
//!   `IN_DELETE`, `IN_MOVED_FROM`, `IN_MOVED_TO`, and the directory's own
//!   deletion or move): a discovery is due;
//! - each plain file being read, `IN_MODIFY | IN_ONESHOT`: the first write
//!   after the watch is armed raises one event and removes the watch. The
//!   reader arms it again ([`Wake::arm`]) just before its next read pass,
//!   so a write during a pass raises the next event (none is missed) and
//!   all the writes between two passes cost one event.
//!
//! A file is watched through `/proc/self/fd/N`, its open descriptor: a file
//! renamed away or deleted (Apache still writing to it until its graceful
//! restart) is watched as well as one at its path, and never another file
//! that took its name. A file that cannot be watched (no `/proc`, or the
//! `fs.inotify.max_user_watches` limit reached) is still read at every
//! discovery interval, as without events.
//!
//! There is no thread: the reader waits on the inotify descriptor itself
//! ([`Wake::wait`]: `poll(2)` with its poll interval as the timeout, through
//! `rustix`'s safe wrapper), and the events of a busy file wait in the
//! kernel's queue as one event at most, whatever the reader is doing (a
//! reader blocked by Kinesis is not woken by its own files at all).
//!
//! The keeper ([`crate::read::keeper`]) looks at the flow's globs only
//! while the reader is blocked. Its wake-ups ([`keeper_wake`]) come from an
//! instance of its own that exists only while it watches: the globs'
//! directories for names *and* writes (a file it saw but could not hold is
//! looked at again when written to). While the reader runs, the keeper
//! only sleeps between its checks.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};

use crate::shared::identity::FileKey;

/// A directory's names changing (and the directory itself going away).
fn names_mask() -> WatchMask {
    WatchMask::CREATE
        | WatchMask::DELETE
        | WatchMask::MOVED_FROM
        | WatchMask::MOVED_TO
        | WatchMask::DELETE_SELF
        | WatchMask::MOVE_SELF
        | WatchMask::ONLYDIR
}

/// Events that change a directory's names.
fn names_changed(mask: EventMask) -> bool {
    mask.intersects(
        EventMask::CREATE
            | EventMask::DELETE
            | EventMask::MOVED_FROM
            | EventMask::MOVED_TO
            | EventMask::DELETE_SELF
            | EventMask::MOVE_SELF
            | EventMask::IGNORED,
    )
}

/// Room for a few hundred queued events per `read`.
const EVENT_BUFFER: usize = 16 * 1024;

/// What became of a file's watch.
#[derive(Debug, Clone)]
enum Armed {
    /// Armed: its next write raises an event.
    Yes(WatchDescriptor),
    /// It cannot be watched: read at every discovery interval only.
    Never,
}

/// One flow's file-system events: see the module documentation.
pub struct Wake {
    inotify: Inotify,
    buffer: Vec<u8>,
    /// Directories watched for names, by watch.
    dirs: HashMap<WatchDescriptor, PathBuf>,
    /// Files being read: armed or not watchable, and the last
    /// [`Wake::arm`] call that named them.
    files: HashMap<FileKey, (Armed, u64)>,
    /// Armed file watches, back to their file.
    armed: HashMap<WatchDescriptor, FileKey>,
    /// [`Wake::arm`] calls so far.
    generation: u64,
    /// A file could not be watched (said once).
    warned: bool,
}

/// What one [`Wake::wait`] saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Woken {
    /// Something happened: a file was written, or names changed.
    pub happened: bool,
    /// Names changed (or events were lost): a discovery is due.
    pub rediscover: bool,
}

impl Wake {
    /// A new inotify instance for one flow.
    pub fn new() -> io::Result<Wake> {
        Ok(Wake {
            inotify: Inotify::init()?,
            buffer: vec![0; EVENT_BUFFER],
            dirs: HashMap::new(),
            files: HashMap::new(),
            armed: HashMap::new(),
            generation: 0,
            warned: false,
        })
    }

    /// Whether `dir` is watched for names.
    pub fn watches_dir(&self, dir: &Path) -> bool {
        self.dirs.values().any(|d| d == dir)
    }

    /// Watch `dir` for names changing (files created, deleted, renamed).
    pub fn watch_dir(&mut self, dir: &Path) -> io::Result<()> {
        if self.watches_dir(dir) {
            return Ok(());
        }
        let wd = self.inotify.watches().add(dir, names_mask())?;
        self.dirs.insert(wd, dir.to_path_buf());
        Ok(())
    }

    /// Before a read pass: arm the one-shot write watch of each of `files`
    /// (the plain files being read) that is not armed (new, or its watch
    /// fired), and drop the watches of files no longer read.
    pub fn arm<'a>(&mut self, files: impl Iterator<Item = (FileKey, &'a File)>) {
        self.generation += 1;
        let generation = self.generation;
        let mut named = 0;
        for (key, file) in files {
            named += 1;
            match self.files.get_mut(&key) {
                Some(entry) => entry.1 = generation,
                None => {
                    let armed = self.add_file(file);
                    if let Armed::Yes(wd) = &armed {
                        self.armed.insert(wd.clone(), key);
                    }
                    self.files.insert(key, (armed, generation));
                }
            }
        }
        if self.files.len() == named {
            return;
        }
        let mut gone = Vec::new();
        self.files.retain(|_, (armed, seen)| {
            let keep = *seen == generation;
            if let (false, Armed::Yes(wd)) = (keep, armed) {
                gone.push(wd.clone());
            }
            keep
        });
        for wd in gone {
            self.armed.remove(&wd);
            // Already gone if it fired meanwhile (its event is ignored).
            let _ = self.inotify.watches().remove(wd);
        }
    }

    /// A one-shot write watch on the file behind `file`'s descriptor.
    fn add_file(&mut self, file: &File) -> Armed {
        let path = format!("/proc/self/fd/{}", file.as_raw_fd());
        match self
            .inotify
            .watches()
            .add(&path, WatchMask::MODIFY | WatchMask::ONESHOT)
        {
            Ok(wd) => Armed::Yes(wd),
            Err(e) => {
                if !self.warned {
                    self.warned = true;
                    tracing::warn!(error = %e, "cannot watch a file for writes (no /proc, or fs.inotify.max_user_watches reached?); it is read at every discovery interval");
                }
                Armed::Never
            }
        }
    }

    /// Wait up to `timeout` for an event (returning at once if some are
    /// queued already), and take every event queued.
    pub fn wait(&mut self, timeout: Duration) -> Woken {
        let mut woken = self.take_events();
        if !woken.happened && wait_readable(&self.inotify, timeout) {
            woken = self.take_events();
        }
        woken
    }

    /// Read every queued event without blocking.
    fn take_events(&mut self) -> Woken {
        let mut woken = Woken::default();
        loop {
            let events = match self.inotify.read_events(&mut self.buffer) {
                Ok(events) => events,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // WouldBlock: nothing more queued. Any other error: the
                // discovery interval still looks.
                Err(_) => break,
            };
            let mut any = false;
            for event in events {
                any = true;
                let mask = event.mask;
                if mask.contains(EventMask::Q_OVERFLOW) {
                    // Events were lost, fired one-shots among them: arm
                    // every file again (re-adding an armed watch only
                    // replaces its mask) and look at every name.
                    woken.happened = true;
                    woken.rediscover = true;
                    self.files.clear();
                    self.armed.clear();
                    continue;
                }
                if let Some(key) = self.armed.get(&event.wd).copied() {
                    // A one-shot fired (or the file is gone): no longer
                    // armed.
                    self.armed.remove(&event.wd);
                    self.files.remove(&key);
                    woken.happened |= mask.contains(EventMask::MODIFY);
                } else if self.dirs.contains_key(&event.wd) && names_changed(mask) {
                    woken.happened = true;
                    woken.rediscover = true;
                    if mask.intersects(
                        EventMask::IGNORED | EventMask::DELETE_SELF | EventMask::MOVE_SELF,
                    ) {
                        // The directory went away (or elsewhere): watched
                        // again when a discovery finds it at its path.
                        if let Some(dir) = self.dirs.remove(&event.wd) {
                            tracing::debug!(dir = %dir.display(), "watched directory went away");
                        }
                        let _ = self.inotify.watches().remove(event.wd.clone());
                    }
                }
            }
            if !any {
                break;
            }
        }
        woken
    }
}

/// Whether `inotify` became readable within `timeout` (false on a timeout
/// or an error: the caller's poll interval goes on).
fn wait_readable(inotify: &Inotify, timeout: Duration) -> bool {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let timeout = Timespec::try_from(timeout).unwrap_or(Timespec {
        tv_sec: 1,
        tv_nsec: 0,
    });
    let mut fds = [PollFd::new(inotify, PollFlags::IN)];
    matches!(poll(&mut fds, Some(&timeout)), Ok(n) if n > 0)
}

/// The keeper's wait ([`crate::read::keeper::Keeper::start`]'s `wake`):
/// while `watching` (the reader is away), events of the directories of
/// `patterns` (names and writes) from an inotify instance made for the
/// while; otherwise a sleep. Returns (whether an event came, whether names
/// changed).
pub fn keeper_wake(
    patterns: &[String],
    watching: Arc<AtomicBool>,
) -> impl Fn(Duration) -> (bool, bool) + Send + 'static {
    let mut dirs: Vec<PathBuf> = patterns
        .iter()
        .map(|p| crate::read::globs::base_dir(p))
        .collect();
    dirs.sort();
    dirs.dedup();
    let state = std::sync::Mutex::new(KeeperEvents {
        dirs,
        inotify: None,
    });
    move |timeout| {
        let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
        s.wait(watching.load(Ordering::Relaxed), timeout)
    }
}

/// The keeper's inotify instance, while it watches.
struct KeeperEvents {
    dirs: Vec<PathBuf>,
    inotify: Option<(Inotify, Vec<u8>)>,
}

impl KeeperEvents {
    fn wait(&mut self, watching: bool, timeout: Duration) -> (bool, bool) {
        if !watching {
            // The reader runs: nothing for the keeper to do but check,
            // every `timeout`, whether it still does.
            self.inotify = None;
            std::thread::sleep(timeout);
            return (false, false);
        }
        if self.inotify.is_none() {
            self.inotify = self.start();
        }
        let Some((inotify, buffer)) = self.inotify.as_mut() else {
            std::thread::sleep(timeout);
            return (false, false);
        };
        let (mut happened, mut renamed) = take_keeper_events(inotify, buffer);
        if !happened && wait_readable(inotify, timeout) {
            (happened, renamed) = take_keeper_events(inotify, buffer);
        }
        if renamed {
            // A watched directory may have gone: watch what is there now.
            self.inotify = None;
        }
        (happened, renamed)
    }

    /// An instance watching the directories for names and writes (none
    /// when inotify is not available: the keeper then looks on its timer).
    fn start(&self) -> Option<(Inotify, Vec<u8>)> {
        let inotify = Inotify::init().ok()?;
        for dir in &self.dirs {
            let _ = inotify.watches().add(dir, names_mask() | WatchMask::MODIFY);
        }
        Some((inotify, vec![0; EVENT_BUFFER]))
    }
}

/// Every queued event of the keeper's instance: (any, names changed).
fn take_keeper_events(inotify: &mut Inotify, buffer: &mut [u8]) -> (bool, bool) {
    let (mut happened, mut renamed) = (false, false);
    loop {
        let events = match inotify.read_events(buffer) {
            Ok(events) => events,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let mut any = false;
        for event in events {
            any = true;
            happened = true;
            renamed |= names_changed(event.mask) || event.mask.contains(EventMask::Q_OVERFLOW);
        }
        if !any {
            break;
        }
    }
    (happened, renamed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const SHORT: Duration = Duration::from_millis(200);

    /// A fresh directory for one test, removed when dropped.
    struct TestDir(PathBuf);

    impl TestDir {
        fn new(name: &str) -> TestDir {
            let d =
                std::env::temp_dir().join(format!("tailrace-wake-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).expect("test dir");
            TestDir(d)
        }

        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TestDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn key(f: &File) -> FileKey {
        FileKey::of(f).expect("key")
    }

    fn append(path: &Path, lines: usize) {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .expect("open for append");
        for _ in 0..lines {
            // One write(2) per line, as Apache writes.
            f.write_all(b"a line\n").expect("write");
        }
    }

    #[test]
    fn many_writes_to_an_armed_file_wake_once_until_armed_again() {
        let dir = TestDir::new("once");
        let path = dir.path().join("access.log");
        append(&path, 1);
        let file = File::open(&path).expect("open");
        let mut wake = Wake::new().expect("inotify");
        wake.watch_dir(dir.path()).expect("watch dir");
        wake.arm([(key(&file), &file)].into_iter());
        assert_eq!(wake.wait(Duration::ZERO), Woken::default());

        append(&path, 10_000);
        let w = wake.wait(SHORT);
        assert!(w.happened && !w.rediscover, "{w:?}");
        // Not armed again: more writes raise nothing.
        append(&path, 10_000);
        assert_eq!(wake.wait(SHORT), Woken::default());
        // Armed again (before the next pass): the next write wakes.
        wake.arm([(key(&file), &file)].into_iter());
        append(&path, 1);
        assert!(wake.wait(SHORT).happened);
        // Armed, but nothing written: nothing.
        wake.arm([(key(&file), &file)].into_iter());
        assert_eq!(wake.wait(SHORT), Woken::default());
    }

    #[test]
    fn a_file_renamed_away_or_deleted_is_still_watched_by_its_descriptor() {
        let dir = TestDir::new("renamed");
        let path = dir.path().join("access.log");
        append(&path, 1);
        let file = File::open(&path).expect("open");
        let mut writer = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("writer");
        let mut wake = Wake::new().expect("inotify");
        wake.watch_dir(dir.path()).expect("watch dir");
        std::fs::rename(&path, dir.path().join("access.log.1")).expect("rename");
        assert!(wake.wait(SHORT).rediscover);
        wake.arm([(key(&file), &file)].into_iter());
        // A new file at the path is not the one watched.
        append(&path, 1);
        let w = wake.wait(SHORT);
        assert!(w.rediscover, "created: {w:?}");
        assert_eq!(wake.wait(SHORT), Woken::default(), "its writes: nothing");
        writer.write_all(b"late line\n").expect("write");
        assert!(wake.wait(SHORT).happened, "the renamed file's write");
        std::fs::remove_file(dir.path().join("access.log.1")).expect("delete");
        assert!(wake.wait(SHORT).rediscover);
        wake.arm([(key(&file), &file)].into_iter());
        writer.write_all(b"later line\n").expect("write");
        assert!(wake.wait(SHORT).happened, "the deleted file's write");
    }

    #[test]
    fn files_no_longer_read_are_no_longer_watched() {
        let dir = TestDir::new("forgotten");
        let (a, b) = (dir.path().join("a.log"), dir.path().join("b.log"));
        append(&a, 1);
        append(&b, 1);
        let (fa, fb) = (File::open(&a).expect("a"), File::open(&b).expect("b"));
        let mut wake = Wake::new().expect("inotify");
        wake.arm([(key(&fa), &fa), (key(&fb), &fb)].into_iter());
        assert_eq!(wake.armed.len(), 2);
        wake.arm([(key(&fa), &fa)].into_iter());
        assert_eq!((wake.armed.len(), wake.files.len()), (1, 1));
        append(&b, 1);
        assert_eq!(wake.wait(SHORT), Woken::default(), "b is not read");
        append(&a, 1);
        assert!(wake.wait(SHORT).happened);
        assert!(wake.armed.is_empty(), "a's one-shot fired");
    }

    #[test]
    fn a_directory_watch_sees_names_not_writes() {
        let dir = TestDir::new("names");
        let path = dir.path().join("access.log");
        let mut wake = Wake::new().expect("inotify");
        wake.watch_dir(dir.path()).expect("watch dir");
        append(&path, 1);
        let w = wake.wait(SHORT);
        assert!(w.happened && w.rediscover, "created: {w:?}");
        append(&path, 100);
        assert_eq!(
            wake.wait(SHORT),
            Woken::default(),
            "writes of a file not armed"
        );
    }

    #[test]
    fn the_keeper_sees_names_and_writes_only_while_it_watches() {
        let dir = TestDir::new("keeper");
        let path = dir.path().join("access.log");
        let watching = Arc::new(AtomicBool::new(false));
        let wake = keeper_wake(
            &[format!("{}/access.log*", dir.path().display())],
            watching.clone(),
        );
        append(&path, 1);
        assert_eq!(wake(Duration::from_millis(10)), (false, false));
        watching.store(true, Ordering::Relaxed);
        assert_eq!(wake(Duration::from_millis(10)), (false, false));
        append(&path, 3);
        assert_eq!(wake(SHORT), (true, false), "writes");
        std::fs::rename(&path, dir.path().join("access.log.1")).expect("rename");
        assert_eq!(wake(SHORT), (true, true), "names");
        watching.store(false, Ordering::Relaxed);
        assert_eq!(wake(Duration::from_millis(10)), (false, false));
    }
}
