//! Counters the data path bumps and operators read.
//!
//! Plain relaxed atomics: the data path never formats, logs or blocks to
//! count. A summary is logged periodically and at exit; self-metrics and the
//! status endpoint read the same counters. The few gauges and time stamps
//! here are set by the shipper (once per call) and the monitor.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A value set by one side and read by another (a gauge or a time stamp).
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    /// Set the value.
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }
    /// Current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
    /// Set to `v` only when it is 0 now (keeps the first of a run).
    pub fn set_if_zero(&self, v: u64) {
        let _ = self
            .0
            .compare_exchange(0, v, Ordering::Relaxed, Ordering::Relaxed);
    }
}

/// A monotonically increasing counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Add one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    /// Add `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// Current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Lines read, counted by a sink on its reader's thread and added to the
/// flow's [`FlowStats`] ([`FlowStats::add_read`]) every
/// [`ReadTally::BATCH`] lines and at each tick and flush: two atomic
/// additions per line were 4% of an aggregate replay's CPU (BENCHMARKS.md,
/// issue #25).
#[derive(Debug, Default)]
pub struct ReadTally {
    lines: u64,
    bytes: u64,
    truncated: u64,
}

impl ReadTally {
    /// Lines counted before they are added to the flow's counters.
    pub const BATCH: u64 = 4096;

    /// One line of `len` bytes (plus its newline); true when the batch is
    /// full (time to [`FlowStats::add_read`]).
    #[inline]
    pub fn line(&mut self, len: usize, truncated: bool) -> bool {
        self.lines += 1;
        self.bytes += len as u64 + 1;
        self.truncated += u64::from(truncated);
        self.lines >= Self::BATCH
    }
}

/// Per-flow counters.
#[derive(Debug, Default)]
pub struct FlowStats {
    /// Lines read from files.
    pub lines_read: Counter,
    /// Bytes of those lines, newlines included.
    pub bytes_read: Counter,
    /// Lines longer than the limit, shipped truncated.
    pub lines_truncated: Counter,
    /// Lines that did not match the format (aggregate mode).
    pub parse_rejects: Counter,
    /// Lines whose window had already been emitted (shipped in late partials).
    pub late_lines: Counter,
    /// Records acknowledged by Kinesis.
    pub records_sent: Counter,
    /// Bytes of record data acknowledged.
    pub bytes_sent: Counter,
    /// Lines in acknowledged records.
    pub lines_sent: Counter,
    /// PutRecords calls made.
    pub put_calls: Counter,
    /// PutRecords calls that failed as a whole.
    pub put_call_errors: Counter,
    /// Records Kinesis refused with ProvisionedThroughputExceededException.
    pub records_throttled: Counter,
    /// Records Kinesis refused with another error (InternalFailure, …).
    pub records_failed: Counter,
    /// Records put in PutRecords calls, first tries and retries alike.
    pub records_attempted: Counter,
    /// PutRecords calls that Kinesis answered with an error (throttled
    /// calls, missing stream, access denied, …); part of `put_call_errors`.
    pub service_errors: Counter,
    /// PutRecords calls that got no answer (connection refused or reset,
    /// timeout); part of `put_call_errors`.
    pub transport_errors: Counter,
    /// When Kinesis last acknowledged a record of this flow (Unix ms, 0: never).
    pub last_ack_ms: Gauge,
    /// Since when every call failed or was refused whole (Unix ms, 0: not failing).
    pub failing_since_ms: Gauge,
    /// When this flow (first) started (Unix ms).
    pub started_ms: Gauge,
    /// Bytes in the flow's files past their checkpoints (set by the monitor).
    pub backlog_bytes: Gauge,
    /// Age in seconds of the oldest unacknowledged line (set by the monitor).
    pub oldest_unacked_secs: Gauge,
    /// Bytes lost: in files deleted or cut short before they could be read
    /// (each loss is also logged with the file).
    pub bytes_lost: Counter,
    /// When bytes were last lost (Unix ms, 0: never).
    pub last_loss_ms: Gauge,
    /// The last Kinesis error and when (Unix ms): error paths only.
    last_error: Mutex<Option<(u64, String)>>,
    /// A sample of a rejected line, taken by whoever formats one anyway,
    /// logged and cleared by the monitor.
    reject_sample: Mutex<Option<String>>,
}

impl FlowStats {
    /// Count `t`'s lines at once, and start it again.
    pub fn add_read(&self, t: &mut ReadTally) {
        if t.lines > 0 {
            self.lines_read.add(t.lines);
            self.bytes_read.add(t.bytes);
            if t.truncated > 0 {
                self.lines_truncated.add(t.truncated);
            }
            *t = ReadTally::default();
        }
    }

    /// `bytes` were lost (the reader logs which file).
    pub fn lost(&self, bytes: u64) {
        self.bytes_lost.add(bytes);
        self.last_loss_ms.set(now_ms());
    }

    /// A flow's counters, with its start time set to now.
    pub fn started_now() -> FlowStats {
        let s = FlowStats::default();
        s.started_ms.set(now_ms());
        s
    }

    /// Remember a Kinesis error (error paths only: this formats and locks).
    pub fn note_error(&self, message: String) {
        let at = now_ms();
        self.failing_since_ms.set_if_zero(at);
        if let Ok(mut e) = self.last_error.lock() {
            *e = Some((at, message));
        }
    }

    /// Some records were acknowledged now.
    pub fn note_ack(&self) {
        self.last_ack_ms.set(now_ms());
        self.failing_since_ms.set(0);
    }

    /// The last Kinesis error and when it happened (Unix ms).
    pub fn last_error(&self) -> Option<(u64, String)> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    /// Offer a sample of a rejected line; kept only when none is waiting
    /// (never blocks: a busy lock drops the offer).
    pub fn offer_reject_sample(&self, sample: &str) {
        if let Ok(mut slot) = self.reject_sample.try_lock() {
            if slot.is_none() {
                *slot = Some(sample.to_string());
            }
        }
    }

    /// Take the waiting reject sample.
    pub fn take_reject_sample(&self) -> Option<String> {
        self.reject_sample.lock().ok().and_then(|mut s| s.take())
    }

    /// One-line summary for logs.
    pub fn summary(&self) -> String {
        format!(
            "lines_read={} lines_sent={} records_sent={} bytes_sent={} truncated={} parse_rejects={} late_lines={} put_calls={} put_call_errors={} throttled={} failed={} bytes_lost={}",
            self.lines_read.get(),
            self.lines_sent.get(),
            self.records_sent.get(),
            self.bytes_sent.get(),
            self.lines_truncated.get(),
            self.parse_rejects.get(),
            self.late_lines.get(),
            self.put_calls.get(),
            self.put_call_errors.get(),
            self.records_throttled.get(),
            self.records_failed.get(),
            self.bytes_lost.get(),
        )
    }
}
