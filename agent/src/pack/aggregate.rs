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
//! sample, in the window the watermark is in; before any line had a time
//! (the head of a file being backfilled), such lines wait for the first one
//! that has, and join its window — or, if none comes within a few seconds,
//! are sent in the window of the wall clock.
//!
//! The wall clock bounds event time from above only: a line stamped more
//! than [`FUTURE_TOLERANCE_SECS`] ahead of it is counted as a reject ("time
//! in the future"), because one bogus timestamp would otherwise carry the
//! watermark years ahead, making every later line late and keeping that
//! window's checkpoint hold forever. The clock is read at ticks, never per
//! line, so a step of the system clock moves the bound at the next tick.
//!
//! Each window places a ledger hold at its first line from each file, and its
//! records carry those holds until Kinesis acknowledges them, so a checkpoint
//! never passes a line whose window was not shipped. A crash therefore
//! re-reads and re-counts lines of the windows that were open (totals never
//! below the truth); the partials' `(host, flow, sequence)` lets the
//! consumer recognize exact replays.

use std::collections::BTreeMap;

use foldhash::HashMap as FastMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tailrace_logformat::{LogFormat, Parsed};
use tailrace_wire::{ClientKey, ClientStats, Partial};

use crate::config::Flow;
use crate::pack::keys::KeyMaker;
use crate::shared::counters::{FlowStats, ReadTally};
use crate::shared::ledger::{Hold, Ledger, SourceId};
use crate::shared::sink::{LineSink, SinkClosed};
use crate::ship::queue::{OutRecord, RecordSender};
use crate::state::sequences::Sequences;

/// How long a late partial collects stragglers before it is sent.
const LATE_LINGER: Duration = Duration::from_secs(5);
/// Distinct overflow clients counted per window; past this, `overflow_clients`
/// is a lower bound (the requests are all still counted).
const MAX_OVERFLOW_TRACKED: usize = 1 << 16;
/// Reject samples kept per window.
const MAX_SAMPLES: usize = 3;
/// Longest reject sample, in bytes.
const MAX_SAMPLE_BYTES: usize = 512;
/// How far ahead of the wall clock a line's time may be before the line is
/// rejected as "in the future". Lines come from this host's own clock, so
/// this only needs to cover clocks of other writers (shared file systems).
pub const FUTURE_TOLERANCE_SECS: i64 = 15 * 60;

/// Now on the wall clock, in unix seconds.
fn wall_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Why a line was not counted as a request.
enum Reject {
    /// The line did not match the format.
    Parse(tailrace_logformat::ParseError),
    /// It matched, but the format has no time (or it was empty).
    NoTime,
    /// Its time (unix seconds) is too far ahead of the wall clock.
    Future(i64),
}

impl std::fmt::Display for Reject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reject::Parse(e) => e.fmt(f),
            Reject::NoTime => f.write_str("no time in line"),
            Reject::Future(t) => write!(
                f,
                "time {t} (unix seconds) is more than {FUTURE_TOLERANCE_SECS} s ahead of this host's clock"
            ),
        }
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
    /// Returns the sample when one was kept.
    fn reject(&mut self, line: &[u8], why: Reject) -> Option<&str> {
        self.rejected += 1;
        if self.samples.len() < MAX_SAMPLES {
            let why = why.to_string();
            let cut = &line[..line
                .len()
                .min(MAX_SAMPLE_BYTES.saturating_sub(why.len() + 2))];
            self.samples
                .push(format!("{why}: {}", String::from_utf8_lossy(cut)));
            return self.samples.last().map(String::as_str);
        }
        None
    }

    /// Take over the rejects and holds of `other` (the rejects seen before
    /// any line had a time); its holds stay placed and are released with
    /// this window's records.
    fn absorb(&mut self, other: Window) {
        self.rejected += other.rejected;
        let room = MAX_SAMPLES.saturating_sub(self.samples.len());
        self.samples.extend(other.samples.into_iter().take(room));
        self.holds.extend(other.holds);
    }
}

