//! Replaying records the Lambda gave up on: `tailrace-aggregator replay`.
//!
//! After `MaximumRetryAttempts` (or `MaximumRecordAgeInSeconds`) the event
//! source mapping skips a batch and sends its on-failure destination (the
//! stack's SQS queue) a message that names the records but does not carry
//! them:
//!
//! ```json
//! {"requestContext": {"condition": "RetryAttemptsExhausted", ...},
//!  "KinesisBatchInfo": {"shardId": "shardId-000000000001",
//!    "startSequenceNumber": "4960…4722", "endSequenceNumber": "4960…5186",
//!    "batchSize": 500, "streamArn": "arn:aws:kinesis:…:stream/mystream", ...}}
//! ```
//!
//! A replay reads exactly that range back from the stream (GetShardIterator
//! `AT_SEQUENCE_NUMBER`, GetRecords until the end sequence number), hands it
//! to the same [`Handler`] as the Lambda in batches of at most 200, and
//! deletes the message only once every record of the range was handled.
//! The handler claims every partial in the DynamoDB table
//! (`idempotency`), so records of the range that were published before (the
//! range is a whole batch, often only partly failed), or by an earlier
//! replay, are not counted again: a replay is exactly once. The records must
//! still be in the stream: its retention (the stack's `RetentionHours`) is
//! the time an operator has to replay.
//!
//! Sequence numbers are decimal strings of up to 128 bits' worth of digits
//! and more; they are compared as numbers (length, then digits), not parsed.

use std::cmp::Ordering;
use std::time::Duration;

use aws_sdk_kinesis::types::ShardIteratorType;
use serde::Deserialize;

use crate::entry::consume::MAX_BATCH;
use crate::entry::handler::Handler;
use crate::ingest::batch::InputRecord;

/// Attempts per batch before a replay gives up on a range.
pub const MAX_ATTEMPTS: u32 = 5;
/// Empty GetRecords answers in a row after which a range is taken as read
/// (the end sequence number is not in the shard any more, or never was).
pub const MAX_EMPTY_READS: u32 = 5;

/// Errors of a replay.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// A failure-queue message that is not a Kinesis on-failure record.
    #[error("failure-queue message {message_id}: {reason}")]
    BadMessage {
        /// The SQS message id.
        message_id: String,
        /// What is wrong.
        reason: String,
    },
    /// A Kinesis call failed.
    #[error("Kinesis {operation} on stream {stream}, shard {shard}: {message}")]
    Kinesis {
        /// The operation.
        operation: &'static str,
        /// The stream.
        stream: String,
        /// The shard.
        shard: String,
        /// What Kinesis said.
        message: String,
    },
    /// An SQS call failed.
    #[error("SQS {operation} on {queue}: {message}")]
    Sqs {
        /// The operation.
        operation: &'static str,
        /// The queue URL.
        queue: String,
        /// What SQS said.
        message: String,
    },
    /// Records still failed after [`MAX_ATTEMPTS`].
    #[error("shard {shard}: record {sequence_number} still failed after {attempts} attempts")]
    Failed {
        /// The shard.
        shard: String,
        /// The first record that failed.
        sequence_number: String,
        /// Attempts made.
        attempts: u32,
    },
}

/// A range of records of one shard, both ends included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    /// Stream name.
    pub stream: String,
    /// Shard id.
    pub shard: String,
    /// First sequence number.
    pub from: String,
    /// Last sequence number.
    pub to: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BatchInfo {
    shard_id: String,
    start_sequence_number: String,
    end_sequence_number: String,
    #[serde(default)]
    stream_arn: Option<String>,
}

#[derive(Deserialize)]
struct FailureRecord {
    #[serde(rename = "KinesisBatchInfo")]
    kinesis_batch_info: Option<BatchInfo>,
}

/// The range named by an on-failure destination message `body` (SQS
/// message `message_id`). The stream is `stream` if given, else the one in
/// the message's `streamArn`.
pub fn parse_failure_message(
    message_id: &str,
    body: &str,
    stream: Option<&str>,
) -> Result<Range, ReplayError> {
    let bad = |reason: String| ReplayError::BadMessage {
        message_id: message_id.to_string(),
        reason,
    };
    let record: FailureRecord = serde_json::from_str(body)
        .map_err(|e| bad(format!("not the JSON of a Lambda on-failure record: {e}")))?;
    let info = record
        .kinesis_batch_info
        .ok_or_else(|| bad("no `KinesisBatchInfo`: not from a Kinesis event source".into()))?;
    let stream = match stream {
        Some(s) => s.to_string(),
        None => info
            .stream_arn
            .as_deref()
            .and_then(|arn| arn.split_once(":stream/").map(|(_, name)| name.to_string()))
            .filter(|name| !name.is_empty())
            .ok_or_else(|| bad("no stream name in `streamArn`; pass --stream".into()))?,
    };
    if compare_sequence(&info.start_sequence_number, &info.end_sequence_number) == Ordering::Greater
    {
        return Err(bad(format!(
            "startSequenceNumber {} is after endSequenceNumber {}",
            info.start_sequence_number, info.end_sequence_number
        )));
    }
    Ok(Range {
        stream,
        shard: info.shard_id,
        from: info.start_sequence_number,
        to: info.end_sequence_number,
    })
}

