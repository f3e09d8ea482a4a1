//! Re-sending the notifications that could not be sent: what the notifier's
//! on-failure destination (the stack's `NotifyFailures` queue) holds.
//!
//! SNS invokes the notifier asynchronously. When an invocation still fails
//! after Lambda's retries (GetMetricData throttled, the notification topic
//! or its key refusing the publish), Lambda sends the function's on-failure
//! destination an *invocation record*: JSON with `requestContext`
//! (`condition`: `RetriesExhausted` or `EventAgeExceeded`,
//! `approximateInvokeCount`), `requestPayload` (the event the function was
//! given: here the SNS event carrying CloudWatch's alarm message),
//! `responseContext` and `responsePayload` (the error). This module reads
//! those records from the queue, takes the alarm messages out of each
//! `requestPayload` with [`crate::notify::alarm_messages`], hands them to the
//! same [`Notifier`] the Lambda uses, and deletes a queue message only when
//! every alarm of it was sent. A message that fails again, or that is not an
//! invocation record of alarms, stays in the queue (visible again at the end
//! of the run) and is reported. A queue message holding the bare SNS event
//! (a dead-letter queue's message) is read as well.
//!
//! The window totals in a re-sent notification are read from CloudWatch when
//! it is re-sent, so they are the window's whole total, as in the first try.

use std::collections::HashSet;

use serde_json::Value;

use crate::notify::{alarm_messages, parse_alarm, Notifier, NotifyError};

/// Messages received per call (SQS allows 10).
const BATCH: i32 = 10;
/// How long a received message stays invisible to other readers while
/// this run handles it.
const VISIBILITY_SECS: i32 = 120;

/// Reading or cleaning the queue failed.
#[derive(Debug, thiserror::Error)]
pub enum ResendError {
    /// An SQS call failed.
    #[error("SQS {operation} on {queue}: {message}")]
    Sqs {
        /// The operation.
        operation: &'static str,
        /// The queue URL.
        queue: String,
        /// What SQS (or the connection) said.
        message: String,
    },
}

/// Why one queue message holds no alarm to send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an invocation record of alarm notifications: {0}")]
pub struct NotARecord(pub String);

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResendSummary {
    /// Queue messages read.
    pub messages: usize,
    /// Alarm messages found in them.
    pub alarms: usize,
    /// Notifications published.
    pub sent: usize,
    /// Queue messages deleted (every alarm of them sent).
    pub deleted: usize,
    /// Queue messages kept: sending failed again, or unreadable.
    pub kept: usize,
}

/// The alarm messages of one queue message: an invocation record's
/// `requestPayload`, or the message itself when it already is an SNS event
/// (or anything [`alarm_messages`] reads).
pub fn alarms_of_record(body: &str) -> Result<Vec<String>, NotARecord> {
    let value: Value =
        serde_json::from_str(body).map_err(|e| NotARecord(format!("not JSON ({e})")))?;
    let payload = value.get("requestPayload").unwrap_or(&value);
    alarm_messages(payload).ok_or_else(|| {
        NotARecord(match value.get("requestContext") {
            Some(ctx) => format!(
                "the record's requestPayload is not an SNS event of alarms (requestContext {ctx})"
            ),
            None => "neither an invocation record nor an SNS event".into(),
        })
    })
}

