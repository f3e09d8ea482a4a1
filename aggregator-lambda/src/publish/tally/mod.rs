//! Client tallies: which addresses sent a window's requests, kept so the
//! notifier can name the top addresses of a flood and their counts.
//!
//! CloudWatch holds no per-client metric (one metric per address and month
//! would be the largest line of the bill, docs/COST.md), and the agents'
//! partials are gone once merged. So for every unit it publishes (window,
//! application), the handler writes down, per partial, the application's
//! top [`TOP_PER_ENTRY`] client addresses with their request counts: a
//! [`TallyEntry`]. The entries of one batch, one window and one application
//! form one [`WindowTally`], stored as one S3 object (`store`), so a
//! notification reads the objects of its application only.
//!
//! # Exact under retries
//!
//! An entry is keyed by a hash of the partial's id (host, flow, sequence,
//! content hash: the same id as the DynamoDB claims), the application and
//! the client groups it counted. A unit is published exactly once by the
//! claims (`idempotency`), so every `(partial, groups)` is written by the
//! attempt that published it; an attempt that published part of a partial
//! writes only the groups it published, and the retry that publishes the
//! rest writes those. When a crash between the publish and the claim's
//! finish makes a retry publish the same groups again (the one double
//! count of CloudWatch, docs/RELIABILITY.md), it writes an entry with the
//! same key: [`top_clients`] counts each key once, so the tallies stay exact
//! even where CloudWatch's sum does not.
//!
//! # Error bound
//!
//! An entry lists at most [`TOP_PER_ENTRY`] clients and says how many
//! requests it left out and the largest count among the left-out clients
//! (`omitted_max`). Any client's merged count is therefore low by at most
//! the sum of `omitted_max` over the entries that left something out, plus
//! the requests the agents counted without an address (their overflow
//! group, `unattributed`). Since an entry's left-out clients each have at
//! most as many requests as each of the `TOP_PER_ENTRY` listed ones,
//! `omitted_max ≤ requests / (TOP_PER_ENTRY + 1)`: the bound is below 1% of
//! the window's total (without overflow), and 0 — exact — whenever no
//! partial had more than [`TOP_PER_ENTRY`] clients of the application.

pub mod store;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use tailrace_wire::{ClientKey, Partial};

use crate::join::merge::{Contributed, PartialId, Window};

/// Clients listed per (partial, application) entry.
pub const TOP_PER_ENTRY: usize = 100;

/// The format version written in every object.
pub const VERSION: u32 = 1;

/// One partial's requests for one application, with its top clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TallyEntry {
    /// What makes the entry the same entry when a retry writes it again:
    /// xxh3 of the partial's id (host, flow, sequence, content hash), the
    /// application and the client groups counted. 64 bits: two different
    /// entries of one window and application collide with a chance of
    /// about n²/2⁶⁵ (below 10⁻¹⁰ for 10⁵ entries).
    pub key: u64,
    /// The producing host.
    pub host: String,
    /// The `Service` dimension of the partial.
    pub service: String,
    /// Every request of the application in this entry.
    pub requests: u64,
    /// The top clients, most requests first: `[address, requests]`.
    pub clients: Vec<(String, u64)>,
    /// Requests of the clients not listed (overflow excluded).
    pub omitted_requests: u64,
    /// The largest count among the clients not listed (0: none left out).
    pub omitted_max: u64,
    /// Requests the agent counted without an address (its overflow group).
    pub unattributed: u64,
}

/// The entries of one batch for one window and one application: one
/// stored object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowTally {
    /// [`VERSION`].
    pub version: u32,
    /// Window start, seconds since the epoch.
    pub window_start: i64,
    /// Window length in seconds.
    pub window_secs: u32,
    /// The application of every entry.
    pub application: String,
    /// The entries, sorted by key.
    pub entries: Vec<TallyEntry>,
}

impl WindowTally {
    /// The application's requests in this object.
    pub fn requests(&self) -> u64 {
        self.entries.iter().map(|e| e.requests).sum()
    }

    /// A digest of the entries' keys: the same entries (a retry that
    /// published the same groups) give the same object name.
    pub fn digest(&self) -> u64 {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        h.update(self.application.as_bytes());
        for e in &self.entries {
            h.update(&e.key.to_le_bytes());
        }
        h.digest()
    }
}

/// Collects the entries of a batch, by window and application.
#[derive(Debug, Default)]
pub struct TallyBuilder {
    windows: BTreeMap<(Window, String), Vec<TallyEntry>>,
}

