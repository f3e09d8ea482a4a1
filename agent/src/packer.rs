//! Raw mode: lines packed, exactly as written, into Kinesis records.
//!
//! Each line is appended with its `\n` to the record being filled; a record
//! is sealed when the next line would not fit (record limit minus the longest
//! partition key), or when it has waited `linger`. The record's first line from
//! each file places a hold in the ledger, so the checkpoint cannot pass lines
//! that are only in this buffer. Nothing here copies a line more than once
//! (file buffer → record) or allocates per line.

use std::time::{Duration, Instant};

use crate::ledger::{Hold, SourceId};
use crate::record::{KeyMaker, OutRecord, RecordSender};
use crate::stats::FlowStats;
use crate::watcher::{LineSink, SinkClosed};
use std::sync::Arc;

/// The raw-mode sink. Lives on its flow's reader thread.
pub struct RawPacker {
    out: RecordSender,
    keys: KeyMaker,
    max_data: usize,
    linger: Duration,
    buf: Vec<u8>,
    holds: Vec<Hold>,
    lines: u64,
    started: Option<Instant>,
    stats: Arc<FlowStats>,
}

impl RawPacker {
    /// A packer building records of at most `max_record_bytes` (data + key).
    pub fn new(
        out: RecordSender,
        keys: KeyMaker,
        max_record_bytes: usize,
        linger: Duration,
        stats: Arc<FlowStats>,
    ) -> RawPacker {
        let max_data = max_record_bytes.saturating_sub(keys.max_len()).max(1);
        RawPacker {
            out,
            keys,
            max_data,
            linger,
            buf: Vec::new(),
            holds: Vec::new(),
            lines: 0,
            started: None,
            stats,
        }
    }

    /// Largest line (without `\n`) that fits in one record.
    pub fn max_line(&self) -> usize {
        self.max_data - 1
    }

    fn seal(&mut self) -> Result<(), SinkClosed> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let data = std::mem::take(&mut self.buf);
        let record = OutRecord {
            data,
            partition_key: self.keys.next_key(),
            holds: std::mem::take(&mut self.holds),
            lines: std::mem::take(&mut self.lines),
            permit: None,
            on_ack: None,
        };
        self.started = None;
        self.out.send_blocking(record)
    }
}

impl LineSink for RawPacker {
    fn line(
        &mut self,
        source: SourceId,
        start: u64,
        line: &[u8],
        truncated: bool,
    ) -> Result<(), SinkClosed> {
        let line = &line[..line.len().min(self.max_line())];
        if !self.buf.is_empty() && self.buf.len() + line.len() + 1 > self.max_data {
            self.seal()?;
        }
        if self.buf.is_empty() {
            // Sized once: growing by doubling would copy the record several times.
            self.buf.reserve_exact(self.max_data);
            self.started = Some(Instant::now());
        }
        if !self.holds.iter().any(|h| h.source == source) {
            let hold = Hold {
                source,
                offset: start,
            };
            self.out.ledger().hold(&[hold]);
            self.holds.push(hold);
        }
        self.buf.extend_from_slice(line);
        self.buf.push(b'\n');
        self.lines += 1;
        self.stats.line_read(line.len(), truncated);
        Ok(())
    }

    fn tick(&mut self) -> Result<(), SinkClosed> {
        if self.started.is_some_and(|t| t.elapsed() >= self.linger) {
            self.seal()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkClosed> {
        self.seal()
    }
}