/// Re-send every notification the queue at `queue_url` holds, with
/// `notifier`; with `dry_run`, only list the alarms (nothing sent, nothing
/// deleted).
pub async fn resend_queue(
    sqs: &aws_sdk_sqs::Client,
    notifier: &Notifier,
    queue_url: &str,
    dry_run: bool,
) -> Result<ResendSummary, ResendError> {
    let err = |operation: &'static str, e: &dyn std::fmt::Display| ResendError::Sqs {
        operation,
        queue: queue_url.to_owned(),
        message: e.to_string(),
    };
    let mut summary = ResendSummary::default();
    let mut seen: HashSet<String> = HashSet::new();
    let mut kept: Vec<String> = Vec::new();
    loop {
        let received = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(BATCH)
            .visibility_timeout(VISIBILITY_SECS)
            .wait_time_seconds(1)
            .send()
            .await
            .map_err(|e| {
                err(
                    "ReceiveMessage",
                    &aws_sdk_sqs::error::DisplayErrorContext(e),
                )
            })?;
        let fresh: Vec<_> = received
            .messages()
            .iter()
            .filter(|m| seen.insert(m.message_id().unwrap_or_default().to_owned()))
            .collect();
        if fresh.is_empty() {
            break;
        }
        for m in fresh {
            summary.messages += 1;
            let handle = m.receipt_handle().unwrap_or_default().to_owned();
            let id = m.message_id().unwrap_or_default();
            let alarms = match alarms_of_record(m.body().unwrap_or_default()) {
                Ok(a) => a,
                Err(e) => {
                    tracing::error!(message_id = id, error = %e, "queue message kept");
                    summary.kept += 1;
                    kept.push(handle);
                    continue;
                }
            };
            summary.alarms += alarms.len();
            if dry_run {
                for a in &alarms {
                    match parse_alarm(a) {
                        Ok(c) => println!("{id}: {} {} at {}", c.name, c.state, c.time),
                        Err(e) => println!("{id}: {e}"),
                    }
                }
                kept.push(handle);
                continue;
            }
            match notifier.handle(&alarms).await {
                Ok(sent) => {
                    summary.sent += sent.len();
                    sqs.delete_message()
                        .queue_url(queue_url)
                        .receipt_handle(&handle)
                        .send()
                        .await
                        .map_err(|e| {
                            err("DeleteMessage", &aws_sdk_sqs::error::DisplayErrorContext(e))
                        })?;
                    summary.deleted += 1;
                    tracing::info!(
                        message_id = id,
                        notifications = sent.len(),
                        "notifications re-sent"
                    );
                }
                Err(e) => {
                    log_kept(id, &e);
                    summary.kept += 1;
                    kept.push(handle);
                }
            }
        }
    }
    // Kept messages are visible again at once, for the next run.
    for handle in kept {
        sqs.change_message_visibility()
            .queue_url(queue_url)
            .receipt_handle(handle)
            .visibility_timeout(0)
            .send()
            .await
            .map_err(|e| {
                err(
                    "ChangeMessageVisibility",
                    &aws_sdk_sqs::error::DisplayErrorContext(e),
                )
            })?;
    }
    Ok(summary)
}

fn log_kept(id: &str, e: &NotifyError) {
    tracing::error!(message_id = id, error = %e, "notification still not sent: queue message kept");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sns_event(message: &str) -> Value {
        serde_json::json!({"Records": [{"EventSource": "aws:sns", "EventVersion": "1.0",
            "Sns": {"Type": "Notification", "MessageId": "m-1",
                    "TopicArn": "arn:aws:sns:us-east-1:123456789012:alarms",
                    "Message": message}}]})
    }

    #[test]
    fn the_alarms_of_an_invocation_record_and_of_a_bare_event() {
        let alarm = r#"{"AlarmName":"tailrace-agents-silent","NewStateValue":"ALARM"}"#;
        // As Lambda documents its on-failure record for asynchronous invocations.
        let record = serde_json::json!({
            "version": "1.0",
            "timestamp": "2026-12-01T07:13:02.117Z",
            "requestContext": {"requestId": "e4b46cbf-b738-44de-8b2e-2b5c7ef5e2c9",
                "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:tailrace-Aggregator:$LATEST",
                "condition": "RetriesExhausted", "approximateInvokeCount": 3},
            "requestPayload": sns_event(alarm),
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
            "responsePayload": {"errorMessage": "publishing to arn:aws:sns:us-east-1:123456789012:n: NotFound", "errorType": "NotifyError"}
        });
        assert_eq!(
            alarms_of_record(&record.to_string()),
            Ok(vec![alarm.to_string()])
        );
        assert_eq!(
            alarms_of_record(&sns_event(alarm).to_string()),
            Ok(vec![alarm.to_string()])
        );
        let kinesis = serde_json::json!({"requestContext": {"condition": "RetriesExhausted"},
            "requestPayload": {"Records": [{"eventSource": "aws:kinesis"}]}});
        let e = alarms_of_record(&kinesis.to_string()).expect_err("not alarms");
        assert!(e.0.contains("requestPayload is not an SNS event"), "{e}");
        let e = alarms_of_record("not json").expect_err("not JSON");
        assert!(e.0.contains("not JSON"), "{e}");
    }
}
