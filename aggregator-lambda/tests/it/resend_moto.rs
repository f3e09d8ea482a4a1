//! A notification that could not be sent is kept and re-sent
//! (`tailrace_aggregator::notify::resend`), against moto_server (SQS, SNS, S3).
//!
//! moto runs no Lambda for our runtime and sends no on-failure records, so
//! the queue is given the record as Lambda documents it for asynchronous
//! invocations (`requestContext`, `requestPayload` = the SNS event the
//! notifier got, `responseContext`, `responsePayload`); that the stack
//! routes the notifier's failures to that queue is checked on the template
//! (`packaging/cloudformation/check_template.py`, `check_failures`).

use std::time::Duration;

use crate::common::*;
use serde_json::{json, Value};
use tailrace_aggregator::join::metadata_source::MetadataSource;
use tailrace_aggregator::notify::resend::{resend_queue, ResendSummary};
use tailrace_aggregator::notify::Notifier;
use tailrace_tests::{Moto, Piped};

/// CloudWatch's message for a pipeline alarm (no window total to read).
fn silent_alarm() -> Value {
    json!({
        "AlarmName": "tailrace-agents-silent",
        "AlarmDescription": "The stream received fewer records than expected.",
        "NewStateValue": "ALARM",
        "NewStateReason": "Threshold Crossed: 1 datapoint [0.0] was less than the threshold (1.0).",
        "StateChangeTime": "2026-12-01T07:12:03.000+0000",
        "OldStateValue": "OK",
        "Trigger": {"MetricName": "IncomingRecords", "Namespace": "AWS/Kinesis", "Statistic": "SUM",
                    "Dimensions": [{"name": "StreamName", "value": "apache-logs"}],
                    "Period": 900, "EvaluationPeriods": 1, "ComparisonOperator": "LessThanThreshold",
                    "Threshold": 1.0, "TreatMissingData": "breaching"}
    })
}

/// Lambda's on-failure record of an SNS invocation of the notifier.
fn invocation_record(alarm: &Value) -> Value {
    json!({
        "version": "1.0",
        "timestamp": "2026-12-01T07:15:04.312Z",
        "requestContext": {
            "requestId": "0f4b9e3a-6a49-4b3e-9a35-3f2f0e2b8c11",
            "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:tailrace-Aggregator-1X2Y:$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": 3
        },
        "requestPayload": {"Records": [{
            "EventSource": "aws:sns", "EventVersion": "1.0",
            "EventSubscriptionArn": "arn:aws:sns:us-east-1:123456789012:alarms:0b1f",
            "Sns": {"Type": "Notification", "MessageId": "5f2f4c1e-0000-4000-8000-000000000009",
                    "TopicArn": "arn:aws:sns:us-east-1:123456789012:alarms",
                    "Subject": "ALARM", "Message": alarm.to_string(),
                    "Timestamp": "2026-12-01T07:12:04.000Z", "SignatureVersion": "1"}}]},
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": {"errorType": "NotifyError",
                            "errorMessage": "publishing to arn:aws:sns:us-east-1:123456789012:tailrace-notifications: NotFound"}
    })
}

async fn visible(sqs: &aws_sdk_sqs::Client, url: &str) -> anyhow::Result<usize> {
    let a = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await?;
    Ok(a.attributes()
        .and_then(|m| m.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_notification_is_kept_and_re_sent() -> anyhow::Result<()> {
    let moto = Moto::start()?;
    let config = moto.sdk_config().await;
    let s3 = metadata_file(&moto, "ip_or_cidr,application,contact\n").await?;
    let sns = aws_sdk_sns::Client::new(&config);
    let sqs = aws_sdk_sqs::Client::new(&config);
    let cw = aws_sdk_cloudwatch::Client::new(&config);
    let failures = sqs
        .create_queue()
        .queue_name("notify-failures")
        .send()
        .await?
        .queue_url()
        .unwrap_or_default()
        .to_owned();
    // The notification topic's ARN, then the topic gone: SNS refuses the publish.
    let topic = sns
        .create_topic()
        .name("tailrace-notifications")
        .send()
        .await?
        .topic_arn()
        .unwrap_or_default()
        .to_owned();
    sns.delete_topic().topic_arn(&topic).send().await?;
    sqs.send_message()
        .queue_url(&failures)
        .message_body(invocation_record(&silent_alarm()).to_string())
        .send()
        .await?;
    // A message that is no invocation record of alarms is kept, never sent.
    sqs.send_message()
        .queue_url(&failures)
        .message_body(r#"{"requestPayload": {"Records": [{"eventSource": "aws:kinesis"}]}}"#)
        .send()
        .await?;

    // Still failing: both messages stay, visible again for the next run.
    let metadata = MetadataSource::new(
        s3,
        settings().metadata.expect("settings name a file"),
        Duration::ZERO,
    );
    let notifier = Notifier::new(cw, sns.clone(), metadata, NAMESPACE, &topic);
    let summary = resend_queue(&sqs, &notifier, &failures, false).await?;
    assert_eq!(
        summary,
        ResendSummary {
            messages: 2,
            alarms: 1,
            sent: 0,
            deleted: 0,
            kept: 2
        }
    );
    assert_eq!(visible(&sqs, &failures).await?, 2);

    // The topic is back (with a subscriber): the operator's command re-sends.
    sns.create_topic()
        .name("tailrace-notifications")
        .send()
        .await?;
    let inbox = queue_subscribed_to(&sns, &sqs, &topic, "inbox").await?;
    let out = Piped::spawn(
        aggregator_cli(
            &moto,
            &["resend", "--queue-url", &failures, "--topic", &topic],
        )
        .env("TAILRACE_NAMESPACE", NAMESPACE),
    )?
    .wait(Duration::from_secs(60))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The unreadable message is still kept: exit 1, said so.
    assert!(!out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(
            "2 queue messages, 1 alarms: 1 notifications sent, 1 messages deleted, 1 kept"
        ),
        "{stdout}\n{stderr}"
    );
    assert!(
        stderr.contains("not an invocation record of alarm notifications"),
        "{stderr}"
    );
    assert_eq!(
        visible(&sqs, &failures).await?,
        1,
        "only the unreadable one is left"
    );
    let got = sqs
        .receive_message()
        .queue_url(&inbox)
        .max_number_of_messages(10)
        .wait_time_seconds(2)
        .send()
        .await?;
    assert_eq!(got.messages().len(), 1);
    let envelope: Value = serde_json::from_str(got.messages()[0].body().unwrap_or("{}"))?;
    let text = format!("{} {}", envelope["Subject"], envelope["Message"]);
    assert!(text.contains("tailrace-agents-silent"), "{text}");
    Ok(())
}