/// The aggregate-mode sink. Lives on its flow's reader thread.
pub struct WindowSink {
    format: LogFormat,
    parsed: Parsed,
    client_field: Option<usize>,
    proxy_trust: crate::config::proxies::ProxyTrust,
    window_secs: i64,
    lateness_secs: i64,
    max_groups: usize,
    max_record_bytes: usize,
    header: Partial,
    open: BTreeMap<i64, Window>,
    late: BTreeMap<i64, Window>,
    /// Rejects seen before any line had a time; they join the first timed
    /// line's window.
    prelude: Option<Window>,
    /// Lines stamped after this (unix seconds) are rejected as in the
    /// future; the wall clock plus tolerance, as of the last tick.
    future_limit: i64,
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
    /// Lines read since they were last added to `stats`.
    tally: ReadTally,
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
            proxy_trust: flow.proxy_trust.clone(),
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
            prelude: None,
            future_limit: wall_now().saturating_add(FUTURE_TOLERANCE_SECS),
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
            tally: ReadTally::default(),
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

    /// Count a line without a usable time: in the watermark's window, or,
    /// before any line had a time, in the prelude.
    fn reject(&mut self, source: SourceId, start: u64, line: &[u8], why: Reject) {
        self.stats.parse_rejects.inc();
        let w = match self.watermark {
            Some(wm) => {
                let ws = self.window_of(wm);
                Self::target(
                    &mut self.open,
                    &mut self.late,
                    self.emitted_before,
                    &self.stats,
                    ws,
                )
            }
            None => self.prelude.get_or_insert_with(|| Window {
                created: Some(Instant::now()),
                ..Window::default()
            }),
        };
        w.hold(&self.ledger, source, start);
        // The operator's log shows one of these a minute, with the count.
        if let Some(sample) = w.reject(line, why) {
            self.stats.offer_reject_sample(sample);
        }
    }

