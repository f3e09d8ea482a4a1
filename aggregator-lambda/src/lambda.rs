//! The Lambda side: a Kinesis event from the event source mapping → the
//! handler → a `KinesisEventResponse` listing only the records that really
//! failed (`ReportBatchItemFailures`). An empty list checkpoints the batch.

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

/// Handle one invocation.
pub async fn handle_event(
    handler: &Handler,
    event: LambdaEvent<KinesisEvent>,
) -> Result<KinesisEventResponse, lambda_runtime::Error> {
    let records = records_from_event(event.payload);
    let outcome = handler.handle(&records).await;
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
}
