//! Merging the partials of one batch: per (window, service, source
//! application) statistics for the metrics, per window the busiest
//! applications and top unknown clients for the operator's log line, and the
//! dedupe of partials seen twice.
//!
//! Every merged entry remembers which records (indices into the batch)
//! contributed to it, so a failed publish can be traced back to the records
//! that must be retried.
//!
//! Publishing is atomic per *unit* — one (window, source application): its
//! per-service datums and its rollup go out in one PutMetricData call (see
//! `publish`). [`SeenPartials`] (and, across environments, the DynamoDB
//! claims of `idempotency`) therefore remember, per partial, either that all
//! of it was published or which of its *client groups* were ([`GroupMask`]);
//! a partial that comes back after a partly failed publish is merged again
//! for the other groups only ([`Merger::add_except`]), so nothing is counted
//! twice. The memory is per client group, not per application, so a
//! metadata refresh between an attempt and its retry (a client moved to
//! another application) neither skips nor repeats a client's requests.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use tailrace_wire::{ClientStats, Partial};

use crate::join::metadata::{Metadata, UNKNOWN};

/// What identifies a partial on the stream: a replay carries the same id.
///
/// After a crash the agent rebuilds the windows that were not acknowledged
/// and numbers them from the lowest unacknowledged sequence number, so a
/// replay of a record that did reach the stream has the same `(host, flow,
/// sequence)`. It is a duplicate only if its content is also the same: a
/// rebuilt window may hold more lines than the record it replaces, and
/// dropping it would lose them. So the id includes a hash of the content;
/// same numbers with other content are counted (an over-count, never an
/// under-count).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartialId {
    /// The producing host (`raw` for synthetic partials).
    pub host_id: String,
    /// The host's flow (for synthetic partials: record sequence number and window).
    pub flow: String,
    /// The host's sequence number for that flow.
    pub sequence: u64,
    /// Hash of the bytes of the Kinesis record that carried it (an exact
    /// replay carries the same bytes).
    pub content: u64,
}

impl PartialId {
    /// The id of `partial`, decoded from the record data `record`.
    pub fn of(partial: &Partial, record: &[u8]) -> PartialId {
        PartialId {
            host_id: partial.host_id.clone(),
            flow: partial.flow.clone(),
            sequence: partial.sequence,
            content: xxhash_rust::xxh3::xxh3_64(record),
        }
    }
}

/// A window: start (Unix seconds) and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Window {
    /// Start, Unix seconds.
    pub start: i64,
    /// Length in seconds.
    pub secs: u32,
}

/// The key of one set of metrics.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MetricKey {
    /// The window.
    pub window: Window,
    /// `Service` dimension.
    pub service: Arc<str>,
    /// `SourceApplication` dimension.
    pub application: Arc<str>,
}

/// Merged statistics of one key and the records behind them.
#[derive(Debug, Clone, Default)]
pub struct MetricEntry {
    /// Sum of all contributing statistics.
    pub stats: ClientStats,
    /// Indices (in the batch) of the records that contributed.
    pub contributors: BTreeSet<usize>,
}

/// Totals of one application in one window, for the log line.
#[derive(Debug, Clone, Default)]
pub struct AppTotals {
    /// Whom to call.
    pub contact: Arc<str>,
    /// Requests.
    pub requests: u64,
    /// Bytes.
    pub bytes: u64,
    /// 4xx responses.
    pub client_errors: u64,
    /// 5xx responses.
    pub server_errors: u64,
}

/// Requests and bytes of one client address.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientTotals {
    /// Requests.
    pub requests: u64,
    /// Bytes.
    pub bytes: u64,
}

/// What one window looked like in this batch, for the operator's log line.
#[derive(Debug, Clone, Default)]
pub struct WindowReport {
    /// Per application.
    pub applications: HashMap<Arc<str>, AppTotals>,
    /// Per client address that matched no metadata entry.
    pub unknown_clients: HashMap<String, ClientTotals>,
    /// Requests from clients the agents did not track individually
    /// (attributed to `unknown`).
    pub overflow_requests: u64,
    /// Number of such clients (sum over partials; an upper bound).
    pub overflow_clients: u64,
    /// Partials merged into this window.
    pub partials: u64,
    /// Of which late.
    pub late_partials: u64,
    /// Distinct producing hosts.
    pub hosts: HashSet<String>,
    /// Lines the agents could not parse.
    pub rejected_lines: u64,
}

