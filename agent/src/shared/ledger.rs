//! The ledger: which byte offsets are safe to checkpoint.
//!
//! Every reading of a file (a *source*: one file identity, one generation; a
//! `copytruncate` starts a new generation) has an entry. The reader moves the
//! entry's `processed` offset forward as it hands lines to a record or a
//! window; whatever holds lines that Kinesis has not yet acknowledged (a
//! record being filled or in flight, an open window) places a *hold* at the
//! offset of its first line, and releases it on acknowledgement. The offset
//! safe to checkpoint is the lowest hold, or `processed` when nothing holds.
//!
//! The ledger is shared by the reader threads and the shipper (acks) behind
//! one mutex; the data path touches it once per record or window, never per
//! line.
//!
//! It also remembers, for the checkpoint, what outlives a reading (the types
//! are [`crate::shared::positions`]'s):
//! - per flow, the files it is done with ([`Shipped`]: first bytes and how
//!   far they were acknowledged), so a copy or a rename of one of them found
//!   later, by this reading or after a restart or a reload, is recognized and
//!   not read again; and how far back its rotations were all looked at
//!   ([`FlowMemory::looked_ms`]);
//! - the positions of flows that a reload or a restart removed
//!   ([`Retired`]): positions belong to a file, not to a flow's name, so a
//!   flow added back, renamed, or given a wider glob resumes from them.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::shared::identity::{FileKey, Fingerprint};
use crate::shared::positions::{add_retired, FlowMemory, Position, Retired, Shipped, RETIRED_FOR};

/// Identifies one reading of one file generation for the life of the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceId(pub u64);

/// A hold on a source at an offset, released when its record is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hold {
    /// The source held.
    pub source: SourceId,
    /// The first byte not yet acknowledged.
    pub offset: u64,
}

/// What the ledger knows of one source.
#[derive(Debug, Clone)]
pub struct SourceEntry {
    /// The flow reading it.
    pub flow: String,
    /// Device + inode.
    pub key: FileKey,
    /// Fingerprint of the first bytes (as far as known).
    pub fingerprint: Fingerprint,
    /// Last path it was seen at.
    pub path: PathBuf,
    /// The file's own path when `path` reaches it through a symbolic link.
    pub target: Option<PathBuf>,
    /// Offset through which lines were handed to a record or a window.
    pub processed: u64,
    /// Recent processed offsets with the bytes just before each (a
    /// fingerprint of up to 32 bytes), newest last: a checkpoint at one of
    /// them carries it, so a restart can tell a file cut and written again
    /// while the agent was down.
    marks: VecDeque<(u64, Fingerprint)>,
    /// Offsets held by unacknowledged records and open windows, with counts.
    holds: BTreeMap<u64, u32>,
    /// The reader closed it (rotated away and drained, or deleted).
    pub closed: bool,
    /// A newer generation of the same file exists (after truncation).
    pub superseded: bool,
    /// This file is a `copytruncate` copy of that source's bytes, at the
    /// same offsets: while that source still holds unacknowledged lines,
    /// this one's checkpoint must not pass them.
    same_bytes_as: Option<SourceId>,
}

impl SourceEntry {
    /// The offset safe to resume from after a crash.
    pub fn checkpoint_offset(&self) -> u64 {
        self.holds
            .keys()
            .next()
            .map_or(self.processed, |&h| h.min(self.processed))
    }

    /// Whether unacknowledged data still depends on this source.
    pub fn is_held(&self) -> bool {
        !self.holds.is_empty()
    }
}

/// How many recent processed offsets a source keeps the tail of.
const MARKS_KEPT: usize = 16;

#[derive(Default)]
struct Inner {
    next_id: u64,
    sources: HashMap<SourceId, SourceEntry>,
    /// Per flow: what outlives its readings.
    memory: HashMap<String, FlowMemory>,
    /// Positions of removed flows.
    retired: Vec<Retired>,
    /// Bumped on every change, so the checkpointer can skip idle writes.
    version: u64,
}

