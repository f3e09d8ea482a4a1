//! The Lambda side: a Kinesis event from the event source mapping → the
//! handler → a `KinesisEventResponse` listing only the records that really
//! failed (`ReportBatchItemFailures`). An empty list checkpoints the batch.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_lambda_events::event::streams::KinesisEventResponse;
use lambda_runtime::LambdaEvent;

use crate::handler::{Handler, InputRecord, Outcome};

/// The records of a Kinesis event, in order.
pub fn records_from_event(event: KinesisEvent) -> Vec<InputRecord> {
    event
        .records
        .into_iter()
        .map(|r| InputRecord {
            sequence_number: r.kinesis.sequence_number,
            partition_key: r.kinesis.partition_key,
            data: r.kinesis.data.0,
        })
        .collect()
}

/// The response for an outcome: one `itemIdentifier` per failed record.
pub fn response(outcome: &Outcome) -> KinesisEventResponse {
    let mut response = KinesisEventResponse::default();
    response.set_failures(outcome.failed.iter().cloned());
    response
}

/// The invocation's deadline (milliseconds since the epoch) as an
/// `Instant`; `None` when unknown (0) or already past when the invocation
/// starts, which the Lambda service never sends (an emulator may): the
/// handler then works without a deadline, as outside Lambda.
pub fn deadline_instant(deadline_ms: u64) -> Option<Instant> {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    if deadline_ms <= now_ms {
        if deadline_ms != 0 {
            tracing::warn!(
                deadline_ms,
                now_ms,
                "the invocation's deadline is already past: ignoring it"
            );
        }
        return None;
    }
    Some(Instant::now() + Duration::from_millis(deadline_ms - now_ms))
}

/// Handle one invocation, publishing before its deadline so that the
/// records that could not be published are reported rather than the whole
/// invocation timing out.
pub async fn handle_event(
    handler: &Handler,
    event: LambdaEvent<KinesisEvent>,
) -> Result<KinesisEventResponse, lambda_runtime::Error> {
    let deadline = deadline_instant(event.context.deadline);
    let records = records_from_event(event.payload);
    let outcome = handler.handle_until(&records, deadline).await;
    Ok(response(&outcome))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_json_round_trip() {
        let json = r#"{"Records":[{"kinesis":{"kinesisSchemaVersion":"1.0","partitionKey":"pk","sequenceNumber":"4959","data":"aGVsbG8K","approximateArrivalTimestamp":1545084650.987},"eventSource":"aws:kinesis","eventVersion":"1.0","eventID":"shardId-000000000006:4959","eventName":"aws:kinesis:record","invokeIdentityArn":"arn:aws:iam::123456789012:role/x","awsRegion":"us-east-2","eventSourceARN":"arn:aws:kinesis:us-east-2:123456789012:stream/s"}]}"#;
        let event: KinesisEvent = serde_json::from_str(json).expect("event parses");
        let records = records_from_event(event);
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].sequence_number, "4959");
        assert_eq!(records[0].partition_key, "pk");
        assert_eq!(records[0].data, b"hello\n");

        let outcome = Outcome {
            failed: vec!["4959".into()],
            ..Outcome::default()
        };
        let body = serde_json::to_string(&response(&outcome)).expect("serializes");
        assert_eq!(body, r#"{"batchItemFailures":[{"itemIdentifier":"4959"}]}"#);
        let empty = serde_json::to_string(&response(&Outcome::default())).expect("serializes");
        assert_eq!(empty, r#"{"batchItemFailures":[]}"#);
    }

    #[test]
    fn deadline_from_the_context() {
        assert!(deadline_instant(0).is_none());
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let d = deadline_instant(now_ms + 30_000).expect("set");
        let left = d.saturating_duration_since(Instant::now());
        assert!(
            left > Duration::from_secs(29) && left <= Duration::from_secs(30),
            "{left:?}"
        );
        assert!(deadline_instant(now_ms - 5_000).is_none());
    }
}
