//! The alarm notifier against moto_server (S3, CloudWatch, SNS, SQS).
//!
//! The handler publishes one window of traffic in several batches (hosts
//! and a late partial), so CloudWatch holds several datapoints for it. An
//! alarm notification is built the way CloudWatch writes it (moto does not
//! evaluate alarms, nor publish alarm actions) and delivered the way the
//! Lambda receives it (an SNS event); the notifier publishes to an SNS
//! topic, an SQS queue subscribed to it receives the message, and the test
//! reads it: the application, its contact from the metadata file, the
//! window and the window's whole total (the sum of every batch, counted
//! here from the generated requests), not one batch's share.

use crate::common::*;
use serde_json::{json, Value};
use tailrace_aggregator::handler::rfc3339;
use tailrace_aggregator::lambda::{classify, Invocation};
use tailrace_aggregator::metadata_source::MetadataSource;
use tailrace_aggregator::notify::Notifier;
use tailrace_tests::Moto;

const META: &str = "\
ip_or_cidr,application,contact
10.2.0.0/16,billing,billing-oncall@example.com
10.3.0.0/16,search,search-team@example.com
";

/// A Lambda SNS event carrying `alarm` (CloudWatch's JSON) as its message.
fn sns_event(alarm: &Value) -> Value {
    json!({"Records": [{
        "EventSource": "aws:sns", "EventVersion": "1.0",
        "EventSubscriptionArn": "arn:aws:sns:us-east-1:123456789012:alarms:0b1f",
        "Sns": {"Type": "Notification", "MessageId": "5f2f4c1e-0000-4000-8000-000000000001",
                "TopicArn": "arn:aws:sns:us-east-1:123456789012:alarms",
                "Subject": "ALARM", "Message": alarm.to_string(),
                "Timestamp": "2026-12-01T07:12:04.000Z", "SignatureVersion": "1"}}]})
}

/// CloudWatch's message for the per-application Metrics Insights alarm.
fn insights_alarm(threshold: f64, now: i64) -> Value {
    json!({
        "AlarmName": "tailrace-source-application-requests",
        "AlarmDescription": "A source application sent more than the threshold in one window.",
        "AWSAccountId": "123456789012",
        "NewStateValue": "ALARM",
        "NewStateReason": "Threshold Crossed: 1 out of the last 3 datapoints was greater than the threshold",
        "StateChangeTime": cw_time(now),
        "Region": "US East (N. Virginia)",
        "AlarmArn": "arn:aws:cloudwatch:us-east-1:123456789012:alarm:tailrace-source-application-requests",
        "OldStateValue": "OK",
        "Trigger": {"Period": 300, "EvaluationPeriods": 3, "ComparisonOperator": "GreaterThanThreshold",
                    "Threshold": threshold, "TreatMissingData": "notBreaching",
                    "Metrics": [{"Id": "perapp", "Label": "Requests per source application", "Period": 300,
                                 "ReturnData": true,
                                 "Expression": format!("SELECT SUM(Requests) FROM SCHEMA(\"{NAMESPACE}\", SourceApplication) WHERE SourceApplication != 'unknown' GROUP BY SourceApplication ORDER BY SUM() DESC")}]}
    })
}

/// CloudWatch's message for the single-metric `unknown` alarm.
fn unknown_alarm(threshold: f64, now: i64) -> Value {
    json!({
        "AlarmName": "tailrace-unknown-sources", "AlarmDescription": "Unknown sources.",
        "NewStateValue": "ALARM", "NewStateReason": "Threshold Crossed",
        "StateChangeTime": cw_time(now), "OldStateValue": "OK",
        "Trigger": {"MetricName": "Requests", "Namespace": NAMESPACE, "StatisticType": "Statistic",
                    "Statistic": "SUM", "Dimensions": [{"value": "unknown", "name": "SourceApplication"}],
                    "Period": 300, "EvaluationPeriods": 3, "ComparisonOperator": "GreaterThanThreshold",
                    "Threshold": threshold, "TreatMissingData": "notBreaching"}
    })
}