/// The merge of one batch.
#[derive(Debug, Default)]
pub struct Merger {
    entries: HashMap<MetricKey, MetricEntry>,
    windows: HashMap<Window, WindowReport>,
    seen: HashSet<PartialId>,
}

impl Merger {
    /// An empty merge.
    pub fn new() -> Merger {
        Merger::default()
    }

    /// Add `partial`, decoded from record `record`, joining its clients with
    /// `metadata`. Returns `false` (and adds nothing) if a partial with the
    /// same id was already added.
    pub fn add(
        &mut self,
        record: usize,
        id: PartialId,
        partial: &Partial,
        metadata: &Metadata,
    ) -> bool {
        self.add_except(record, id, partial, metadata, &GroupMask::default())
            .is_some()
    }

    /// Like [`Merger::add`], leaving out the client groups in `published`
    /// (already published by an earlier, partly failed attempt). Returns the
    /// applications this partial contributed to (its units, with its window)
    /// and which group went to which, or `None` if a partial with the same id
    /// was already added.
    pub fn add_except(
        &mut self,
        record: usize,
        id: PartialId,
        partial: &Partial,
        metadata: &Metadata,
        published: &GroupMask,
    ) -> Option<Contributed> {
        if !self.seen.insert(id) {
            return None;
        }
        let window = Window {
            start: partial.window_start,
            secs: partial.window_secs,
        };
        let service: Arc<str> = partial.service.as_str().into();
        let report = self.windows.entry(window).or_default();
        report.partials += 1;
        report.late_partials += u64::from(partial.late);
        report.rejected_lines += partial.rejected_lines;
        if !report.hosts.contains(&partial.host_id) {
            report.hosts.insert(partial.host_id.clone());
        }

        // Sum per application first: one map update per application, not per client.
        // `slot` indexes `apps`; `group_app[i]` is the slot of group i (the
        // overflow is group `groups.len()`), NOT_MERGED if it added nothing.
        let mut per_app: HashMap<&Arc<str>, usize> = HashMap::new();
        let mut apps: Vec<(&Arc<str>, &Arc<str>, ClientStats)> = Vec::new();
        let mut group_app = vec![NOT_MERGED; partial.groups.len() + 1];
        for (i, (client, stats)) in partial.groups.iter().enumerate() {
            if published.contains(i) {
                continue;
            }
            let info = metadata.resolve(client.ip());
            let slot = *per_app.entry(&info.application).or_insert_with(|| {
                apps.push((&info.application, &info.contact, ClientStats::default()));
                apps.len() - 1
            });
            apps[slot].2.merge(stats);
            group_app[i] = slot as u32;
            if &*info.application == UNKNOWN {
                let t = report
                    .unknown_clients
                    .entry(client.to_string())
                    .or_default();
                t.requests = t.requests.saturating_add(stats.requests);
                t.bytes = t.bytes.saturating_add(stats.bytes);
            }
        }
        let overflow = partial.groups.len();
        if !partial.overflow.is_empty() && !published.contains(overflow) {
            let info = metadata.unknown();
            let slot = *per_app.entry(&info.application).or_insert_with(|| {
                apps.push((&info.application, &info.contact, ClientStats::default()));
                apps.len() - 1
            });
            apps[slot].2.merge(&partial.overflow);
            group_app[overflow] = slot as u32;
            report.overflow_requests = report
                .overflow_requests
                .saturating_add(partial.overflow.requests);
            report.overflow_clients = report
                .overflow_clients
                .saturating_add(partial.overflow_clients);
        }

        let mut applications = Vec::with_capacity(apps.len());
        for (application, contact, stats) in apps {
            applications.push(application.clone());
            let totals = report
                .applications
                .entry(application.clone())
                .or_insert_with(|| AppTotals {
                    contact: contact.clone(),
                    ..AppTotals::default()
                });
            totals.requests = totals.requests.saturating_add(stats.requests);
            totals.bytes = totals.bytes.saturating_add(stats.bytes);
            totals.client_errors = totals.client_errors.saturating_add(stats.client_errors());
            totals.server_errors = totals.server_errors.saturating_add(stats.server_errors());

            let entry = self
                .entries
                .entry(MetricKey {
                    window,
                    service: service.clone(),
                    application: application.clone(),
                })
                .or_default();
            entry.stats.merge(&stats);
            entry.contributors.insert(record);
        }
        Some(Contributed {
            applications,
            group_app,
        })
    }

