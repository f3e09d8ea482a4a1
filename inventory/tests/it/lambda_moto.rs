//! The Lambda handler with real EventBridge event JSON against moto_server:
//! launch and terminate events, the schedule, malformed events, instances
//! without tags or addresses, and a file a person broke (kept as it is).

use crate::common::*;
use anyhow::{Context, Result};
use serde_json::json;
use tailrace_aggregator::join::metadata::Metadata;
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

/// An updater on `sdk`'s services, but S3 through `s3_endpoint` and Auto
/// Scaling through `autoscaling_endpoint` (proxies).
async fn updater_via(
    sdk: &aws_config::SdkConfig,
    s3_endpoint: &str,
    autoscaling_endpoint: &str,
) -> Updater {
    let s3_sdk = tailrace_tests::sdk_config_for(s3_endpoint).await;
    let asg_sdk = tailrace_tests::sdk_config_for(autoscaling_endpoint).await;
    Updater {
        s3: tailrace_tests::s3_client(&s3_sdk),
        fleet: Fleet {
            ec2: aws_sdk_ec2::Client::new(sdk),
            autoscaling: aws_sdk_autoscaling::Client::new(&asg_sdk),
            keys: TagKeys::default(),
        },
        location: Location {
            bucket: BUCKET.into(),
            key: KEY.into(),
        },
        options: Options::default(),
        namespace: "Tailrace".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_write_happens_when_s3_answers_403_for_a_missing_file() -> Result<()> {
    use tailrace_tests::s3_proxy::{NoListBucket, S3NoListProxy};
    let (moto, sdk, s3, ec2) = moto_with_bucket(BUCKET).await?;
    // The role has no s3:ListBucket: S3 answers a missing key 403.
    let proxy = S3NoListProxy::start(
        &moto.endpoint(),
        NoListBucket {
            deny_missing: true,
            ..NoListBucket::default()
        },
    )?;
    let updater = updater_via(&sdk, &proxy.endpoint(), &moto.endpoint()).await;
    let ami = ami(&ec2).await?;
    let a = launch(&ec2, &ami, 1, &owner_tags("web", "web@example.com")).await?;
    let out = handle(
        &updater,
        &asg_event("EC2 Instance Launch Successful", &a[0]),
        &validate,
    )
    .await?;
    assert_eq!(
        (out["added"].as_u64(), out["written"].as_bool()),
        (Some(1), Some(true)),
        "{out}"
    );
    assert_eq!(proxy.counts().denied, 1, "S3 answered the first read 403");
    let (text, _) = read(&s3, BUCKET, KEY).await?;
    let ip = addresses(&ec2).await?[&a[0]][0];
    let m = Metadata::parse(&text);
    assert_eq!(
        m.metadata.lookup(ip).map(|i| i.application.to_string()),
        Some("web".to_string()),
        "{text}"
    );

    // A role that may not read the file at all: the refused If-None-Match
    // write shows the file exists; a clear error, the file left alone.
    proxy.set_faults(NoListBucket {
        deny_reads: true,
        ..NoListBucket::default()
    });
    let b = launch(&ec2, &ami, 1, &owner_tags("web", "web@example.com")).await?;
    let e = handle(
        &updater,
        &asg_event("EC2 Instance Launch Successful", &b[0]),
        &validate,
    )
    .await
    .expect_err("an unreadable file is an error");
    let e = e.to_string();
    assert!(
        e.contains("the file exists") && e.contains("s3:GetObject"),
        "{e}"
    );
    assert_eq!(read(&s3, BUCKET, KEY).await?.0, text);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_instances_launched_at_once_end_with_fifty_rows() -> Result<()> {
    use tailrace_tests::fault_proxy::{FaultProxy, Faults};
    const N: usize = 50;
    let (moto, sdk, s3, ec2) = moto_with_bucket(BUCKET).await?;
    // Auto Scaling through a transparent proxy that counts the calls.
    let asg_proxy = FaultProxy::start(&moto.endpoint(), Faults::none())?;
    let updater = updater_via(&sdk, &moto.endpoint(), &asg_proxy.endpoint()).await;
    let asg = aws_sdk_autoscaling::Client::new(&sdk);
    let ami = ami(&ec2).await?;
    asg.create_launch_configuration()
        .launch_configuration_name("lc")
        .image_id(&ami)
        .instance_type("t2.micro")
        .send()
        .await?;
    // The owner is on the group only (not propagated): each event needs it.
    let tag = |k: &str, v: &str| {
        aws_sdk_autoscaling::types::Tag::builder()
            .key(k)
            .value(v)
            .propagate_at_launch(false)
            .resource_id("burst")
            .resource_type("auto-scaling-group")
            .build()
    };
    asg.create_auto_scaling_group()
        .auto_scaling_group_name("burst")
        .launch_configuration_name("lc")
        .min_size(0)
        .max_size(N as i32)
        .desired_capacity(N as i32)
        .availability_zones("us-east-1a")
        .tags(tag("tailrace:application", "burst"))
        .tags(tag("tailrace:contact", "burst@example.com"))
        .send()
        .await?;
    let addrs = addresses(&ec2).await?;
    assert_eq!(addrs.len(), N, "moto launched the group");

    // The stack runs the updater one at a time (ReservedConcurrentExecutions
    // 1): Lambda's async queue hands it the 50 launch events in turn. Each
    // is handled the first time (none fails, so none can be lost after
    // Lambda's retries), never races, and describes only its own group.
    let started = std::time::Instant::now();
    for id in addrs.keys() {
        let out = handle(
            &updater,
            &asg_event("EC2 Instance Launch Successful", id),
            &validate,
        )
        .await?;
        assert_eq!(
            (out["added"].as_u64(), out["lostRaces"].as_u64()),
            (Some(1), Some(0)),
            "{id}: {out}"
        );
    }
    let took = started.elapsed();
    assert_eq!(
        asg_proxy.counts().calls,
        N as u64,
        "one DescribeAutoScalingGroups per event"
    );
    let (text, _) = read(&s3, BUCKET, KEY).await?;
    let m = Metadata::parse(&text);
    assert!(m.errors.is_empty(), "{:?}", m.errors);
    let mut rows = 0;
    for ips in addrs.values() {
        for ip in ips {
            let info = m.metadata.lookup(*ip).context("a row per address")?;
            assert_eq!(
                (&*info.application, &*info.contact),
                ("burst", "burst@example.com")
            );
            rows += 1;
        }
    }
    assert_eq!(rows, N);
    assert_eq!(text.matches(",burst,").count(), N, "{text}");
    eprintln!("{N} launch events, one at a time: {} ms", took.as_millis());

    // An instance whose own tags name its owner needs no group at all.
    let own = launch(&ec2, &ami, 1, &owner_tags("solo", "solo@example.com")).await?;
    handle(
        &updater,
        &asg_event("EC2 Instance Launch Successful", &own[0]),
        &validate,
    )
    .await?;
    assert_eq!(asg_proxy.counts().calls, N as u64, "no group lookup");
    Ok(())
}
