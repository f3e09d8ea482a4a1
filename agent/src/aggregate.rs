//! Aggregate mode: event-time tumbling windows per client, shipped as partials.
//!
//! Each parsed line lands in the window its own timestamp falls in (windows
//! are aligned to the epoch), in the group of its client address. The
//! *watermark* is the latest event time seen; a window is emitted once the
//! watermark minus `allowed_lateness` passes its end. When the files go quiet,
//! the wall-clock time since the last line is added to the watermark, so the
//! last windows still close; a backfill of old logs is not closed early by
//! the wall clock, because only *idle* time counts.
//!
//! A line for a window that was already emitted is not dropped: it goes into
//! a *late* partial for that window, emitted a little later and merged
//! downstream like any other. A line that does not parse is counted, with a
//! sample, in the window the watermark is in.
//!
//! Each window places a ledger hold at its first line from each file, and its
//! records carry those holds until Kinesis acknowledges them, so a checkpoint
//! never passes a line whose window was not shipped. A crash therefore
//! re-reads and re-counts lines of the windows that were open (totals never
//! below the truth); the partials' `(host, flow, sequence)` lets the
//! consumer recognize exact replays.

use std::collections::{BTreeMap, HashMap};

use foldhash::HashMap as FastMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tailrace_logformat::{LogFormat, Parsed};
use tailrace_wire::{ClientKey, ClientStats, Partial};

use crate::checkpoint::FlowState;
use crate::config::Flow;
use crate::ledger::{Hold, Ledger, SourceId};
use crate::record::{KeyMaker, OutRecord, RecordSender};
use crate::stats::FlowStats;
use crate::watcher::{LineSink, SinkClosed};

/// How long a late partial collects stragglers before it is sent.
const LATE_LINGER: Duration = Duration::from_secs(5);
/// Distinct overflow clients counted per window; past this, `overflow_clients`
/// is a lower bound (the requests are all still counted).
const MAX_OVERFLOW_TRACKED: usize = 1 << 16;
/// Reject samples kept per window.
const MAX_SAMPLES: usize = 3;
/// Longest reject sample, in bytes.
const MAX_SAMPLE_BYTES: usize = 512;

/// Per-flow record sequence numbers, shared with the checkpointer.
///
/// The checkpoint stores, per flow, the lowest sequence number not yet
/// acknowledged, so partials rebuilt after a crash reuse the numbers of the
/// ones they replace.
#[derive(Clone, Default)]
pub struct Sequences {
    inner: Arc<Mutex<SeqInner>>,
}

#[derive(Default)]
struct SeqInner {
    flows: HashMap<String, SeqFlow>,
    version: u64,
}

#[derive(Default)]
struct SeqFlow {
    next: u64,
    in_flight: BTreeMap<u64, ()>,
}

impl Sequences {
    /// Start from the checkpointed per-flow state.
    pub fn new(state: &BTreeMap<String, FlowState>) -> Sequences {
        let s = Sequences::default();
        {
            let mut inner = s.lock();
            for (flow, st) in state {
                inner.flows.insert(
                    flow.clone(),
                    SeqFlow {
                        next: st.next_sequence.max(1),
                        in_flight: BTreeMap::new(),
                    },
                );
            }
        }
        s
    }

    fn lock(&self) -> MutexGuard<'_, SeqInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Make sure `flow` has an entry; returns its next sequence number.
    pub fn register(&self, flow: &str) -> u64 {
        let mut inner = self.lock();
        let f = inner.flows.entry(flow.to_string()).or_insert(SeqFlow {
            next: 1,
            in_flight: BTreeMap::new(),
        });
        f.next
    }

    /// Sequence numbers `from..to` were put in flight.
    pub fn sent(&self, flow: &str, from: u64, to: u64) {
        let mut inner = self.lock();
        if let Some(f) = inner.flows.get_mut(flow) {
            for s in from..to {
                f.in_flight.insert(s, ());
            }
            f.next = f.next.max(to);
        }
        inner.version += 1;
    }