/// Compare two Kinesis sequence numbers (decimal strings) as numbers.
pub fn compare_sequence(a: &str, b: &str) -> Ordering {
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// Read the records of `range` from the stream, in shard order.
pub async fn read_range(
    kinesis: &aws_sdk_kinesis::Client,
    range: &Range,
) -> Result<Vec<InputRecord>, ReplayError> {
    let err = |operation: &'static str, e: String| ReplayError::Kinesis {
        operation,
        stream: range.stream.clone(),
        shard: range.shard.clone(),
        message: e,
    };
    let iterator = kinesis
        .get_shard_iterator()
        .stream_name(&range.stream)
        .shard_id(&range.shard)
        .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
        .starting_sequence_number(&range.from)
        .send()
        .await
        .map_err(|e| {
            err(
                "GetShardIterator",
                aws_sdk_kinesis::error::DisplayErrorContext(&e).to_string(),
            )
        })?;
    let mut iterator = iterator.shard_iterator().map(str::to_string);
    let mut records = Vec::new();
    let mut empty = 0;
    while let Some(it) = iterator.take() {
        let out = kinesis
            .get_records()
            .shard_iterator(it)
            .limit(1000)
            .send()
            .await
            .map_err(|e| {
                err(
                    "GetRecords",
                    aws_sdk_kinesis::error::DisplayErrorContext(&e).to_string(),
                )
            })?;
        if out.records().is_empty() {
            empty += 1;
            // Caught up with the shard's end without reaching `to`.
            if empty >= MAX_EMPTY_READS || out.millis_behind_latest() == Some(0) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        } else {
            empty = 0;
        }
        for r in out.records() {
            if compare_sequence(r.sequence_number(), &range.to) == Ordering::Greater {
                return Ok(records);
            }
            records.push(InputRecord {
                sequence_number: r.sequence_number().to_string(),
                partition_key: r.partition_key().unwrap_or_default().to_string(),
                data: r.data().as_ref().to_vec(),
            });
        }
        if records
            .last()
            .is_some_and(|r| compare_sequence(&r.sequence_number, &range.to) != Ordering::Less)
        {
            break;
        }
        iterator = out.next_shard_iterator().map(str::to_string);
    }
    Ok(records)
}

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplaySummary {
    /// Ranges replayed.
    pub ranges: usize,
    /// Records read back and handled.
    pub records: usize,
    /// Partials published (in whole or the rest of them).
    pub partials: usize,
    /// Partials skipped: published before.
    pub duplicates: usize,
    /// Datums published.
    pub datums: usize,
}

/// Read `range` and hand it to `handler` in batches of at most 200, each
/// retried from its first failed record (as the event source mapping does)
/// up to [`MAX_ATTEMPTS`] times.
pub async fn replay_range(
    kinesis: &aws_sdk_kinesis::Client,
    handler: &Handler,
    range: &Range,
    summary: &mut ReplaySummary,
) -> Result<(), ReplayError> {
    let records = read_range(kinesis, range).await?;
    tracing::info!(
        stream = %range.stream,
        shard = %range.shard,
        from = %range.from,
        to = %range.to,
        records = records.len(),
        "replaying"
    );
    summary.ranges += 1;
    summary.records += records.len();
    for chunk in records.chunks(MAX_BATCH) {
        let mut from = 0;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let batch = &chunk[from..];
            let out = handler.handle(batch).await;
            summary.partials += out.stats.partials;
            summary.duplicates += out.stats.duplicates;
            summary.datums += out.stats.datums;
            let Some(first) = batch
                .iter()
                .position(|r| out.failed.contains(&r.sequence_number))
            else {
                break;
            };
            if attempts >= MAX_ATTEMPTS {
                return Err(ReplayError::Failed {
                    shard: range.shard.clone(),
                    sequence_number: batch[first].sequence_number.clone(),
                    attempts,
                });
            }
            from += first;
            tokio::time::sleep(Duration::from_millis(500) * (1 << attempts.min(5))).await;
        }
    }
    Ok(())
}