impl TallyBuilder {
    /// An empty builder.
    pub fn new() -> TallyBuilder {
        TallyBuilder::default()
    }

    /// Add what `partial` (id `id`) contributed to the units for which
    /// `published` answers true, as merged (`contributed`).
    pub fn add(
        &mut self,
        partial: &Partial,
        id: &PartialId,
        contributed: &Contributed,
        published: impl Fn(&str) -> bool,
    ) {
        let overflow = partial.groups.len();
        // Per application slot: (requests, group index) of each group merged there.
        let mut slots: Vec<Vec<(u64, usize)>> = vec![Vec::new(); contributed.applications.len()];
        let mut unattributed = vec![0u64; contributed.applications.len()];
        for (i, &slot) in contributed.group_app.iter().enumerate() {
            let Some(list) = slots.get_mut(slot as usize) else {
                continue; // not merged in this attempt
            };
            if i == overflow {
                unattributed[slot as usize] = partial.overflow.requests;
            } else if let Some((_, stats)) = partial.groups.get(i) {
                list.push((stats.requests, i));
            }
        }
        let window = Window {
            start: partial.window_start,
            secs: partial.window_secs,
        };
        for (slot, mut list) in slots.into_iter().enumerate() {
            let application = &contributed.applications[slot];
            if !published(application) {
                continue;
            }
            let unattributed = unattributed[slot];
            let mut digest = xxhash_rust::xxh3::Xxh3::new();
            for part in [
                id.host_id.as_bytes(),
                id.flow.as_bytes(),
                application.as_bytes(),
            ] {
                digest.update(&(part.len() as u64).to_le_bytes());
                digest.update(part);
            }
            digest.update(&id.sequence.to_le_bytes());
            digest.update(&id.content.to_le_bytes());
            let mut indices: Vec<usize> = list.iter().map(|&(_, i)| i).collect();
            if unattributed > 0 {
                indices.push(overflow);
            }
            indices.sort_unstable();
            for i in &indices {
                digest.update(&(*i as u64).to_le_bytes());
            }
            let requests: u64 = list.iter().map(|&(n, _)| n).sum::<u64>() + unattributed;
            let (mut omitted_requests, mut omitted_max) = (0, 0);
            if list.len() > TOP_PER_ENTRY {
                list.select_nth_unstable_by(TOP_PER_ENTRY - 1, |a, b| b.0.cmp(&a.0));
                for &(n, _) in &list[TOP_PER_ENTRY..] {
                    omitted_requests += n;
                    omitted_max = omitted_max.max(n);
                }
                list.truncate(TOP_PER_ENTRY);
            }
            let mut clients: Vec<(String, u64)> = list
                .iter()
                .filter_map(|&(n, i)| partial.groups.get(i).map(|(k, _)| (address(k), n)))
                .collect();
            clients.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            self.windows
                .entry((window, application.to_string()))
                .or_default()
                .push(TallyEntry {
                    key: digest.digest(),
                    host: id.host_id.clone(),
                    service: partial.service.clone(),
                    requests,
                    clients,
                    omitted_requests,
                    omitted_max,
                    unattributed,
                });
        }
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }

    /// One tally per window and application, entries sorted by key.
    pub fn finish(self) -> Vec<WindowTally> {
        self.windows
            .into_iter()
            .map(|((window, application), mut entries)| {
                entries.sort_by_key(|e| e.key);
                WindowTally {
                    version: VERSION,
                    window_start: window.start,
                    window_secs: window.secs,
                    application,
                    entries,
                }
            })
            .collect()
    }
}

/// A client as the message writes it: the address (an IPv4-mapped IPv6
/// address as IPv4, as the metadata join reads it), or the name the log had.
pub fn address(key: &ClientKey) -> String {
    match key.ip() {
        Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => v6.to_string(),
        },
        Some(ip) => ip.to_string(),
        None => key.to_string(),
    }
}

/// The top clients of one application over some tallies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopClients {
    /// The top clients, most requests first (ties by address).
    pub clients: Vec<(String, u64)>,
    /// Every client's count is low by at most this much (0: exact).
    pub bound: u64,
    /// The application's requests in the tallies (each entry counted once).
    pub requests: u64,
    /// Of which the agents counted without an address.
    pub unattributed: u64,
    /// Distinct addresses listed in the entries (a lower bound of the
    /// window's clients when some were left out).
    pub distinct_clients: usize,
    /// Whether some entry left clients out (`distinct_clients` is then a
    /// lower bound).
    pub truncated: bool,
    /// Hosts whose partials are in the tallies.
    pub hosts: BTreeSet<String>,
    /// The application's requests per `Service`.
    pub per_service: BTreeMap<String, u64>,
}

