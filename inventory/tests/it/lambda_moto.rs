//! The Lambda handler with real EventBridge event JSON against moto_server:
//! launch and terminate events, the schedule, malformed events, instances
//! without tags or addresses, and a file a person broke (kept as it is).

use crate::common::*;
use anyhow::{Context, Result};
use serde_json::json;
use tailrace_aggregator::metadata::Metadata;
use tailrace_inventory::ec2::Fleet;
use tailrace_inventory::lambda::{handle, Updater};
use tailrace_inventory::owner::TagKeys;
use tailrace_inventory::store::Location;
use tailrace_inventory::sync::Options;

const BUCKET: &str = "meta";
const KEY: &str = "inventory/metadata.csv";

fn asg_event(detail_type: &str, id: &str) -> serde_json::Value {
    json!({
        "version": "0",
        "id": "3e3c153a-8339-4e30-8c35-687ebef853fe",
        "detail-type": detail_type,
        "source": "aws.autoscaling",
        "account": "123456789012",
        "time": "2026-12-01T07:00:00Z",
        "region": "us-east-1",
        "resources": ["arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:x:autoScalingGroupName/web"],
        "detail": {
            "StatusCode": "InProgress",
            "AutoScalingGroupName": "web",
            "ActivityId": "9cabb81f-42de-417d-8aa7-ce16bf026590",
            "RequestId": "9cabb81f-42de-417d-8aa7-ce16bf026590",
            "EC2InstanceId": id,
            "Cause": "At 2026-12-01T07:00:00Z a user request update of AutoScalingGroup constraints...",
            "Details": {"Availability Zone": "us-east-1a"}
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_follows_events_and_survives_bad_input() -> Result<()> {
    let (_moto, sdk, s3, ec2) = moto_with_bucket(BUCKET).await?;
    let updater = Updater {
        s3: s3.clone(),
        fleet: Fleet::new(&sdk, TagKeys::default()),
        location: Location {
            bucket: BUCKET.into(),
            key: KEY.into(),
        },
        options: Options::default(),
        namespace: "Tailrace".into(),
    };
    let ami = ami(&ec2).await?;

    // No file yet: the launch event creates it (If-None-Match: *).
    let a = launch(&ec2, &ami, 1, &owner_tags("web", "a,b \"c\"")).await?;
    let ip = addresses(&ec2).await?[&a[0]][0];
    let out = handle(
        &updater,
        &asg_event("EC2 Instance Launch Successful", &a[0]),
        &validate,
    )
    .await?;
    assert_eq!(out["added"], 1, "{out}");
    let (text, _) = read(&s3, BUCKET, KEY).await?;
    let m = Metadata::parse(&text);
    assert!(m.errors.is_empty(), "{:?}", m.errors);
    let info = m
        .metadata
        .lookup(ip)
        .context("row for the launched instance")?;
    assert_eq!((&*info.application, &*info.contact), ("web", "a,b \"c\""));

    // An untagged instance's launch: nothing written, said so.
    let b = launch(&ec2, &ami, 1, &[]).await?;
    let out = handle(
        &updater,
        &asg_event("EC2 Instance-launch Lifecycle Action", &b[0]),
        &validate,
    )
    .await?;
    assert_eq!(
        (out["added"].as_u64(), out["written"].as_bool()),
        (Some(0), Some(false)),
        "{out}"
    );

    // An instance id EC2 does not know (a late event): treated as gone.
    let out = handle(
        &updater,
        &asg_event("EC2 Instance Launch Successful", "i-00000000000000000"),
        &validate,
    )
    .await?;
    assert_eq!(out["added"], 0, "{out}");

    // Termination by the EC2 state-change notification: kept for the grace.
    ec2.terminate_instances().instance_ids(&a[0]).send().await?;
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let state = json!({
        "version": "0", "id": "7bf73129-1428-4cd3-a780-95db273d1602",
        "detail-type": "EC2 Instance State-change Notification", "source": "aws.ec2",
        "account": "123456789012", "time": now, "region": "us-east-1",
        "resources": [format!("arn:aws:ec2:us-east-1:123456789012:instance/{}", a[0])],
        "detail": {"instance-id": a[0], "state": "terminated"}
    });
    let out = handle(&updater, &state, &validate).await?;
    assert_eq!(out["retiring"], 1, "{out}");
    let (text, _) = read(&s3, BUCKET, KEY).await?;
    assert!(text.contains(&format!("gone-since={now}")), "{text}");

    // The schedule: a reconcile; the terminated row is within its grace.
    let sched = json!({"version": "0", "id": "x", "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "123456789012", "time": "2026-12-01T08:00:00Z", "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/tailrace-inventory"], "detail": {}});
    let out = handle(&updater, &sched, &validate).await?;
    assert_eq!(
        (out["removed"].as_u64(), out["added"].as_u64()),
        (Some(0), Some(0)),
        "{out}"
    );
    let m = Metadata::parse(&read(&s3, BUCKET, KEY).await?.0);
    assert!(m.errors.is_empty());
    assert_eq!(
        &*m.metadata.resolve(Some(ip)).application,
        "web",
        "kept for the grace period"
    );

    // Malformed events: answered, logged, nothing written.
    let (_, etag) = read(&s3, BUCKET, KEY).await?;
    for bad in [
        json!("hello"),
        json!({"source": "aws.ec2"}),
        json!({"source": "aws.autoscaling", "detail-type": "EC2 Instance Launch Successful", "detail": {"EC2InstanceId": 7}}),
        json!({"source": "aws.s3", "detail-type": "Object Created", "detail": {}}),
    ] {
        let out = handle(&updater, &bad, &validate).await?;
        assert!(out["ignored"].is_string(), "{out}");
    }
    assert_eq!(read(&s3, BUCKET, KEY).await?.1, etag);

    // A person breaks the file: the handler reports it and leaves it alone.
    let broken = "ip_or_cidr,application,contact\n10.0.0.0/33,vpn,x\n";
    tailrace_tests::put_object(&s3, BUCKET, KEY, broken).await?;
    let c = launch(&ec2, &ami, 1, &[("tailrace:application", "late")]).await?;
    let out = handle(
        &updater,
        &asg_event("EC2 Instance Launch Successful", &c[0]),
        &validate,
    )
    .await?;
    let why = out["invalidFile"].as_str().context("invalidFile")?;
    assert!(
        why.contains("row 2") && why.contains("prefix length"),
        "{why}"
    );
    assert_eq!(read(&s3, BUCKET, KEY).await?.0, broken);
    Ok(())
}