    /// Sequence number `seq` was acknowledged.
    pub fn acked(&self, flow: &str, seq: u64) {
        let mut inner = self.lock();
        if let Some(f) = inner.flows.get_mut(flow) {
            f.in_flight.remove(&seq);
        }
        inner.version += 1;
    }

    /// Change counter.
    pub fn version(&self) -> u64 {
        self.lock().version
    }

    /// What to checkpoint per flow.
    pub fn snapshot(&self) -> BTreeMap<String, FlowState> {
        self.lock()
            .flows
            .iter()
            .map(|(name, f)| {
                let next = f.in_flight.keys().next().copied().unwrap_or(f.next);
                (
                    name.clone(),
                    FlowState {
                        next_sequence: next,
                    },
                )
            })
            .collect()
    }
}

/// One window being filled.
#[derive(Default)]
struct Window {
    /// Keyed by the client's text as written: looking a line's client up
    /// costs one hash of a few bytes, with no address parsing; keys become
    /// [`ClientKey`]s (and equal addresses written differently merge) once,
    /// at emission. foldhash: the keys come from outside, and SipHash was a
    /// measurable share of the per-line cost.
    groups: FastMap<Box<[u8]>, ClientStats>,
    /// Hashes of the distinct clients folded into `overflow` (bounded).
    overflow_seen: foldhash::HashSet<u64>,
    overflow: ClientStats,
    overflow_clients: u64,
    rejected: u64,
    samples: Vec<String>,
    holds: Vec<Hold>,
    created: Option<Instant>,
}

impl Window {
    fn hold(&mut self, ledger: &Ledger, source: SourceId, offset: u64) {
        if !self.holds.iter().any(|h| h.source == source) {
            let hold = Hold { source, offset };
            ledger.hold(&[hold]);
            self.holds.push(hold);
        }
    }

    /// Count a line that did not parse; keep it as a sample (formatted
    /// only then: a flood of bad lines costs a counter each).
    fn reject(&mut self, line: &[u8], error: Option<tailrace_logformat::ParseError>) {
        self.rejected += 1;
        if self.samples.len() < MAX_SAMPLES {
            let why = error.map_or_else(|| "no time in line".to_string(), |e| e.to_string());
            let cut = &line[..line
                .len()
                .min(MAX_SAMPLE_BYTES.saturating_sub(why.len() + 2))];
            self.samples
                .push(format!("{why}: {}", String::from_utf8_lossy(cut)));
        }
    }
}

/// The aggregate-mode sink. Lives on its flow's reader thread.
pub struct WindowSink {
    format: LogFormat,
    parsed: Parsed,
    client_field: Option<usize>,
    trusted_proxies: usize,
    window_secs: i64,
    lateness_secs: i64,
    max_groups: usize,
    max_record_bytes: usize,
    header: Partial,
    open: BTreeMap<i64, Window>,
    late: BTreeMap<i64, Window>,
    /// Windows starting before this were emitted.
    emitted_before: i64,
    /// Latest event time seen (unix seconds).
    watermark: Option<i64>,
    /// When the last line arrived, as of the last tick (idle time advances
    /// the watermark); ticks read the clock, lines do not.
    last_line: Instant,
    /// Lines arrived since the last tick.
    active: bool,
    ledger: Ledger,
    out: RecordSender,
    keys: KeyMaker,
    sequences: Sequences,
    next_sequence: u64,
    stats: Arc<FlowStats>,
}

impl WindowSink {
    /// A sink for `flow`, numbering records from `next_sequence`.
    pub fn new(
        flow: &Flow,
        out: RecordSender,
        keys: KeyMaker,
        host_id: &str,
        stats: Arc<FlowStats>,
        next_sequence: u64,
        sequences: Sequences,
    ) -> WindowSink {
        let c = &flow.config;
        WindowSink {
            format: flow.format.clone(),
            parsed: Parsed::new(),
            client_field: flow.client_field,
            trusted_proxies: c.trusted_proxies.max(1) as usize,
            window_secs: c.window.value.as_secs() as i64,
            lateness_secs: c.allowed_lateness.as_secs() as i64,
            max_groups: c.max_groups_per_window,
            max_record_bytes: (c.max_record_bytes as usize).saturating_sub(keys.max_len()),
            header: Partial {
                host_id: host_id.to_string(),
                service: flow.service().to_string(),
                flow: flow.name().to_string(),
                window_secs: c.window.value.as_secs() as u32,
                ..Partial::default()
            },
            open: BTreeMap::new(),
            late: BTreeMap::new(),
            emitted_before: i64::MIN,
            watermark: None,
            last_line: Instant::now(),
            active: false,
            ledger: out.ledger().clone(),
            out,
            keys,
            sequences,
            next_sequence: next_sequence.max(1),
            stats,
        }
    }