/// Replay every message of the failure queue `queue_url`, deleting each once
/// its range was handled; stops when a receive finds the queue empty. A
/// message that is not an on-failure record is reported and left in the
/// queue; so is one whose range still fails (the error is returned after the
/// other messages were tried).
pub async fn replay_queue(
    sqs: &aws_sdk_sqs::Client,
    kinesis: &aws_sdk_kinesis::Client,
    handler: &Handler,
    queue_url: &str,
    stream: Option<&str>,
) -> Result<ReplaySummary, ReplayError> {
    let sqs_err = |operation: &'static str, e: String| ReplayError::Sqs {
        operation,
        queue: queue_url.to_string(),
        message: e,
    };
    let mut summary = ReplaySummary::default();
    let mut first_error: Option<ReplayError> = None;
    let mut seen = std::collections::HashSet::new();
    loop {
        let out = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            // Long enough to replay a range before another reader sees it.
            .visibility_timeout(300)
            .send()
            .await
            .map_err(|e| {
                sqs_err(
                    "ReceiveMessage",
                    aws_sdk_sqs::error::DisplayErrorContext(&e).to_string(),
                )
            })?;
        let messages = out.messages();
        if messages.is_empty() {
            break;
        }
        let mut new = 0;
        for m in messages {
            let id = m.message_id().unwrap_or_default().to_string();
            if !seen.insert(id.clone()) {
                continue;
            }
            new += 1;
            let handled = match parse_failure_message(&id, m.body().unwrap_or_default(), stream) {
                Ok(range) => replay_range(kinesis, handler, &range, &mut summary).await,
                Err(e) => Err(e),
            };
            match handled {
                Ok(()) => {
                    if let Some(receipt) = m.receipt_handle() {
                        sqs.delete_message()
                            .queue_url(queue_url)
                            .receipt_handle(receipt)
                            .send()
                            .await
                            .map_err(|e| {
                                sqs_err(
                                    "DeleteMessage",
                                    aws_sdk_sqs::error::DisplayErrorContext(&e).to_string(),
                                )
                            })?;
                    }
                }
                Err(e) => {
                    tracing::error!(message_id = %id, error = %e, "not replayed: the message stays in the queue");
                    first_error.get_or_insert(e);
                }
            }
        }
        if new == 0 {
            break;
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(summary),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AWS_EXAMPLE: &str = r#"{
        "requestContext": {
            "requestId": "c9b8fa9f-5a7f-xmpl-af9c-0c604cde93a5",
            "functionArn": "arn:aws:lambda:us-east-2:123456789012:function:myfunction",
            "condition": "RetryAttemptsExhausted",
            "approximateInvokeCount": 1
        },
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "version": "1.0",
        "timestamp": "2019-11-14T00:38:06.021Z",
        "KinesisBatchInfo": {
            "shardId": "shardId-000000000001",
            "startSequenceNumber": "49601189658422359378836298521827638475320189012309704722",
            "endSequenceNumber": "49601189658422359378836298522902373528957594348623495186",
            "approximateArrivalOfFirstRecord": "2019-11-14T00:38:04.835Z",
            "approximateArrivalOfLastRecord": "2019-11-14T00:38:05.580Z",
            "batchSize": 500,
            "streamArn": "arn:aws:kinesis:us-east-2:123456789012:stream/mystream"
        }
    }"#;

    #[test]
    fn the_documented_on_failure_record_names_its_range() {
        let r = parse_failure_message("m1", AWS_EXAMPLE, None).expect("valid");
        assert_eq!(r.stream, "mystream");
        assert_eq!(r.shard, "shardId-000000000001");
        assert!(r.from.starts_with("4960118965842235937883629852182"));
        assert!(r.to.ends_with("95186"));
        assert_eq!(
            parse_failure_message("m1", AWS_EXAMPLE, Some("other"))
                .expect("valid")
                .stream,
            "other"
        );
    }

    #[test]
    fn other_messages_are_refused_with_a_reason() {
        let e = parse_failure_message("m2", "hello", None).unwrap_err();
        assert!(
            e.to_string().contains("m2") && e.to_string().contains("JSON"),
            "{e}"
        );
        let e = parse_failure_message("m3", r#"{"DDBStreamBatchInfo": {}}"#, None).unwrap_err();
        assert!(e.to_string().contains("KinesisBatchInfo"), "{e}");
        let swapped = AWS_EXAMPLE.replace(
            "49601189658422359378836298521827638475320189012309704722",
            "59601189658422359378836298521827638475320189012309704722",
        );
        let e = parse_failure_message("m4", &swapped, None).unwrap_err();
        assert!(e.to_string().contains("after"), "{e}");
    }

    #[test]
    fn sequence_numbers_compare_as_numbers() {
        assert_eq!(compare_sequence("9", "10"), Ordering::Less);
        assert_eq!(compare_sequence("010", "10"), Ordering::Equal);
        assert_eq!(
            compare_sequence(
                "49601189658422359378836298522902373528957594348623495186",
                "49601189658422359378836298521827638475320189012309704722"
            ),
            Ordering::Greater
        );
    }
}
