//! The shipper: records into PutRecords calls, retries until acknowledged.
//!
//! Batches respect Kinesis' limits (500 records, 5 MiB per call). A call that
//! fails as a whole is retried whole; records refused inside a successful
//! call (`ProvisionedThroughputExceededException`, `InternalFailure`) are
//! retried alone — the SDK never retries those. Retries back off
//! exponentially with full jitter and never give up: dropping a record would
//! lose lines. An acknowledged record releases its ledger holds, which is what
//! lets the checkpoint move.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_kinesis::operation::put_records::PutRecordsError;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use rand::Rng;
use tokio::sync::mpsc;

use super::queue::OutRecord;
use crate::shared::counters::FlowStats;
use crate::shared::ledger::Ledger;
use crate::shared::ratelog::Repeats;

/// Most records per PutRecords call.
pub const MAX_BATCH_RECORDS: usize = 500;
/// Most bytes (data + keys) per PutRecords call. Kinesis allows 5 MiB, but
/// a call's body is held about three times over while in flight (our copy,
/// the SDK's base64 JSON, its retry copy), and one shard takes only 1 MiB/s:
/// 1 MiB calls keep the agent's memory small at no cost in throughput.
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;

/// Backoff bounds.
const BACKOFF_BASE: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(20);

/// Sends one flow's records to one stream. Lives until its queue closes and
/// every record in it has been acknowledged.
pub struct Shipper {
    client: aws_sdk_kinesis::Client,
    stream: String,
    ledger: Ledger,
    stats: Arc<FlowStats>,
    flow: String,
    call_errors: Repeats,
    refusals: Repeats,
}

impl Shipper {
    /// A shipper for `stream`.
    pub fn new(
        client: aws_sdk_kinesis::Client,
        stream: String,
        ledger: Ledger,
        stats: Arc<FlowStats>,
        flow: String,
    ) -> Shipper {
        Shipper {
            client,
            stream,
            ledger,
            stats,
            flow,
            call_errors: Repeats::default(),
            refusals: Repeats::default(),
        }
    }

    /// Ship until `rx` is closed and drained.
    pub async fn run(self, mut rx: mpsc::Receiver<OutRecord>) {
        let mut retry: VecDeque<OutRecord> = VecDeque::new();
        let mut failures: u32 = 0;
        loop {
            let mut batch: Vec<OutRecord> = Vec::new();
            let mut bytes = 0usize;
            let fits = |batch: &Vec<OutRecord>, bytes: usize, r: &OutRecord| {
                batch.len() < MAX_BATCH_RECORDS
                    && bytes + r.data.len() + r.partition_key.len() <= MAX_BATCH_BYTES
            };
            while let Some(r) = retry.front() {
                if !fits(&batch, bytes, r) {
                    break;
                }
                bytes += r.data.len() + r.partition_key.len();
                if let Some(r) = retry.pop_front() {
                    batch.push(r);
                }
            }
            if batch.is_empty() {
                match rx.recv().await {
                    Some(r) => {
                        bytes += r.data.len() + r.partition_key.len();
                        batch.push(r);
                    }
                    None => return,
                }
            }
            // Take whatever else is already queued, without waiting.
            while let Ok(r) = rx.try_recv() {
                if !fits(&batch, bytes, &r) {
                    retry.push_front(r);
                    break;
                }
                bytes += r.data.len() + r.partition_key.len();
                batch.push(r);
            }
            let sent = batch.len();
            let failed = self.put(batch).await;
            if failed.is_empty() {
                failures = 0;
                continue;
            }
            // Progress (some records taken) keeps the backoff short: a
            // share of throttled records is normal at a shard's limit.
            failures = if failed.len() < sent {
                1
            } else {
                failures.saturating_add(1)
            };
            for r in failed.into_iter().rev() {
                retry.push_front(r);
            }
            tokio::time::sleep(backoff(failures)).await;
        }
    }