    /// Send the prelude in the wall clock's window: no line with a time
    /// came to take it.
    fn emit_prelude(&mut self) -> Result<(), SinkClosed> {
        match self.prelude.take() {
            Some(w) => self.emit(self.window_of(wall_now()), w, false),
            None => Ok(()),
        }
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
        trust: &crate::config::proxies::ProxyTrust,
        line: &'l [u8],
    ) -> &'l [u8] {
        let peer = parsed.client(line);
        match client_field {
            Some(idx) => crate::pack::client_addr::select(trust, peer, parsed.field(line, idx)),
            None => peer.unwrap_or(b"-"),
        }
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
                data: data.into(),
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

/// Each line parsed and added to its client's group in the window of its time.
impl LineSink for WindowSink {
    fn line(
        &mut self,
        source: SourceId,
        start: u64,
        line: &[u8],
        truncated: bool,
    ) -> Result<(), SinkClosed> {
        if self.tally.line(line.len(), truncated) {
            self.stats.add_read(&mut self.tally);
        }
        self.active = true;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let parsed = self.format.parse(line, &mut self.parsed);
        let t = match (parsed, self.parsed.time()) {
            (Ok(()), Some(t)) if t.unix_secs <= self.future_limit => t.unix_secs,
            (Ok(()), Some(t)) => {
                self.reject(source, start, line, Reject::Future(t.unix_secs));
                return Ok(());
            }
            (Ok(()), None) => {
                self.reject(source, start, line, Reject::NoTime);
                return Ok(());
            }
            (Err(e), _) => {
                self.reject(source, start, line, Reject::Parse(e));
                return Ok(());
            }
        };
        let client = Self::client(&self.parsed, self.client_field, &self.proxy_trust, line);
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
        if let Some(prelude) = self.prelude.take() {
            w.absorb(prelude);
        }
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
        self.stats.add_read(&mut self.tally);
        if std::mem::take(&mut self.active) {
            self.last_line = Instant::now();
        }
        self.future_limit = wall_now().saturating_add(FUTURE_TOLERANCE_SECS);
        if self
            .prelude
            .as_ref()
            .and_then(|w| w.created)
            .is_some_and(|c| c.elapsed() >= LATE_LINGER)
        {
            self.emit_prelude()?;
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
        self.stats.add_read(&mut self.tally);
        self.emit_prelude()?;
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
    use crate::shared::identity::{FileKey, Fingerprint};

    /// A sink over a one-flow config (common format, 5 min windows) and the
    /// receiving end of its queue.
    fn sink(
        name: &str,
    ) -> (
        WindowSink,
        tokio::sync::mpsc::Receiver<OutRecord>,
        SourceId,
        Ledger,
    ) {
        let dir = std::env::temp_dir().join(format!("tailrace-agg-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("tailrace.yaml");
        std::fs::write(
            &path,
            "flows:\n  - name: web\n    paths: [/var/log/a.log]\n    format: common\n    stream: s\n    mode: aggregate\n",
        )
        .expect("config written");
        let config = crate::config::Validated::load(&path).expect("config is valid");
        let flow = &config.flows[0];
        let ledger = Ledger::new();
        let source = ledger.open(
            "web",
            FileKey { dev: 1, ino: 2 },
            Fingerprint { len: 0, hash: 0 },
            "/var/log/a.log".into(),
            0,
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let (out, rx) = RecordSender::channel(1 << 20, ledger.clone(), runtime.handle().clone());
        // The runtime only serves the semaphore; keep it alive for the test.
        std::mem::forget(runtime);
        let keys = KeyMaker::new(flow.config.partition_key.clone(), "h");
        let sink = WindowSink::new(
            flow,
            out,
            keys,
            "h",
            Arc::default(),
            1,
            Sequences::default(),
        );
        (sink, rx, source, ledger)
    }

    fn partials(rx: &mut tokio::sync::mpsc::Receiver<OutRecord>) -> Vec<Partial> {
        let mut out = Vec::new();
        while let Ok(r) = rx.try_recv() {
            out.push(Partial::decode(&r.data).expect("our own partial decodes"));
        }
        out
    }

    const BAD: &[u8] = b"not an access log line";

    fn line_at(t: i64) -> String {
        let time = tailrace_logformat::LogTime {
            unix_secs: t,
            nanos: 0,
            offset_secs: 0,
        };
        let mut clf = Vec::new();
        time.write_clf(&mut clf);
        format!(
            "10.0.0.1 - - [{}] \"GET / HTTP/1.1\" 200 5",
            String::from_utf8_lossy(&clf)
        )
    }

    #[test]
    fn rejects_before_the_first_time_join_its_window() -> Result<(), SinkClosed> {
        let (mut sink, mut rx, source, ledger) = sink("prelude");
        let t = 1_700_000_123; // an old window: a backfill
        sink.line(source, 0, BAD, false)?;
        sink.line(source, 23, BAD, false)?;
        // Held at the first bad line: a checkpoint must not pass it.
        assert_eq!(ledger.entry(source).map(|e| e.checkpoint_offset()), Some(0));
        sink.line(source, 46, line_at(t).as_bytes(), false)?;
        sink.flush()?;
        let got = partials(&mut rx);
        assert_eq!(got.len(), 1, "one partial: {got:?}");
        assert_eq!(got[0].window_start, t - t.rem_euclid(300));
        assert_eq!(got[0].rejected_lines, 2);
        assert_eq!(got[0].total().requests, 1);
        assert_eq!(got[0].reject_samples.len(), 2);
        Ok(())
    }

    #[test]
    fn rejects_with_no_time_to_join_are_sent_in_the_wall_clock_window() -> Result<(), SinkClosed> {
        let (mut sink, mut rx, source, _ledger) = sink("prelude-alone");
        sink.line(source, 0, BAD, false)?;
        sink.flush()?;
        let got = partials(&mut rx);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].rejected_lines, 1);
        assert!((wall_now() - got[0].window_start) < 300 + 5);
        Ok(())
    }

    #[test]
    fn a_line_far_in_the_future_is_a_reject_and_does_not_move_the_watermark(
    ) -> Result<(), SinkClosed> {
        let (mut sink, mut rx, source, _ledger) = sink("future");
        let now = wall_now();
        sink.line(source, 0, line_at(now).as_bytes(), false)?;
        sink.line(
            source,
            50,
            line_at(now + 10 * 365 * 86_400).as_bytes(),
            false,
        )?;
        sink.line(source, 100, line_at(now + 1).as_bytes(), false)?;
        assert_eq!(sink.watermark, Some(now + 1));
        sink.flush()?;
        let got = partials(&mut rx);
        let requests: u64 = got.iter().map(|p| p.total().requests).sum();
        let rejected: u64 = got.iter().map(|p| p.rejected_lines).sum();
        assert_eq!((requests, rejected), (2, 1));
        assert!(got.iter().any(|p| p
            .reject_samples
            .iter()
            .any(|s| s.contains("ahead of this host's clock"))));
        Ok(())
    }
}