    /// The merged entries, sorted by key.
    pub fn entries(&self) -> Vec<(&MetricKey, &MetricEntry)> {
        let mut v: Vec<_> = self.entries.iter().collect();
        v.sort_by(|a, b| a.0.cmp(b.0));
        v
    }

    /// The window reports, sorted by window.
    pub fn windows(&self) -> Vec<(Window, &WindowReport)> {
        let mut v: Vec<_> = self.windows.iter().map(|(w, r)| (*w, r)).collect();
        v.sort_by_key(|(w, _)| *w);
        v
    }

    /// Whether nothing was merged.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl WindowReport {
    /// The `n` applications with the most requests (ties by name).
    pub fn top_applications(&self, n: usize) -> Vec<(&str, &AppTotals)> {
        let mut v: Vec<_> = self.applications.iter().map(|(a, t)| (&**a, t)).collect();
        v.sort_by(|a, b| b.1.requests.cmp(&a.1.requests).then(a.0.cmp(b.0)));
        v.truncate(n);
        v
    }

    /// The `n` unknown client addresses with the most requests (ties by address).
    pub fn top_unknown_clients(&self, n: usize) -> Vec<(&str, ClientTotals)> {
        let mut v: Vec<_> = self
            .unknown_clients
            .iter()
            .map(|(c, t)| (c.as_str(), *t))
            .collect();
        v.sort_by(|a, b| b.1.requests.cmp(&a.1.requests).then(a.0.cmp(b.0)));
        v.truncate(n);
        v
    }

    /// Total requests in this window (this batch).
    pub fn requests(&self) -> u64 {
        self.applications.values().map(|a| a.requests).sum()
    }
}

/// `Contributed::group_app` of a group that added nothing (already
/// published, or an empty overflow).
pub const NOT_MERGED: u32 = u32::MAX;

/// What one partial added to a merge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contributed {
    /// The applications it added to (its units, with its window).
    pub applications: Vec<Arc<str>>,
    /// Per client group (the overflow last): the index in `applications` it
    /// went to, or [`NOT_MERGED`].
    pub group_app: Vec<u32>,
}

impl Contributed {
    /// The groups published once the units of the applications for which
    /// `failed` answers true are left out: `before` plus every group merged
    /// into a unit that did not fail, plus groups that added nothing.
    pub fn settled(&self, before: &GroupMask, failed: impl Fn(&str) -> bool) -> GroupMask {
        let mut done = before.clone();
        for (i, &slot) in self.group_app.iter().enumerate() {
            let ok = match self.applications.get(slot as usize) {
                Some(app) => !failed(app),
                None => true,
            };
            if ok {
                done.insert(i);
            }
        }
        done
    }

    /// Number of groups, the overflow included.
    pub fn groups(&self) -> usize {
        self.group_app.len()
    }
}

/// Which client groups of a partial were published: bit `i` for
/// `groups[i]`, bit `groups.len()` for the overflow. Kept as bytes (bit `i`
/// is bit `i % 8` of byte `i / 8`), which is also how the DynamoDB claim
/// stores it: a partial of n groups costs n/8 bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupMask(Vec<u8>);

impl GroupMask {
    /// A mask from its stored bytes.
    pub fn from_bytes(bytes: Vec<u8>) -> GroupMask {
        GroupMask(bytes)
    }

    /// The stored bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Whether group `i` was published.
    pub fn contains(&self, i: usize) -> bool {
        self.0.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0)
    }

    /// Mark group `i` published.
    pub fn insert(&mut self, i: usize) {
        if self.0.len() <= i / 8 {
            self.0.resize(i / 8 + 1, 0);
        }
        self.0[i / 8] |= 1 << (i % 8);
    }

    /// Whether no group is marked.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|&b| b == 0)
    }

    /// Whether all of groups `0..n` are marked.
    pub fn is_full(&self, n: usize) -> bool {
        (0..n).all(|i| self.contains(i))
    }
}