    /// One PutRecords call; returns the records to retry.
    async fn put(&self, batch: Vec<OutRecord>) -> Vec<OutRecord> {
        let mut entries = Vec::with_capacity(batch.len());
        for r in &batch {
            let entry = PutRecordsRequestEntry::builder()
                .data(Blob::from_maybe_shared(r.data.clone()))
                .partition_key(r.partition_key.clone())
                .build();
            match entry {
                Ok(e) => entries.push(e),
                Err(e) => {
                    // Only a missing required field can fail here: a bug, not input.
                    tracing::error!(error = %e, "cannot build PutRecords entry");
                    return batch;
                }
            }
        }
        self.stats.put_calls.inc();
        self.stats.records_attempted.add(batch.len() as u64);
        let result = self
            .client
            .put_records()
            .stream_name(&self.stream)
            .set_records(Some(entries))
            .send()
            .await;
        let out = match result {
            Ok(out) => out,
            Err(e) => {
                self.stats.put_call_errors.inc();
                if matches!(e, aws_sdk_kinesis::error::SdkError::ServiceError(_)) {
                    self.stats.service_errors.inc();
                } else {
                    self.stats.transport_errors.inc();
                }
                if let Some(more) = self.call_errors.check() {
                    let err = aws_sdk_kinesis::error::DisplayErrorContext(&e);
                    tracing::warn!(flow = %self.flow, stream = %self.stream, records = batch.len(), error = %err, "PutRecords failed; retrying{more}");
                }
                self.stats.note_error(short_error(&e));
                return batch;
            }
        };
        let results = out.records();
        if results.len() != batch.len() {
            tracing::warn!(flow = %self.flow, sent = batch.len(), answered = results.len(), "PutRecords answered a different number of records; retrying all");
            return batch;
        }
        let sent = batch.len();
        let mut failed = Vec::new();
        let mut throttled = 0u64;
        let mut first_error: Option<String> = None;
        for (record, result) in batch.into_iter().zip(results) {
            match result.error_code() {
                None => self.ack(record),
                Some(code) => {
                    if code == "ProvisionedThroughputExceededException" {
                        throttled += 1;
                        self.stats.records_throttled.inc();
                    } else {
                        self.stats.records_failed.inc();
                        if first_error.is_none() {
                            first_error =
                                Some(format!("{code}: {}", result.error_message().unwrap_or("")));
                        }
                    }
                    failed.push(record);
                }
            }
        }
        let acked = failed.len() < sent;
        if acked {
            self.stats.note_ack();
        }
        if !failed.is_empty() {
            let what = first_error
                .unwrap_or_else(|| "ProvisionedThroughputExceededException: throttled".to_string());
            if let Some(more) = self.refusals.check() {
                tracing::warn!(flow = %self.flow, stream = %self.stream, failed = failed.len(), throttled, first_error = %what, "records refused; retrying them{more}");
            }
            if !acked {
                self.stats.note_error(what);
            }
        }
        failed
    }

    fn ack(&self, mut record: OutRecord) {
        self.stats.records_sent.inc();
        self.stats.bytes_sent.add(record.data.len() as u64);
        self.stats.lines_sent.add(record.lines);
        if let Some(on_ack) = record.on_ack.take() {
            on_ack();
        }
        self.ledger.release(&record.holds);
        // Dropping the record returns its byte permits.
    }
}

/// A one-line description of a failed call: the service's code and
/// message, or the transport failure, for health reasons and status.
fn short_error<R>(e: &aws_sdk_kinesis::error::SdkError<PutRecordsError, R>) -> String
where
    R: std::fmt::Debug,
{
    use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
    match e {
        SdkError::ServiceError(s) => {
            let err = s.err();
            format!(
                "{}: {}",
                err.code().unwrap_or("service error"),
                err.message().unwrap_or("")
            )
        }
        SdkError::TimeoutError(_) => "timed out".to_string(),
        other => {
            let full = aws_sdk_kinesis::error::DisplayErrorContext(other).to_string();
            full.chars().take(300).collect()
        }
    }
}

/// Exponential backoff with full jitter.
pub fn backoff(failures: u32) -> Duration {
    let exp = BACKOFF_BASE.saturating_mul(1u32 << failures.min(10));
    let cap = exp.min(BACKOFF_MAX);
    let millis = rand::rng().random_range(0..=cap.as_millis() as u64);
    Duration::from_millis(millis.max(10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded() {
        for n in 0..40 {
            let b = backoff(n);
            assert!(b <= BACKOFF_MAX && b >= Duration::from_millis(10));
        }
    }
}
