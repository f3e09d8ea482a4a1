//! The Lambda side: a Kinesis event from the event source mapping → the
//! handler → a `KinesisEventResponse` listing only the records that really
//! failed (`ReportBatchItemFailures`). An empty list checkpoints the batch.
//!
//! The same function is subscribed to the alarm topic: an SNS event whose
//! records carry CloudWatch alarm state changes goes to the notifier
//! ([`crate::notify`]) instead ([`classify`], [`handle_invocation`]).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_lambda_events::event::streams::KinesisEventResponse;
use lambda_runtime::LambdaEvent;

use crate::entry::handler::{Handler, Outcome};
use crate::ingest::batch::InputRecord;
use crate::notify::{alarm_messages, Notifier};

/// What one invocation carries.
#[derive(Debug)]
pub enum Invocation {
    /// Records from the event source mapping.
    Kinesis(KinesisEvent),
    /// CloudWatch alarm messages delivered by SNS.
    Alarms(Vec<String>),
}

/// Tell an SNS event carrying alarm notifications from a Kinesis event.
/// Anything else is an error naming what was expected.
pub fn classify(payload: serde_json::Value) -> Result<Invocation, String> {
    if let Some(messages) = alarm_messages(&payload) {
        return Ok(Invocation::Alarms(messages));
    }
    serde_json::from_value::<KinesisEvent>(payload)
        .map(Invocation::Kinesis)
        .map_err(|e| {
            format!(
                "the event is neither a Kinesis event nor an SNS event of alarm notifications: {e}"
            )
        })
}

/// Handle any invocation: Kinesis records as [`handle_event`] does, alarm
/// notifications with `notifier` (an error when there is none, so SNS
/// retries and the failure shows in the function's `Errors`).
pub async fn handle_invocation(
    handler: &Handler,
    notifier: Option<&Notifier>,
    event: LambdaEvent<serde_json::Value>,
) -> Result<serde_json::Value, lambda_runtime::Error> {
    let (payload, context) = event.into_parts();
    match classify(payload)? {
        Invocation::Kinesis(kinesis) => {
            let response = handle_event(handler, LambdaEvent::new(kinesis, context)).await?;
            Ok(serde_json::to_value(response)?)
        }
        Invocation::Alarms(messages) => {
            let notifier = notifier.ok_or_else(|| {
                format!(
                    "an alarm notification arrived but {} is not set: nowhere to publish it",
                    crate::config::ENV_NOTIFY_TOPIC
                )
            })?;
            let sent = notifier.handle(&messages).await?;
            Ok(serde_json::json!({ "notifications": sent.len() }))
        }
    }
}

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
    fn kinesis_and_sns_events_are_told_apart() {
        let kinesis = r#"{"Records":[{"kinesis":{"kinesisSchemaVersion":"1.0","partitionKey":"pk","sequenceNumber":"4959","data":"aGVsbG8K","approximateArrivalTimestamp":1545084650.987},"eventSource":"aws:kinesis","eventVersion":"1.0","eventID":"shardId-000000000006:4959","eventName":"aws:kinesis:record","invokeIdentityArn":"arn:aws:iam::123456789012:role/x","awsRegion":"us-east-2","eventSourceARN":"arn:aws:kinesis:us-east-2:123456789012:stream/s"}]}"#;
        match classify(serde_json::from_str(kinesis).expect("json")) {
            Ok(Invocation::Kinesis(e)) => assert_eq!(e.records.len(), 1),
            other => panic!("{other:?}"),
        }
        let sns = r#"{"Records":[{"EventSource":"aws:sns","EventVersion":"1.0","EventSubscriptionArn":"arn:aws:sns:us-east-1:123456789012:alarms:1","Sns":{"Type":"Notification","MessageId":"95df01b4","TopicArn":"arn:aws:sns:us-east-1:123456789012:alarms","Subject":"ALARM","Message":"{\"AlarmName\":\"a\"}","Timestamp":"2026-12-01T07:12:04.000Z"}}]}"#;
        match classify(serde_json::from_str(sns).expect("json")) {
            Ok(Invocation::Alarms(m)) => assert_eq!(m, vec![r#"{"AlarmName":"a"}"#.to_string()]),
            other => panic!("{other:?}"),
        }
        let e = classify(serde_json::json!({"hello": 1})).expect_err("neither");
        assert!(
            e.contains("neither a Kinesis event nor an SNS event"),
            "{e}"
        );
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