/// How much of a partial was published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// All of it: a replay is skipped.
    Complete,
    /// These client groups were published; the others failed and are
    /// published when it comes back.
    Partly(GroupMask),
}

/// A bounded memory of partial ids already published, kept across batches
/// by a long-lived handler (a warm Lambda, the local consumer), so replays of
/// records that were already counted are not counted again, in whole or in
/// part. Oldest ids are forgotten first.
#[derive(Debug)]
pub struct SeenPartials {
    capacity: usize,
    map: HashMap<PartialId, Progress>,
    order: VecDeque<PartialId>,
}

impl SeenPartials {
    /// A memory of at most `capacity` ids.
    pub fn new(capacity: usize) -> SeenPartials {
        SeenPartials {
            capacity,
            map: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Whether `id` was remembered as completely published.
    pub fn contains(&self, id: &PartialId) -> bool {
        matches!(self.map.get(id), Some(Progress::Complete))
    }

    /// What is known of `id`.
    pub fn progress(&self, id: &PartialId) -> Option<&Progress> {
        self.map.get(id)
    }

    /// Remember `id` as completely published, forgetting the oldest if full.
    pub fn insert(&mut self, id: PartialId) {
        self.set(id, Progress::Complete);
    }

    /// Remember how much of `id` was published (replacing what was known).
    pub fn set(&mut self, id: PartialId, progress: Progress) {
        if self.capacity == 0 {
            return;
        }
        if let Some(known) = self.map.get_mut(&id) {
            *known = progress;
            return;
        }
        while self.order.len() >= self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
        self.map.insert(id.clone(), progress);
        self.order.push_back(id);
    }

    /// Number of ids remembered.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tailrace_wire::ClientKey;

    fn partial(host: &str, seq: u64, service: &str, clients: &[([u8; 4], u64)]) -> Partial {
        let groups = clients
            .iter()
            .map(|&(ip, n)| {
                let mut s = ClientStats::default();
                for i in 0..n {
                    s.record(Some(if i % 2 == 0 { 200 } else { 404 }), 10, Some(100));
                }
                (ClientKey::V4(ip), s)
            })
            .collect();
        Partial {
            host_id: host.into(),
            service: service.into(),
            flow: "access".into(),
            window_start: 1_700_000_100,
            window_secs: 300,
            sequence: seq,
            groups,
            ..Partial::default()
        }
    }

    fn metadata() -> Metadata {
        Metadata::parse(
            "ip_or_cidr,application,contact\n10.0.0.0/8,corp,corp@x\n10.1.0.0/16,shop,shop@x\n",
        )
        .metadata
    }

    #[test]
    fn merges_per_application_and_dedupes() {
        let m = metadata();
        let mut merger = Merger::new();
        let p1 = partial(
            "h1",
            1,
            "web",
            &[([10, 1, 0, 1], 3), ([10, 2, 0, 1], 2), ([8, 8, 8, 8], 1)],
        );
        let p2 = partial("h2", 1, "web", &[([10, 1, 0, 2], 4), ([9, 9, 9, 9], 5)]);
        assert!(merger.add(0, PartialId::of(&p1, b"r1"), &p1, &m));
        assert!(merger.add(1, PartialId::of(&p2, b"r2"), &p2, &m));
        assert!(
            !merger.add(2, PartialId::of(&p1, b"r1"), &p1, &m),
            "same host/flow/sequence is a replay"
        );

        let entries = merger.entries();
        let get = |app: &str| {
            entries
                .iter()
                .find(|(k, _)| &*k.application == app)
                .map(|(_, e)| *e)
                .expect("entry")
        };
        assert_eq!(get("shop").stats.requests, 7);
        assert_eq!(get("shop").contributors, BTreeSet::from([0, 1]));
        assert_eq!(get("corp").stats.requests, 2);
        assert_eq!(get("corp").contributors, BTreeSet::from([0]));
        assert_eq!(get(UNKNOWN).stats.requests, 6);
        assert_eq!(get(UNKNOWN).stats.client_errors(), 2);

        let windows = merger.windows();
        assert_eq!(windows.len(), 1);
        let report = windows[0].1;
        assert_eq!(report.requests(), 15);
        assert_eq!(report.hosts.len(), 2);
        let top = report.top_applications(2);
        assert_eq!(top[0].0, "shop");
        assert_eq!(&*top[0].1.contact, "shop@x");
        assert_eq!(top[1].0, UNKNOWN);
        let unknown = report.top_unknown_clients(10);
        assert_eq!(
            unknown[0],
            (
                "9.9.9.9",
                ClientTotals {
                    requests: 5,
                    bytes: 50
                }
            )
        );
        assert_eq!(unknown[1].0, "8.8.8.8");
    }

    #[test]
    fn overflow_is_unknown() {
        let m = metadata();
        let mut merger = Merger::new();
        let mut p = partial("h1", 1, "web", &[]);
        p.overflow.record(Some(200), 5, None);
        p.overflow_clients = 1;
        merger.add(0, PartialId::of(&p, b"r"), &p, &m);
        let entries = merger.entries();
        assert_eq!(entries.len(), 1);
        assert_eq!(&*entries[0].0.application, UNKNOWN);
        assert_eq!(merger.windows()[0].1.overflow_requests, 1);
    }

    #[test]
    fn same_sequence_with_other_content_is_not_a_duplicate() {
        let mut a = Partial {
            host_id: "h".into(),
            flow: "f".into(),
            service: "s".into(),
            window_start: 600,
            window_secs: 300,
            sequence: 9,
            ..Partial::default()
        };
        let b = a.clone();
        assert_eq!(
            PartialId::of(&a, &a.encode()),
            PartialId::of(&b, &b.encode()),
            "an exact replay is recognized"
        );
        a.rejected_lines = 1;
        assert_ne!(
            PartialId::of(&a, &a.encode()),
            PartialId::of(&b, &b.encode()),
            "a rebuilt window with more lines is not dropped"
        );
    }

    #[test]
    fn add_except_leaves_out_published_applications() {
        let m = metadata();
        let p = partial(
            "h1",
            1,
            "web",
            &[([10, 1, 0, 1], 3), ([10, 2, 0, 1], 2), ([8, 8, 8, 8], 1)],
        );
        let mut merger = Merger::new();
        // Group 0 (10.1.0.1, shop) was published.
        let mut shop_done = GroupMask::default();
        shop_done.insert(0);
        let apps = merger
            .add_except(0, PartialId::of(&p, b"r"), &p, &m, &shop_done)
            .expect("first time");
        let mut names: Vec<&str> = apps.applications.iter().map(|a| &**a).collect();
        names.sort_unstable();
        assert_eq!(names, vec!["corp", UNKNOWN]);
        let entries = merger.entries();
        assert!(entries.iter().all(|(k, _)| &*k.application != "shop"));
        assert_eq!(entries.len(), 2);
        assert!(merger
            .add_except(1, PartialId::of(&p, b"r"), &p, &m, &GroupMask::default())
            .is_none());
    }

    #[test]
    fn partly_published_becomes_complete() {
        let mut seen = SeenPartials::new(4);
        let id = PartialId {
            host_id: "h".into(),
            flow: "f".into(),
            sequence: 1,
            content: 7,
        };
        let mut one = GroupMask::default();
        one.insert(1);
        seen.set(id.clone(), Progress::Partly(one));
        assert!(!seen.contains(&id));
        assert!(
            matches!(seen.progress(&id), Some(Progress::Partly(a)) if a.contains(1) && !a.contains(0))
        );
        seen.insert(id.clone());
        assert!(seen.contains(&id));
        assert_eq!(seen.len(), 1);
    }

    #[test]
    fn seen_partials_is_bounded() {
        let mut seen = SeenPartials::new(2);
        let id = |n| PartialId {
            host_id: "h".into(),
            flow: "f".into(),
            sequence: n,
            content: 7,
        };
        seen.insert(id(1));
        seen.insert(id(2));
        seen.insert(id(2));
        assert_eq!(seen.len(), 2);
        seen.insert(id(3));
        assert!(!seen.contains(&id(1)));
        assert!(seen.contains(&id(2)) && seen.contains(&id(3)));
    }
}
