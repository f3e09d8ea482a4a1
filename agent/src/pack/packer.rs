//! Raw mode: lines packed, exactly as written, into Kinesis records.
//!
//! Each line is appended with its `\n` to the record being filled; a record
//! is sealed when the next line would not fit (record limit minus the longest
//! partition key), or when it has waited `linger`. The record's first line from
//! each file places a hold in the ledger, so the checkpoint cannot pass lines
//! that are only in this buffer. Nothing here copies a line more than once
//! (file buffer → record) or allocates per line.

use std::time::{Duration, Instant};

use tailrace_wire::raw::RecordPacker;

use crate::pack::keys::KeyMaker;
use crate::shared::counters::{FlowStats, ReadTally};
use crate::shared::ledger::{Hold, SourceId};
use crate::shared::sink::{LineSink, SinkClosed};
use crate::ship::queue::{OutRecord, RecordSender};
use std::sync::Arc;

/// The raw-mode sink. Lives on its flow's reader thread. The bytes are
/// packed by [`tailrace_wire::raw::RecordPacker`] (the wire crate owns the
/// record layout); this type adds the ledger holds, the linger and sending.
pub struct RawPacker {
    out: RecordSender,
    keys: KeyMaker,
    packer: RecordPacker,
    linger: Duration,
    holds: Vec<Hold>,
    started: Option<Instant>,
    stats: Arc<FlowStats>,
    /// Lines read since they were last added to `stats`.
    tally: ReadTally,
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
            packer: RecordPacker::new(max_data),
            linger,
            holds: Vec::new(),
            started: None,
            stats,
            tally: ReadTally::default(),
        }
    }

    fn send(&mut self, data: Vec<u8>, lines: u64, holds: Vec<Hold>) -> Result<(), SinkClosed> {
        self.out.send_blocking(OutRecord {
            data: data.into(),
            partition_key: self.keys.next_key(),
            holds,
            lines,
            permit: None,
            on_ack: None,
        })
    }

    fn seal(&mut self) -> Result<(), SinkClosed> {
        let lines = self.packer.line_count() as u64;
        self.started = None;
        match self.packer.finish() {
            Some(data) => {
                let holds = std::mem::take(&mut self.holds);
                self.send(data, lines, holds)
            }
            None => Ok(()),
        }
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
        let lines_before = self.packer.line_count() as u64;
        if let Some(full) = self.packer.push(line) {
            // `line` did not fit: it opened a new record; the full one goes.
            let holds = std::mem::take(&mut self.holds);
            self.send(full, lines_before, holds)?;
            self.started = None;
        }
        if self.started.is_none() {
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
        if self.tally.line(line.len(), truncated) {
            self.stats.add_read(&mut self.tally);
        }
        Ok(())
    }

    fn tick(&mut self) -> Result<(), SinkClosed> {
        self.stats.add_read(&mut self.tally);
        if self.started.is_some_and(|t| t.elapsed() >= self.linger) {
            self.seal()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkClosed> {
        self.stats.add_read(&mut self.tally);
        self.seal()
    }
}
