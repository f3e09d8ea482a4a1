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
//! here from the generated requests), not one batch's share, and the
//! window's top client addresses with their counts and owners.
//!
//! The second test plays the moments that matter most: the first alarm of
//! an application CloudWatch has never listed (`ListMetrics` blinded by
//! the proxy, as CloudWatch is for up to fifteen minutes), under the
//! cheaper metric model without the `[SourceApplication]` rollup, and a
//! flood from addresses nobody owns, with EC2 instances in moto behind some
//! of them.
//!
//! The third shows the process's one metadata source: the handler and the
//! notifier share its cache, so the file is fetched once for both (issue
//! #24: the Lambda's handler and notifier each fetched the same object).

use std::net::IpAddr;

use crate::common::*;
use serde_json::{json, Value};
use tailrace_aggregator::clients::{build_handler, build_notifier, metadata_source, Clients};
use tailrace_aggregator::config::{parse_model, S3Location, Settings};
use tailrace_aggregator::entry::lambda::{classify, Invocation};
use tailrace_logformat::rfc3339_utc as rfc3339;
use tailrace_tests::cloudwatch_proxy::{CloudWatchProxy, CwFaults};
use tailrace_tests::s3_proxy::{NoListBucket, S3NoListProxy};
use tailrace_tests::{ec2, sdk_config_for, Moto};
use tailrace_wire::{ClientKey, ClientStats};

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

/// CloudWatch's message for the per-application Metrics Insights alarm
/// (the query of the stack's default model).
fn insights_alarm(threshold: f64, now: i64) -> Value {
    let query = format!("SELECT SUM(Requests) FROM SCHEMA(\"{NAMESPACE}\", SourceApplication) WHERE SourceApplication != 'unknown' GROUP BY SourceApplication ORDER BY SUM() DESC");
    query_alarm(
        "tailrace-source-application-requests",
        &query,
        threshold,
        now,
    )
}

/// CloudWatch's message for a Metrics Insights alarm over `query`.
fn query_alarm(name: &str, query: &str, threshold: f64, now: i64) -> Value {
    json!({
        "AlarmName": name,
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
                                 "Expression": query}]}
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

/// Bucket of the client tallies.
const TALLY_BUCKET: &str = "tallies";

/// `settings` writing and reading client tallies in `s3://tallies/t/`.
fn with_tallies(settings: Settings) -> Settings {
    Settings {
        tallies: Some(S3Location {
            bucket: TALLY_BUCKET.into(),
            key: "t/".into(),
        }),
        ..settings
    }
}

/// The notification topic and an SQS queue subscribed to it (a person's
/// inbox): the SQS client, the topic ARN and the queue URL.
async fn inbox(
    config: &aws_config::SdkConfig,
) -> anyhow::Result<(aws_sdk_sqs::Client, String, String)> {
    let sns = aws_sdk_sns::Client::new(config);
    let sqs = aws_sdk_sqs::Client::new(config);
    let topic = sns
        .create_topic()
        .name("tailrace-notifications")
        .send()
        .await?
        .topic_arn()
        .unwrap_or_default()
        .to_owned();
    let queue_url = queue_subscribed_to(&sns, &sqs, &topic, "inbox").await?;
    Ok((sqs, topic, queue_url))
}

/// The one message the inbox holds now: (subject, body).
async fn one_message(sqs: &aws_sdk_sqs::Client, url: &str) -> anyhow::Result<(String, String)> {
    let inbox = drain(sqs, url).await?;
    assert_eq!(inbox.len(), 1, "{inbox:#?}");
    let subject = inbox[0]["Subject"].as_str().unwrap_or_default().to_owned();
    let body = inbox[0]["Message"].as_str().unwrap_or_default().to_owned();
    eprintln!("{subject}\n{body}");
    Ok((subject, body))
}