    fn window_of(&self, t: i64) -> i64 {
        t.div_euclid(self.window_secs) * self.window_secs
    }

    /// The watermark with idle time added.
    fn effective_watermark(&self) -> Option<i64> {
        self.watermark
            .map(|w| w.saturating_add(self.last_line.elapsed().as_secs() as i64))
    }

    /// The window a line without a usable time is counted in.
    fn current_window(&self) -> i64 {
        let t = self.watermark.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0)
        });
        self.window_of(t)
    }

    /// The window a line with event time window `start` goes to: the open
    /// one, or the late one when that window was already emitted. A free
    /// function over the two maps so callers keep their other fields.
    fn target<'a>(
        open: &'a mut BTreeMap<i64, Window>,
        late: &'a mut BTreeMap<i64, Window>,
        emitted_before: i64,
        stats: &FlowStats,
        start: i64,
    ) -> &'a mut Window {
        let map = if start < emitted_before {
            stats.late_lines.inc();
            late
        } else {
            open
        };
        map.entry(start).or_insert_with(|| Window {
            created: Some(Instant::now()),
            ..Window::default()
        })
    }

    /// The client of the line just parsed, as written in it.
    fn client<'l>(
        parsed: &Parsed,
        client_field: Option<usize>,
        trusted_proxies: usize,
        line: &'l [u8],
    ) -> &'l [u8] {
        if let Some(idx) = client_field {
            if let Some(value) = parsed.field(line, idx) {
                if let Some(addr) = nth_from_right(value, trusted_proxies) {
                    return addr;
                }
            }
        }
        parsed.client(line).unwrap_or(b"-")
    }

    fn emit_ready(&mut self) -> Result<(), SinkClosed> {
        let Some(wm) = self.effective_watermark() else {
            return Ok(());
        };
        while let Some((&start, _)) = self.open.first_key_value() {
            if start + self.window_secs + self.lateness_secs > wm {
                break;
            }
            if let Some(w) = self.open.remove(&start) {
                self.emitted_before = self.emitted_before.max(start + self.window_secs);
                self.emit(start, w, false)?;
            }
        }
        Ok(())
    }

    fn emit(&mut self, start: i64, w: Window, late: bool) -> Result<(), SinkClosed> {
        let mut groups: FastMap<ClientKey, ClientStats> = FastMap::default();
        for (text, stats) in w.groups {
            match groups.entry(ClientKey::from_text(&text)) {
                std::collections::hash_map::Entry::Occupied(mut e) => e.get_mut().merge(&stats),
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(stats);
                }
            }
        }
        let mut partial = Partial {
            window_start: start,
            late,
            groups: groups.into_iter().collect(),
            overflow: w.overflow,
            overflow_clients: w.overflow_clients,
            rejected_lines: w.rejected,
            reject_samples: w.samples,
            ..self.header.clone()
        };
        partial.groups.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let lines = partial.total().requests + partial.rejected_lines;
        let first = self.next_sequence;
        let records = partial.encode_split(self.max_record_bytes, &mut self.next_sequence);
        self.sequences
            .sent(&self.header.flow, first, self.next_sequence);
        let n = records.len();
        for (i, data) in records.into_iter().enumerate() {
            // The window's holds were placed once; every further record needs its own.
            if i > 0 {
                self.ledger.hold(&w.holds);
            }
            let seq = first + i as u64;
            let sequences = self.sequences.clone();
            let flow = self.header.flow.clone();
            self.out.send_blocking(OutRecord {
                data,
                partition_key: self.keys.next_key(),
                holds: w.holds.clone(),
                lines: if i == 0 { lines } else { 0 },
                permit: None,
                on_ack: Some(Box::new(move || sequences.acked(&flow, seq))),
            })?;
        }
        tracing::debug!(flow = %self.header.flow, window_start = start, late, records = n, lines, "window emitted");
        Ok(())
    }
}