/// The `n` top clients of `application` over `tallies`, every entry key
/// counted once (see the module comment).
pub fn top_clients(tallies: &[WindowTally], application: &str, n: usize) -> TopClients {
    let mut seen: HashSet<u64> = HashSet::new();
    let mut counts: HashMap<&str, u64> = HashMap::new();
    let mut top = TopClients::default();
    for e in tallies
        .iter()
        .filter(|t| t.application == application)
        .flat_map(|t| &t.entries)
    {
        if !seen.insert(e.key) {
            continue;
        }
        top.requests += e.requests;
        top.unattributed += e.unattributed;
        top.bound += e.omitted_max + e.unattributed;
        top.truncated |= e.omitted_max > 0;
        *top.per_service.entry(e.service.clone()).or_default() += e.requests;
        if !top.hosts.contains(&e.host) {
            top.hosts.insert(e.host.clone());
        }
        for (client, count) in &e.clients {
            *counts.entry(client).or_default() += count;
        }
    }
    top.distinct_clients = counts.len();
    let mut all: Vec<(&str, u64)> = counts.into_iter().collect();
    all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    top.clients = all
        .into_iter()
        .take(n)
        .map(|(c, k)| (c.to_owned(), k))
        .collect();
    top
}

/// Every application's requests over `tallies`, each entry key counted once.
pub fn application_totals(tallies: &[WindowTally]) -> BTreeMap<String, u64> {
    let mut seen: HashSet<(&str, u64)> = HashSet::new();
    let mut out: BTreeMap<String, u64> = BTreeMap::new();
    for t in tallies {
        for e in &t.entries {
            if seen.insert((&t.application, e.key)) {
                *out.entry(t.application.clone()).or_default() += e.requests;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::join::merge::Merger;
    use crate::join::metadata::Metadata;
    use tailrace_wire::ClientStats;

    fn stats(requests: u64) -> ClientStats {
        let mut s = ClientStats::default();
        for _ in 0..requests {
            s.record(Some(200), 100, Some(1000));
        }
        s
    }

    fn partial(host: &str, seq: u64, clients: &[(&str, u64)], overflow: u64) -> Partial {
        Partial {
            host_id: host.into(),
            service: "web".into(),
            flow: "f".into(),
            window_start: 600,
            window_secs: 300,
            sequence: seq,
            late: false,
            groups: clients
                .iter()
                .map(|(ip, n)| (ClientKey::from_text(ip.as_bytes()), stats(*n)))
                .collect(),
            overflow: stats(overflow),
            overflow_clients: u64::from(overflow > 0),
            rejected_lines: 0,
            reject_samples: Vec::new(),
        }
    }

    const META: &str = "ip_or_cidr,application,contact\n10.1.0.0/16,billing,b@example.com\n";

    /// Build the tallies of `partials` (one record each) as the handler does.
    fn tallies_of(partials: &[Partial], failed: &[&str]) -> Vec<WindowTally> {
        let metadata = Metadata::parse(META).metadata;
        let mut merger = Merger::new();
        let mut builder = TallyBuilder::new();
        for (i, p) in partials.iter().enumerate() {
            let id = PartialId::of(p, &p.encode());
            let c = merger
                .add_except(i, id.clone(), p, &metadata, &Default::default())
                .expect("new partial");
            builder.add(p, &id, &c, |app| !failed.contains(&app));
        }
        builder.finish()
    }

    #[test]
    fn counts_are_exact_across_hosts_and_a_repeated_write_counts_once() {
        let a = partial(
            "h1",
            1,
            &[("10.1.0.1", 50), ("192.0.2.1", 7), ("::ffff:192.0.2.2", 3)],
            0,
        );
        let b = partial("h2", 1, &[("10.1.0.1", 20), ("192.0.2.2", 9)], 4);
        let mut tallies = tallies_of(&[a.clone(), b.clone()], &[]);
        assert_eq!(tallies.len(), 2, "one object per application");
        // The same partials written again by a retry: counted once.
        tallies.extend(tallies_of(&[a, b], &[]));
        let top = top_clients(&tallies, "unknown", 10);
        assert_eq!(
            top.clients,
            vec![("192.0.2.2".to_string(), 12), ("192.0.2.1".to_string(), 7)]
        );
        assert_eq!(top.requests, 7 + 3 + 9 + 4);
        assert_eq!(top.unattributed, 4);
        assert_eq!(top.bound, 4, "only the overflow is unknown");
        assert_eq!(top.hosts.len(), 2);
        let billing = top_clients(&tallies, "billing", 10);
        assert_eq!(billing.clients, vec![("10.1.0.1".to_string(), 70)]);
        assert_eq!(billing.bound, 0);
        assert_eq!(
            application_totals(&tallies),
            BTreeMap::from([("billing".to_string(), 70), ("unknown".to_string(), 23)])
        );
    }

    #[test]
    fn a_failed_unit_is_left_out() {
        let a = partial("h1", 1, &[("10.1.0.1", 50), ("192.0.2.1", 7)], 0);
        let tallies = tallies_of(&[a], &["billing"]);
        assert_eq!(application_totals(&tallies).get("billing"), None);
        assert_eq!(application_totals(&tallies).get("unknown"), Some(&7));
    }

    #[test]
    fn a_retry_of_the_rest_adds_only_the_rest() {
        // Attempt 1 publishes unknown and fails billing; attempt 2 publishes
        // billing only (the groups of unknown are marked done).
        let p = partial("h1", 1, &[("10.1.0.1", 50), ("192.0.2.1", 7)], 0);
        let id = PartialId::of(&p, &p.encode());
        let metadata = Metadata::parse(META).metadata;
        let mut first = TallyBuilder::new();
        let c = Merger::new()
            .add_except(0, id.clone(), &p, &metadata, &Default::default())
            .expect("new");
        first.add(&p, &id, &c, |app| app != "billing");
        let done = c.settled(&Default::default(), |app| app == "billing");
        let mut second = TallyBuilder::new();
        let c2 = Merger::new()
            .add_except(0, id.clone(), &p, &metadata, &done)
            .expect("new");
        second.add(&p, &id, &c2, |_| true);
        let mut tallies = first.finish();
        tallies.extend(second.finish());
        assert_eq!(
            application_totals(&tallies),
            BTreeMap::from([("billing".to_string(), 50), ("unknown".to_string(), 7)])
        );
    }

    #[test]
    fn many_clients_keep_the_error_below_one_percent() {
        // 3 hosts, 300 clients each; client i sends i+1 requests on every host.
        let owned: Vec<(String, u64)> = (0..300u64)
            .map(|i| (format!("192.0.{}.{}", i / 200, i % 200), i + 1))
            .collect();
        let clients: Vec<(&str, u64)> = owned.iter().map(|(a, n)| (a.as_str(), *n)).collect();
        let partials: Vec<Partial> = (0..3)
            .map(|h| partial(&format!("h{h}"), 1, &clients, 0))
            .collect();
        let tallies = tallies_of(&partials, &[]);
        let top = top_clients(&tallies, "unknown", 10);
        let total: u64 = 3 * (1..=300u64).sum::<u64>();
        assert_eq!(top.requests, total);
        assert!(top.truncated);
        assert!(
            top.bound > 0 && top.bound * 100 < total,
            "{} of {total}",
            top.bound
        );
        // The true top 10 are clients 299..290, each 3 * (i + 1).
        for (rank, (client, count)) in top.clients.iter().enumerate() {
            let i = 299 - rank as u64;
            assert_eq!(client, &format!("192.0.{}.{}", i / 200, i % 200));
            assert_eq!(*count, 3 * (i + 1));
        }
        let entry = &tallies[0].entries[0];
        assert_eq!(entry.clients.len(), TOP_PER_ENTRY);
        assert_eq!(entry.omitted_max, 200);
        assert_eq!(entry.omitted_requests, (1..=200u64).sum::<u64>());
    }

    #[test]
    fn the_object_name_depends_on_the_entries_only() {
        let a = partial("h1", 1, &[("10.1.0.1", 5)], 0);
        let t1 = tallies_of(std::slice::from_ref(&a), &[]);
        let t2 = tallies_of(std::slice::from_ref(&a), &[]);
        assert_eq!(t1[0].digest(), t2[0].digest());
        let b = partial("h1", 2, &[("10.1.0.1", 5)], 0);
        assert_ne!(t1[0].digest(), tallies_of(&[b], &[])[0].digest());
        let json = serde_json::to_string(&t1[0]).expect("serializes");
        let back: WindowTally = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, t1[0]);
    }
}