/// A partial of `host` in `window` with `n` requests from each address.
fn partial_from(
    host: &str,
    seq: u64,
    window: i64,
    clients: &[(&str, u64)],
) -> tailrace_wire::Partial {
    let groups = clients.iter().map(|(ip, n)| {
        let ip: IpAddr = ip.parse().expect("test address");
        let mut stats = ClientStats::default();
        for _ in 0..*n {
            stats.record(Some(200), 100, Some(1_000));
        }
        (ClientKey::from(ip), stats)
    });
    partial_of(host, seq, "checkout", window, groups)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarm_to_the_person_with_contact_window_and_whole_total() -> anyhow::Result<()> {
    let moto = Moto::start()?;
    let config = moto.sdk_config().await;
    metadata_file(&moto, META).await?;
    let clients = Clients::new(&config);
    clients
        .s3
        .create_bucket()
        .bucket(TALLY_BUCKET)
        .send()
        .await?;
    let settings = with_tallies(settings());
    let handler = build_handler(&settings, &clients, &metadata_source(&settings, &clients))?;

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

    let (sqs, topic, queue_url) = inbox(&config).await?;
    let notifier = build_notifier(
        &settings,
        &clients,
        &metadata_source(&settings, &clients),
        &topic,
    );

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
    // Its top clients, across both hosts and both services.
    assert!(
        body.contains("Top clients:  2 of 2 addresses, from 2 hosts; counts exact\n"),
        "{body}"
    );
    assert!(
        body.contains("       1000  10.2.0.5  outside this account's VPCs\n"),
        "{body}"
    );
    assert!(
        body.contains("        500  10.2.1.6  outside this account's VPCs\n"),
        "{body}"
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
    assert!(body.contains("         12  192.0.2.7"), "{body}");
    assert!(body.contains("          8  192.0.2.8"), "{body}");

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

/// The first alarm of a brand-new application, with `ListMetrics` blind
/// and only the `[Service, SourceApplication]` set published, names the
/// application, its contact, the window's exact total and its top hosts;
/// the unknown-sources alarm (its query over the same schema) lists the
/// top addresses with exact counts and the EC2 instance behind the largest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_alarm_and_unknown_flood_without_list_metrics_or_rollup() -> anyhow::Result<()> {
    let moto = Moto::start()?;
    let config = moto.sdk_config().await;
    let ec2_client = aws_sdk_ec2::Client::new(&config);
    let ami = ec2::ami(&ec2_client).await?;
    // A VPC of the account, and two instances in it.
    let vpc = ec2_client
        .create_vpc()
        .cidr_block("10.4.0.0/16")
        .send()
        .await?
        .vpc()
        .and_then(|v| v.vpc_id().map(str::to_owned))
        .unwrap_or_default();
    let subnet = ec2_client
        .create_subnet()
        .vpc_id(&vpc)
        .cidr_block("10.4.1.0/24")
        .send()
        .await?
        .subnet()
        .and_then(|s| s.subnet_id().map(str::to_owned))
        .unwrap_or_default();
    let launch = |name: &'static str, ip: &'static str| {
        let ec2_client = ec2_client.clone();
        let (ami, subnet) = (ami.clone(), subnet.clone());
        async move {
            let out = ec2_client
                .run_instances()
                .image_id(ami)
                .min_count(1)
                .max_count(1)
                .subnet_id(subnet)
                .private_ip_address(ip)
                .tag_specifications(
                    aws_sdk_ec2::types::TagSpecification::builder()
                        .resource_type(aws_sdk_ec2::types::ResourceType::Instance)
                        .tags(
                            aws_sdk_ec2::types::Tag::builder()
                                .key("Name")
                                .value(name)
                                .build(),
                        )
                        .build(),
                )
                .send()
                .await?;
            anyhow::Ok(
                out.instances()
                    .first()
                    .and_then(|i| i.instance_id())
                    .unwrap_or_default()
                    .to_owned(),
            )
        }
    };
    let (search_ip, batch_ip) = ("10.4.1.10", "10.4.1.20");
    let search_id = launch("search-1", search_ip).await?;
    let batch_id = launch("nightly-batch", batch_ip).await?;
    // An address of the VPC that no interface holds (a released one).
    let released = "10.4.9.9";
    metadata_file(
        &moto,
        &format!("ip_or_cidr,application,contact\n{search_ip},search,search-team@example.com\n"),
    )
    .await?;
    let clients = Clients::new(&config);
    clients
        .s3
        .create_bucket()
        .bucket(TALLY_BUCKET)
        .send()
        .await?;
    let settings = with_tallies(Settings {
        namespace: "TailraceBlind".into(),
        model: parse_model(Some("Service+SourceApplication"), None)?,
        ..settings()
    });
    let handler = build_handler(&settings, &clients, &metadata_source(&settings, &clients))?;

    // One window: search's host sends 3,000 requests seen by two web
    // servers; unknown sources send 2,000.
    let w = window_ago(1);
    let (search, batch) = (search_ip, batch_ip);
    let batches = [
        partial_from(
            "web-1",
            1,
            w,
            &[(search, 2000), (batch, 900), (released, 300)],
        ),
        partial_from(
            "web-2",
            1,
            w,
            &[(search, 1000), (batch, 600), ("192.0.2.7", 200)],
        ),
    ];
    for (i, p) in batches.iter().enumerate() {
        let outcome = handler.handle(&[record(i as u64, p.encode())]).await;
        assert!(outcome.failed.is_empty(), "batch {i}: {outcome:?}");
        assert_eq!(
            outcome.stats.tallies, 2,
            "one object per application: {:?}",
            outcome.stats
        );
    }

    // The notifier reads CloudWatch through a proxy that lists nothing.
    let proxy = CloudWatchProxy::start(
        &moto.endpoint(),
        CwFaults {
            blind_list_metrics: true,
            ..CwFaults::default()
        },
    )?;
    let blind = Clients {
        cloudwatch: Clients::new(&sdk_config_for(&proxy.endpoint()).await).cloudwatch,
        ..clients.clone()
    };
    let (sqs, topic, queue_url) = inbox(&config).await?;
    let notifier = build_notifier(
        &settings,
        &blind,
        &metadata_source(&settings, &blind),
        &topic,
    );

    // 1. The multi time series alarm's contributor for search, as CloudWatch
    //    writes it when the query runs over the per-service schema.
    let query = "SELECT SUM(Requests) FROM SCHEMA(\"TailraceBlind\", Service, SourceApplication) WHERE SourceApplication != 'unknown' GROUP BY SourceApplication ORDER BY SUM() DESC";
    let mut alarm = query_alarm("tailrace-source-application-requests", query, 2500.0, now());
    alarm["AlarmContributor"] =
        json!({"ContributorId": "c1", "ContributorAttributes": {"SourceApplication": "search"}});
    let Invocation::Alarms(messages) = classify(sns_event(&alarm)).map_err(anyhow::Error::msg)?
    else {
        panic!("not alarms");
    };
    notifier.handle(&messages).await?;
    let (subject, body) = one_message(&sqs, &queue_url).await?;
    assert!(
        proxy.counts().list_metrics_blinded > 0,
        "ListMetrics was never asked"
    );
    assert!(subject.contains("search sent 3000 requests"), "{subject}");
    assert!(body.contains("Application:  search\n"), "{body}");
    assert!(
        body.contains("Contact:      search-team@example.com\n"),
        "{body}"
    );
    assert!(
        body.contains("Requests:     3000 in the whole window (threshold 2500)"),
        "{body}"
    );
    assert!(body.contains("Per service:  checkout 3000\n"), "{body}");
    assert!(
        body.contains("Top clients:  1 of 1 addresses, from 2 hosts; counts exact\n"),
        "{body}"
    );
    assert!(
        body.contains(&format!(
            "       3000  {search}  EC2 instance {search_id} \"search-1\" in {vpc} / {subnet}\n"
        )),
        "{body}"
    );

    // 2. The unknown-sources alarm over the same schema.
    let query = "SELECT SUM(Requests) FROM SCHEMA(\"TailraceBlind\", Service, SourceApplication) WHERE SourceApplication = 'unknown'";
    let alarm = query_alarm("tailrace-unknown-sources", query, 1000.0, now());
    let Invocation::Alarms(messages) = classify(sns_event(&alarm)).map_err(anyhow::Error::msg)?
    else {
        panic!("not alarms");
    };
    notifier.handle(&messages).await?;
    let (subject, body) = one_message(&sqs, &queue_url).await?;
    assert!(subject.contains("unknown sent 2000 requests"), "{subject}");
    assert!(body.contains("Contact:      nobody"), "{body}");
    assert!(
        body.contains("Top clients:  3 of 3 addresses, from 2 hosts; counts exact\n"),
        "{body}"
    );
    let pad = |a: &str| format!("{a:<9}");
    assert!(
        body.contains(&format!(
            "       1500  {}  EC2 instance {batch_id} \"nightly-batch\" in {vpc} / {subnet}\n",
            pad(batch)
        )),
        "{body}"
    );
    assert!(
        body.contains(&format!(
            "        300  {}  in 10.4.0.0/16 ({vpc}), no application; no network interface has it now\n",
            pad(released)
        )),
        "{body}"
    );
    assert!(
        body.contains(&format!(
            "        200  {}  outside this account's VPCs\n",
            pad("192.0.2.7")
        )),
        "{body}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handler_and_the_notifier_fetch_the_metadata_file_once() -> anyhow::Result<()> {
    let moto = Moto::start()?;
    let config = moto.sdk_config().await;
    metadata_file(&moto, META).await?;
    // S3 through a proxy that counts its requests (and changes nothing).
    let s3_proxy = S3NoListProxy::start(&moto.endpoint(), NoListBucket::default())?;
    let clients = Clients {
        s3: Clients::new(&sdk_config_for(&s3_proxy.endpoint()).await).s3,
        ..Clients::new(&config)
    };
    // As the Lambda runs: a TTL longer than the test, one source for both.
    let settings = Settings {
        metadata_ttl: std::time::Duration::from_secs(600),
        ..settings()
    };
    let metadata = metadata_source(&settings, &clients);
    let handler = build_handler(&settings, &clients, &metadata)?;
    let (sqs, topic, queue_url) = inbox(&config).await?;
    let notifier = build_notifier(&settings, &clients, &metadata, &topic);

    let w = window_ago(2);
    let p = partial(
        "h1",
        1,
        "checkout",
        w,
        &reqs(1_500, "10.2.0.5", 200, 10, None),
    );
    let outcome = handler.handle(&[record(1, p.encode())]).await;
    assert!(outcome.failed.is_empty(), "{outcome:?}");
    let Invocation::Alarms(messages) =
        classify(sns_event(&insights_alarm(1000.0, now()))).map_err(anyhow::Error::msg)?
    else {
        panic!("an SNS event of alarm notifications is not a Kinesis event");
    };
    let sent = notifier.handle(&messages).await?;
    assert_eq!(sent.len(), 1, "{sent:#?}");
    let (_, body) = one_message(&sqs, &queue_url).await?;
    // The notifier had the file (the contact is in it) without reading it.
    assert!(
        body.contains("Contact:      billing-oncall@example.com\n"),
        "{body}"
    );
    assert_eq!(
        s3_proxy.counts().calls,
        1,
        "the file is fetched once, by the handler; the notifier shares its copy"
    );
    Ok(())
}