/// The address `n` places from the right in a comma-separated list
/// (`X-Forwarded-For: client, proxy1, proxy2`): the one the n-th trusted
/// proxy appended. With fewer entries, the left-most.
fn nth_from_right(value: &[u8], n: usize) -> Option<&[u8]> {
    let mut parts = value.rsplit(|&b| b == b',');
    let mut last = None;
    for _ in 0..n {
        match parts.next() {
            Some(p) => last = Some(p),
            None => break,
        }
    }
    let addr = last?.trim_ascii();
    (!addr.is_empty() && addr != b"-").then_some(addr)
}

impl LineSink for WindowSink {
    fn line(
        &mut self,
        source: SourceId,
        start: u64,
        line: &[u8],
        truncated: bool,
    ) -> Result<(), SinkClosed> {
        self.stats.line_read(line.len(), truncated);
        self.active = true;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let parsed = self.format.parse(line, &mut self.parsed);
        let time = match (&parsed, self.parsed.time()) {
            (Ok(()), Some(t)) => Some(t.unix_secs),
            _ => None,
        };
        let Some(t) = time else {
            self.stats.parse_rejects.inc();
            let ws = self.current_window();
            let w = Self::target(
                &mut self.open,
                &mut self.late,
                self.emitted_before,
                &self.stats,
                ws,
            );
            w.hold(&self.ledger, source, start);
            w.reject(line, parsed.err());
            return Ok(());
        };
        let client = Self::client(&self.parsed, self.client_field, self.trusted_proxies, line);
        let status = self.parsed.status();
        let bytes = self.parsed.response_bytes();
        let latency = self.parsed.duration_us();
        let ws = self.window_of(t);
        let max_groups = self.max_groups;
        let w = Self::target(
            &mut self.open,
            &mut self.late,
            self.emitted_before,
            &self.stats,
            ws,
        );
        w.hold(&self.ledger, source, start);
        if let Some(stats) = w.groups.get_mut(client) {
            stats.record(status, bytes, latency);
        } else if w.groups.len() < max_groups {
            w.groups
                .entry(client.into())
                .or_default()
                .record(status, bytes, latency);
        } else {
            w.overflow.record(status, bytes, latency);
            if w.overflow_seen.len() < MAX_OVERFLOW_TRACKED
                && w.overflow_seen.insert(xxhash_rust::xxh3::xxh3_64(client))
            {
                w.overflow_clients += 1;
            }
        }
        if self.watermark.is_none_or(|wm| t > wm) {
            self.watermark = Some(t);
            self.emit_ready()?;
        }
        Ok(())
    }

    fn tick(&mut self) -> Result<(), SinkClosed> {
        if std::mem::take(&mut self.active) {
            self.last_line = Instant::now();
        }
        self.emit_ready()?;
        let due: Vec<i64> = self
            .late
            .iter()
            .filter(|(_, w)| w.created.is_some_and(|c| c.elapsed() >= LATE_LINGER))
            .map(|(&s, _)| s)
            .collect();
        for start in due {
            if let Some(w) = self.late.remove(&start) {
                self.emit(start, w, true)?;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkClosed> {
        for (start, w) in std::mem::take(&mut self.open) {
            self.emitted_before = self.emitted_before.max(start + self.window_secs);
            self.emit(start, w, false)?;
        }
        for (start, w) in std::mem::take(&mut self.late) {
            self.emit(start, w, true)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_takes_the_trusted_hop() {
        let v = b"6.6.6.6, 203.0.113.7, 10.0.0.2";
        assert_eq!(nth_from_right(v, 1), Some(&b"10.0.0.2"[..]));
        assert_eq!(nth_from_right(v, 2), Some(&b"203.0.113.7"[..]));
        assert_eq!(nth_from_right(v, 5), Some(&b"6.6.6.6"[..]));
        assert_eq!(nth_from_right(b"-", 1), None);
    }
}
