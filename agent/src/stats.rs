//! Counters the data path bumps and operators read.
//!
//! Plain relaxed atomics: the data path never formats, logs or blocks to
//! count. A summary is logged periodically and at exit; self-metrics and the
//! status endpoint read the same counters.

use std::sync::atomic::{AtomicU64, Ordering};

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
}

impl FlowStats {
    /// Count one line read (its bytes plus the newline).
    pub fn line_read(&self, len: usize, truncated: bool) {
        self.lines_read.inc();
        self.bytes_read.add(len as u64 + 1);
        if truncated {
            self.lines_truncated.inc();
        }
    }

    /// One-line summary for logs.
    pub fn summary(&self) -> String {
        format!(
            "lines_read={} lines_sent={} records_sent={} bytes_sent={} truncated={} parse_rejects={} late_lines={} put_calls={} put_call_errors={} throttled={} failed={}",
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
        )
    }
}
