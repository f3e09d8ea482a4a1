//! Where a reader's lines go: the [`LineSink`] a watcher hands each line to
//! (a raw packer or a window sink, in `pack/`), and [`SinkClosed`], the
//! answer that stops reading at shutdown.
//!
//! Shared by the reader (`read/`), which calls it, the packers (`pack/`),
//! which implement it, and the watchdog (`observe/`), which wraps one: it
//! lives on the ground floor so none of them imports another for it.

use crate::shared::ledger::SourceId;

/// Receives complete lines from watchers.
pub trait LineSink {
    /// One line without its `\n` (nor a trailing `\r` removed: lines are
    /// passed exactly as written). It begins at byte `start` of `source`.
    /// `truncated` is set when the line was longer than the limit and only its
    /// first bytes are passed. Blocking here is how backpressure reaches the
    /// file: the tailer stops reading.
    fn line(
        &mut self,
        source: SourceId,
        start: u64,
        line: &[u8],
        truncated: bool,
    ) -> Result<(), SinkClosed>;

    /// Periodic call between read passes: seal what has lingered too long,
    /// close windows whose time has come.
    fn tick(&mut self) -> Result<(), SinkClosed>;

    /// Seal and send everything buffered (shutdown, end of replay).
    fn flush(&mut self) -> Result<(), SinkClosed>;
}

/// The shipper is gone (shutdown): stop reading.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the shipper has stopped")]
pub struct SinkClosed;