/// Shared, cheaply cloneable handle to the ledger.
#[derive(Clone, Default)]
pub struct Ledger {
    inner: Arc<Mutex<Inner>>,
}

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Ledger {
        Ledger::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves counts that are still
        // consistent (each operation is a single map update), so recover.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Register a new source starting at `offset`.
    pub fn open(
        &self,
        flow: &str,
        key: FileKey,
        fingerprint: Fingerprint,
        path: PathBuf,
        offset: u64,
    ) -> SourceId {
        let mut inner = self.lock();
        inner.next_id += 1;
        let id = SourceId(inner.next_id);
        for e in inner.sources.values_mut() {
            if e.key == key && e.flow == flow {
                e.superseded = true;
            }
        }
        inner.sources.insert(
            id,
            SourceEntry {
                flow: flow.to_string(),
                key,
                fingerprint,
                path,
                target: None,
                processed: offset,
                marks: VecDeque::new(),
                holds: BTreeMap::new(),
                closed: false,
                superseded: false,
                same_bytes_as: None,
            },
        );
        inner.version += 1;
        id
    }

    /// The reader handed everything before `offset` to a record or window.
    pub fn set_processed(&self, id: SourceId, offset: u64) {
        let mut inner = self.lock();
        if let Some(e) = inner.sources.get_mut(&id) {
            if e.processed != offset {
                e.processed = offset;
                inner.version += 1;
            }
        }
    }

    /// [`Ledger::set_processed`], with `tail` the bytes just before
    /// `offset` (see [`Position::tail`]).
    pub fn set_processed_at(&self, id: SourceId, offset: u64, tail: Option<Fingerprint>) {
        let mut inner = self.lock();
        if let Some(e) = inner.sources.get_mut(&id) {
            if let Some(t) = tail {
                if e.marks.back().is_none_or(|m| m.0 != offset) {
                    if e.marks.len() >= MARKS_KEPT {
                        e.marks.pop_front();
                    }
                    e.marks.push_back((offset, t));
                }
            }
            if e.processed != offset {
                e.processed = offset;
                inner.version += 1;
            }
        }
    }

    /// Update what is known of a source (its fingerprint grew, it was renamed).
    pub fn update(&self, id: SourceId, fingerprint: Fingerprint, path: Option<PathBuf>) {
        let mut inner = self.lock();
        if let Some(e) = inner.sources.get_mut(&id) {
            e.fingerprint = fingerprint;
            if let Some(p) = path {
                e.path = p;
            }
            inner.version += 1;
        }
    }

    /// `id`'s file is reached through a symbolic link; this is its own path.
    pub fn set_target(&self, id: SourceId, target: Option<PathBuf>) {
        let mut inner = self.lock();
        if let Some(e) = inner.sources.get_mut(&id) {
            e.target = target;
            inner.version += 1;
        }
    }

    /// Record that `copy` holds the same bytes as `original` (a
    /// `copytruncate` copy).
    pub fn same_bytes_as(&self, copy: SourceId, original: SourceId) {
        let mut inner = self.lock();
        if let Some(e) = inner.sources.get_mut(&copy) {
            e.same_bytes_as = Some(original);
        }
        inner.version += 1;
    }

    /// Place holds.
    pub fn hold(&self, holds: &[Hold]) {
        let mut inner = self.lock();
        for h in holds {
            if let Some(e) = inner.sources.get_mut(&h.source) {
                *e.holds.entry(h.offset).or_insert(0) += 1;
            }
        }
    }

    /// Release holds placed earlier (their records were acknowledged).
    pub fn release(&self, holds: &[Hold]) {
        let mut inner = self.lock();
        for h in holds {
            if let Some(e) = inner.sources.get_mut(&h.source) {
                if let Some(count) = e.holds.get_mut(&h.offset) {
                    *count -= 1;
                    if *count == 0 {
                        e.holds.remove(&h.offset);
                    }
                }
            }
        }
        inner.version += 1;
    }

    /// The reader is done with a source; it is forgotten once nothing holds it.
    pub fn close(&self, id: SourceId) {
        let mut inner = self.lock();
        if let Some(e) = inner.sources.get_mut(&id) {
            e.closed = true;
        }
        inner.version += 1;
    }

    /// Forget every source of `flow` (the flow was stopped by a reload:
    /// removed, or about to start again from the positions taken before).
    /// Acknowledgements still arriving for its records change nothing.
    pub fn forget_flow(&self, flow: &str) {
        let mut inner = self.lock();
        inner.sources.retain(|_, e| e.flow != flow);
        inner.version += 1;
    }

    /// `flow` was removed: its positions (and what it remembers) are kept as
    /// retired, for a flow that reads the same files later, and its sources
    /// are forgotten.
    pub fn retire_flow(&self, flow: &str, now_ms: u64) {
        let positions: Vec<Position> = self
            .positions()
            .into_iter()
            .filter(|p| p.flow == flow)
            .collect();
        let mut inner = self.lock();
        inner.sources.retain(|_, e| e.flow != flow);
        let retired: Vec<Retired> = positions
            .into_iter()
            .map(|position| Retired {
                position,
                retired_ms: now_ms,
            })
            .collect();
        add_retired(&mut inner.retired, retired);
        inner.version += 1;
    }

    /// Keep `positions` (of flows no longer configured, found in the
    /// checkpoint at the agent's start) as retired.
    pub fn restore_retired(&self, retired: Vec<Retired>) {
        let mut inner = self.lock();
        add_retired(&mut inner.retired, retired);
        inner.version += 1;
    }

    /// Give `flow` the retired positions `wanted` says are its files now
    /// (they are removed from the retired ones), under the removed flow's
    /// name. A flow whose positions are taken also hands over what it
    /// remembered.
    pub fn claim_retired(&self, flow: &str, wanted: impl Fn(&Position) -> bool) -> Vec<Position> {
        let mut inner = self.lock();
        let (taken, kept): (Vec<Retired>, Vec<Retired>) = std::mem::take(&mut inner.retired)
            .into_iter()
            .partition(|r| wanted(&r.position));
        inner.retired = kept;
        let mut from: Vec<String> = taken.iter().map(|r| r.position.flow.clone()).collect();
        from.sort();
        from.dedup();
        for old in from {
            let Some(old_memory) = inner.memory.get(&old).cloned() else {
                continue;
            };
            let memory = inner.memory.entry(flow.to_string()).or_default();
            for s in old_memory.shipped {
                memory.remember(s);
            }
            // Rotations since the removed flow last looked are looked at.
            memory.looked_ms = match (memory.looked_ms, old_memory.looked_ms) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        if !taken.is_empty() {
            inner.version += 1;
        }
        taken.into_iter().map(|r| r.position).collect()
    }

    /// The retired positions, without those older than [`RETIRED_FOR`].
    pub fn retired(&self, now_ms: u64) -> Vec<Retired> {
        let mut inner = self.lock();
        let horizon = now_ms.saturating_sub(RETIRED_FOR.as_millis() as u64);
        inner.retired.retain(|r| r.retired_ms >= horizon);
        inner.retired.clone()
    }

    /// What `flow` remembers (see [`FlowMemory`]).
    pub fn memory(&self, flow: &str) -> FlowMemory {
        self.lock().memory.get(flow).cloned().unwrap_or_default()
    }

    /// What every flow remembers.
    pub fn memories(&self) -> HashMap<String, FlowMemory> {
        self.lock().memory.clone()
    }

    /// Start `flow` from what the checkpoint remembered of it.
    pub fn restore_memory(&self, flow: &str, memory: FlowMemory) {
        self.lock().memory.insert(flow.to_string(), memory);
    }

    /// `flow` is done with a file whose first bytes are `fingerprint`,
    /// acknowledged through `offset` (the reader closed it and nothing of
    /// it is unacknowledged).
    pub fn shipped(&self, flow: &str, fingerprint: Fingerprint, offset: u64) {
        let mut inner = self.lock();
        inner
            .memory
            .entry(flow.to_string())
            .or_default()
            .remember(Shipped {
                fingerprint,
                offset,
            });
        inner.version += 1;
    }

    /// Every rotation of `flow`'s files modified before `at_ms` (Unix ms)
    /// was looked at. Saved with the next checkpoint that is written
    /// anyway: not a change by itself, or an idle agent would write its
    /// checkpoint at every look.
    pub fn looked(&self, flow: &str, at_ms: u64) {
        self.lock()
            .memory
            .entry(flow.to_string())
            .or_default()
            .looked_ms = Some(at_ms);
    }

    /// A copy of one entry.
    pub fn entry(&self, id: SourceId) -> Option<SourceEntry> {
        self.lock().sources.get(&id).cloned()
    }

    /// Total holds outstanding (records or windows not yet acknowledged).
    pub fn outstanding(&self) -> usize {
        self.lock()
            .sources
            .values()
            .map(|e| e.holds.values().map(|&c| c as usize).sum::<usize>())
            .sum()
    }

    /// Change counter: equal values mean nothing changed in between.
    pub fn version(&self) -> u64 {
        self.lock().version
    }

    /// Positions to checkpoint now, one per (flow, file), dropping closed
    /// sources that nothing holds any more. (The tailer closes only files
    /// that left the flow's globs or were deleted, once drained; a held one
    /// stays, so a crash re-reads what was not acknowledged.)
    pub fn positions(&self) -> Vec<Position> {
        let mut inner = self.lock();
        // A closed copy stays while its original holds unacknowledged lines:
        // after a crash those lines exist only in the copy.
        let held: std::collections::HashSet<SourceId> = inner
            .sources
            .iter()
            .filter(|(_, e)| e.is_held())
            .map(|(id, _)| *id)
            .collect();
        let done: Vec<(String, Shipped)> = inner
            .sources
            .values()
            .filter(|e| {
                e.closed && !e.is_held() && !e.same_bytes_as.is_some_and(|o| held.contains(&o))
            })
            .map(|e| {
                (
                    e.flow.clone(),
                    Shipped {
                        fingerprint: e.fingerprint,
                        offset: e.processed,
                    },
                )
            })
            .collect();
        for (flow, s) in done {
            inner.memory.entry(flow).or_default().remember(s);
        }
        inner.sources.retain(|_, e| {
            !e.closed || e.is_held() || e.same_bytes_as.is_some_and(|o| held.contains(&o))
        });
        let mut best: HashMap<(String, FileKey), (SourceId, Position)> = HashMap::new();
        for (id, e) in &inner.sources {
            let mut offset = e.checkpoint_offset();
            if let Some(original) = e.same_bytes_as.and_then(|o| inner.sources.get(&o)) {
                if original.is_held() {
                    offset = offset.min(original.checkpoint_offset());
                }
            }
            let pos = Position {
                flow: e.flow.clone(),
                key: e.key,
                fingerprint: e.fingerprint,
                path: e.path.clone(),
                target: e.target.clone(),
                offset,
                tail: e.marks.iter().rev().find(|m| m.0 == offset).map(|m| m.1),
            };
            let slot = best
                .entry((e.flow.clone(), e.key))
                .or_insert((*id, pos.clone()));
            // The newest generation of a file wins.
            if *id > slot.0 {
                *slot = (*id, pos);
            }
        }
        let mut out: Vec<Position> = best.into_values().map(|(_, p)| p).collect();
        out.sort_by(|a, b| (&a.flow, a.key).cmp(&(&b.flow, b.key)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::positions::SHIPPED_KEPT;

    fn key() -> FileKey {
        FileKey { dev: 1, ino: 2 }
    }

    #[test]
    fn checkpoint_is_lowest_hold_or_processed() {
        let l = Ledger::new();
        let s = l.open("f", key(), Fingerprint::EMPTY, "/a".into(), 0);
        l.set_processed(s, 100);
        assert_eq!(l.positions()[0].offset, 100);
        let a = Hold {
            source: s,
            offset: 100,
        };
        let b = Hold {
            source: s,
            offset: 150,
        };
        l.hold(&[a]);
        l.set_processed(s, 150);
        l.hold(&[b]);
        l.set_processed(s, 200);
        assert_eq!(l.positions()[0].offset, 100);
        // acknowledged out of order: the later record first
        l.release(&[b]);
        assert_eq!(l.positions()[0].offset, 100);
        l.release(&[a]);
        assert_eq!(l.positions()[0].offset, 200);
    }

    #[test]
    fn closed_sources_vanish_once_released() {
        let l = Ledger::new();
        let s = l.open("f", key(), Fingerprint::EMPTY, "/a".into(), 0);
        let h = Hold {
            source: s,
            offset: 0,
        };
        l.hold(&[h]);
        l.close(s);
        assert_eq!(l.positions().len(), 1);
        l.release(&[h]);
        assert!(l.positions().is_empty());
    }

    #[test]
    fn a_copy_does_not_pass_the_unacknowledged_lines_of_its_original() {
        let l = Ledger::new();
        let original = l.open("f", key(), Fingerprint::EMPTY, "/a".into(), 0);
        let h = Hold {
            source: original,
            offset: 40,
        };
        l.hold(&[h]);
        l.set_processed(original, 100);
        l.close(original);
        let copy = l.open(
            "f",
            FileKey { dev: 1, ino: 3 },
            Fingerprint::EMPTY,
            "/a.1".into(),
            100,
        );
        l.same_bytes_as(copy, original);
        let at = |l: &Ledger| {
            l.positions()
                .iter()
                .find(|p| p.key.ino == 3)
                .map(|p| p.offset)
        };
        assert_eq!(
            at(&l),
            Some(40),
            "the copy resumes where the original's unacknowledged lines begin"
        );
        l.release(&[h]);
        assert_eq!(at(&l), Some(100));
    }

    #[test]
    fn a_forgotten_flow_leaves_no_positions() {
        let l = Ledger::new();
        let s = l.open("gone", key(), Fingerprint::EMPTY, "/a".into(), 0);
        l.set_processed(s, 70);
        l.hold(&[Hold {
            source: s,
            offset: 10,
        }]);
        l.open("kept", key(), Fingerprint::EMPTY, "/b".into(), 5);
        l.forget_flow("gone");
        let p = l.positions();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].flow, "kept");
    }

    #[test]
    fn a_closed_file_is_remembered_once_nothing_holds_it() {
        let l = Ledger::new();
        let fp = Fingerprint { len: 256, hash: 9 };
        let s = l.open("f", key(), fp, "/a".into(), 0);
        let h = Hold {
            source: s,
            offset: 0,
        };
        l.hold(&[h]);
        l.set_processed(s, 700);
        l.close(s);
        l.positions();
        assert!(l.memory("f").shipped.is_empty(), "still held: a position");
        l.release(&[h]);
        assert!(l.positions().is_empty());
        assert_eq!(
            l.memory("f").shipped.into_iter().collect::<Vec<_>>(),
            vec![Shipped {
                fingerprint: fp,
                offset: 700
            }]
        );
        // Bounded, the oldest forgotten, one entry per first bytes.
        for i in 0..SHIPPED_KEPT as u64 + 5 {
            l.shipped("f", Fingerprint { len: 256, hash: i }, i);
        }
        l.shipped(
            "f",
            Fingerprint {
                len: 256,
                hash: 100,
            },
            1,
        );
        let m = l.memory("f");
        assert_eq!(m.shipped.len(), SHIPPED_KEPT);
        assert_eq!(m.shipped.back().map(|s| s.offset), Some(1));
        assert!(!m.shipped.iter().any(|s| s.fingerprint.hash == 0));
    }

    #[test]
    fn a_removed_flow_leaves_its_positions_to_the_next_reader_of_its_files() {
        let l = Ledger::new();
        let fp = Fingerprint { len: 256, hash: 9 };
        let s = l.open("web", key(), fp, "/logs/access.log".into(), 0);
        l.set_processed(s, 500);
        l.shipped("web", Fingerprint { len: 256, hash: 1 }, 40);
        l.looked("web", 1_000);
        l.retire_flow("web", 77);
        assert!(l.positions().is_empty(), "no reading of it any more");
        assert_eq!(l.retired(77).len(), 1);
        let other = |p: &Position| p.path.starts_with("/other");
        assert!(l.claim_retired("x", other).is_empty());
        let taken = l.claim_retired("web-renamed", |p| p.path.starts_with("/logs"));
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].flow, "web", "under the name it had");
        assert_eq!(taken[0].offset, 500);
        assert!(l.retired(77).is_empty(), "taken once");
        let m = l.memory("web-renamed");
        assert_eq!(m.shipped.len(), 1, "what it remembered goes along");
        assert_eq!(m.looked_ms, Some(1_000));
        // Kept for a week.
        l.restore_retired(vec![Retired {
            position: taken[0].clone(),
            retired_ms: 0,
        }]);
        assert!(l.retired(RETIRED_FOR.as_millis() as u64 + 1).is_empty());
    }

    #[test]
    fn newest_generation_is_checkpointed() {
        let l = Ledger::new();
        let old = l.open("f", key(), Fingerprint::EMPTY, "/a".into(), 0);
        l.set_processed(old, 500);
        let new = l.open("f", key(), Fingerprint::EMPTY, "/a".into(), 0);
        l.set_processed(new, 10);
        let p = l.positions();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].offset, 10);
    }
}
