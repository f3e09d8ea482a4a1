//! Records on their way to Kinesis, and the bounded queue that carries them.
//!
//! An [`OutRecord`] carries its data, its partition key, and the ledger holds
//! that its acknowledgement will release. The queue between the readers and
//! the shipper is bounded in *bytes* (a semaphore of byte permits that a
//! record keeps until it is acknowledged), so memory stays bounded however
//! long Kinesis is slow or down: readers block, and the file is the buffer.
//!
//! The packers (`pack/`) fill it; the shipper ([`super::shipper`]) drains it.

use std::sync::Arc;

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::shared::ledger::{Hold, Ledger};
use crate::shared::sink::SinkClosed;

/// One record to put on the stream.
pub struct OutRecord {
    /// The record's data. Shared, not copied, with each PutRecords attempt
    /// (`Blob::from_maybe_shared`): a retry needs it, and a copy per attempt
    /// was a second pass over every byte shipped, into fresh pages.
    pub data: bytes::Bytes,
    /// Its partition key.
    pub partition_key: String,
    /// Holds released when Kinesis acknowledges this record.
    pub holds: Vec<Hold>,
    /// Log lines this record accounts for (for statistics).
    pub lines: u64,
    /// Byte permits returned when the record is dropped (after its ack).
    pub permit: Option<OwnedSemaphorePermit>,
    /// Called once Kinesis acknowledged the record.
    pub on_ack: Option<Box<dyn FnOnce() + Send>>,
}

impl std::fmt::Debug for OutRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutRecord")
            .field("bytes", &self.data.len())
            .field("partition_key", &self.partition_key)
            .field("holds", &self.holds)
            .field("lines", &self.lines)
            .finish()
    }
}

/// The sending half of the record queue, used from reader threads.
#[derive(Clone)]
pub struct RecordSender {
    tx: mpsc::Sender<OutRecord>,
    budget: Arc<Semaphore>,
    budget_bytes: u32,
    ledger: Ledger,
    runtime: tokio::runtime::Handle,
}

impl RecordSender {
    /// A queue admitting at most `budget_bytes` of unacknowledged record data.
    pub fn channel(
        budget_bytes: u32,
        ledger: Ledger,
        runtime: tokio::runtime::Handle,
    ) -> (RecordSender, mpsc::Receiver<OutRecord>) {
        let (tx, rx) = mpsc::channel(1024);
        (
            RecordSender {
                tx,
                budget: Arc::new(Semaphore::new(budget_bytes as usize)),
                budget_bytes,
                ledger,
                runtime,
            },
            rx,
        )
    }

    /// The ledger the holds belong to.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Queue a record, blocking while the byte budget is used up. Its holds
    /// must already be placed in the ledger.
    pub fn send_blocking(&self, mut record: OutRecord) -> Result<(), SinkClosed> {
        let want = (record.data.len() as u32).clamp(1, self.budget_bytes);
        let budget = self.budget.clone();
        let permit = self
            .runtime
            .block_on(budget.acquire_many_owned(want))
            .map_err(|_| SinkClosed)?;
        record.permit = Some(permit);
        self.tx.blocking_send(record).map_err(|_| SinkClosed)
    }
}