/// `2026-12-01T07:12:03.000+0000`, as CloudWatch writes StateChangeTime.
fn cw_time(secs: i64) -> String {
    rfc3339(secs).replace('Z', ".000+0000")
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// Every message the queue holds now (SNS envelopes, parsed).
async fn drain(sqs: &aws_sdk_sqs::Client, url: &str) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    loop {
        let r = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await?;
        if r.messages().is_empty() {
            return Ok(out);
        }
        for m in r.messages() {
            out.push(serde_json::from_str(m.body().unwrap_or("{}"))?);
            if let Some(h) = m.receipt_handle() {
                sqs.delete_message()
                    .queue_url(url)
                    .receipt_handle(h)
                    .send()
                    .await?;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarm_to_the_person_with_contact_window_and_whole_total() -> anyhow::Result<()> {
    let moto = Moto::start()?;
    let config = moto.sdk_config().await;
    metadata_file(&moto, META).await?;
    let (handler, clients) = moto_handler(&moto).await?;

    // One window, several batches: two hosts, then a late partial of the
    // first; an earlier window with less. Totals counted here.
    let w = window_ago(2);
    let batches = [
        (
            "h1",
            1,
            "checkout",
            w,
            [
                reqs(700, "10.2.0.5", 200, 10, None),
                reqs(40, "10.3.0.9", 200, 10, None),
                reqs(12, "192.0.2.7", 404, 1, None),
            ]
            .concat(),
        ),
        (
            "h2",
            1,
            "checkout",
            w,
            [
                reqs(500, "10.2.1.6", 200, 10, None),
                reqs(8, "192.0.2.8", 200, 1, None),
            ]
            .concat(),
        ),
        ("h1", 2, "reports", w, reqs(300, "10.2.0.5", 500, 10, None)),
        (
            "h1",
            3,
            "checkout",
            w - 300,
            reqs(200, "10.2.0.5", 200, 10, None),
        ),
    ];
    let count = |app_prefix: &str, window: i64| -> usize {
        batches
            .iter()
            .filter(|b| b.3 == window)
            .flat_map(|b| b.4.iter())
            .filter(|r| r.ip.starts_with(app_prefix))
            .count()
    };
    let billing_total = count("10.2.", w);
    let search_total = count("10.3.", w);
    let unknown_total = count("192.0.2.", w);
    let largest_batch_share = 700;
    assert_eq!(billing_total, 1500);
    for (i, (host, seq, service, window, requests)) in batches.iter().enumerate() {
        let p = partial(host, *seq, service, *window, requests);
        let outcome = handler.handle(&[record(i as u64, p.encode())]).await;
        assert!(outcome.failed.is_empty(), "batch {i}: {outcome:?}");
    }

    // The notification topic, read through an SQS subscription.
    let sns = aws_sdk_sns::Client::new(&config);
    let sqs = aws_sdk_sqs::Client::new(&config);
    let topic = sns
        .create_topic()
        .name("tailrace-notifications")
        .send()
        .await?
        .topic_arn()
        .unwrap_or_default()
        .to_owned();
    let queue_url = sqs
        .create_queue()
        .queue_name("inbox")
        .send()
        .await?
        .queue_url()
        .unwrap_or_default()
        .to_owned();
    let queue_arn = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await?
        .attributes()
        .and_then(|a| {
            a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                .cloned()
        })
        .unwrap_or_default();
    sns.subscribe()
        .topic_arn(&topic)
        .protocol("sqs")
        .endpoint(&queue_arn)
        .send()
        .await?;

    let metadata = MetadataSource::new(
        clients.s3.clone(),
        settings().metadata.expect("settings name a file"),
        std::time::Duration::ZERO,
    );
    let notifier = Notifier::new(
        clients.cloudwatch.clone(),
        sns.clone(),
        metadata,
        NAMESPACE,
        &topic,
    )
    .with_who_query("tailrace/who-do-i-call");

    // 1. The per-application alarm (threshold between the largest batch
    //    share and the window's total): the event as the Lambda gets it.
    let threshold = 1000.0;
    assert!((largest_batch_share as f64) < threshold && threshold < billing_total as f64);
    let Invocation::Alarms(messages) =
        classify(sns_event(&insights_alarm(threshold, now()))).map_err(anyhow::Error::msg)?
    else {
        panic!("an SNS event of alarm notifications is not a Kinesis event");
    };
    let sent = notifier.handle(&messages).await?;
    assert_eq!(
        sent.len(),
        1,
        "only billing is above the threshold: {sent:#?}"
    );

    let inbox = drain(&sqs, &queue_url).await?;
    assert_eq!(inbox.len(), 1, "{inbox:#?}");
    let subject = inbox[0]["Subject"].as_str().unwrap_or_default();
    let body = inbox[0]["Message"].as_str().unwrap_or_default();
    eprintln!("{subject}\n{body}");
    assert!(
        subject.contains("billing") && subject.contains(&billing_total.to_string()),
        "{subject}"
    );
    assert!(body.contains("Application:  billing\n"), "{body}");
    assert!(
        body.contains("Contact:      billing-oncall@example.com\n"),
        "{body}"
    );
    assert!(
        body.contains(&format!(
            "Window:       {} to {}",
            rfc3339(w),
            rfc3339(w + 300)
        )),
        "{body}"
    );
    assert!(
        body.contains(&format!(
            "Requests:     {billing_total} in the whole window (threshold 1000)"
        )),
        "{body}"
    );
    assert!(
        body.contains("Per service:  checkout 1200, reports 300\n"),
        "{body}"
    );
    assert!(
        !body.contains("search"),
        "search ({search_total}) is below the threshold: {body}"
    );

    // 2. The unknown-sources alarm names its application itself.
    let Invocation::Alarms(messages) =
        classify(sns_event(&unknown_alarm(10.0, now()))).map_err(anyhow::Error::msg)?
    else {
        panic!("not alarms");
    };
    notifier.handle(&messages).await?;
    let inbox = drain(&sqs, &queue_url).await?;
    assert_eq!(inbox.len(), 1, "{inbox:#?}");
    let body = inbox[0]["Message"].as_str().unwrap_or_default();
    eprintln!("{body}");
    assert!(body.contains("Application:  unknown\n"), "{body}");
    assert!(body.contains("Contact:      nobody"), "{body}");
    assert!(
        body.contains(&format!(
            "Requests:     {unknown_total} in the whole window"
        )),
        "{body}"
    );

    // 3. A pipeline alarm is passed on; a message that is no alarm fails
    //    the invocation (SNS retries it) and names what is missing.
    let poison = json!({"AlarmName": "tailrace-poison-records", "NewStateValue": "ALARM",
        "NewStateReason": "Threshold Crossed", "StateChangeTime": cw_time(now()),
        "Trigger": {"MetricName": "PoisonRecords", "Namespace": NAMESPACE, "Period": 300,
                    "EvaluationPeriods": 1, "Threshold": 0.0, "Dimensions": []}});
    let Invocation::Alarms(messages) = classify(sns_event(&poison)).map_err(anyhow::Error::msg)?
    else {
        panic!("not alarms");
    };
    notifier.handle(&messages).await?;
    let inbox = drain(&sqs, &queue_url).await?;
    assert_eq!(inbox.len(), 1, "{inbox:#?}");
    assert_eq!(inbox[0]["Subject"], "ALARM: tailrace-poison-records");
    let bad = notifier.handle(&["{\"hello\":1}".to_string()]).await;
    assert!(
        bad.as_ref()
            .err()
            .is_some_and(|e| e.to_string().contains("no AlarmName")),
        "{bad:?}"
    );
    Ok(())
}
