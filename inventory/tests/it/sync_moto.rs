//! The updater against moto_server's EC2, Auto Scaling and S3: a full sync
//! from tags and groups, many updaters racing on the file with conditional
//! writes, terminations through the grace period. Every file is compared
//! with an independent model built from what the test launched.

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use anyhow::{Context, Result};
use aws_sdk_autoscaling::types::Tag as AsgTag;
use tailrace_aggregator::join::metadata::Metadata;
use tailrace_inventory::ec2::Fleet;
use tailrace_inventory::event::Trigger;
use tailrace_inventory::lambda::observe;
use tailrace_inventory::owner::TagKeys;
use tailrace_inventory::store::Location;
use tailrace_inventory::sync::{apply, Options};

const BUCKET: &str = "meta";
const KEY: &str = "metadata.csv";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sync_races_and_grace_against_moto() -> Result<()> {
    let (_moto, sdk, s3, ec2) = moto_with_bucket(BUCKET).await?;
    let asg = aws_sdk_autoscaling::Client::new(&sdk);
    tailrace_tests::put_object(&s3, BUCKET, KEY, HAND).await?;
    let at = Location {
        bucket: BUCKET.into(),
        key: KEY.into(),
    };
    let fleet = Fleet::new(&sdk, TagKeys::default());
    let ami = ami(&ec2).await?;

    // Tagged, tricky-tagged, untagged, and two Auto Scaling groups (one
    // tagged, one not: its name is the application).
    let web = launch(&ec2, &ami, 2, &owner_tags("web", "web@example.com")).await?;
    let tricky = launch(
        &ec2,
        &ami,
        1,
        &owner_tags("pay, \"eu\" café", "Doe, \"Jane\" — nuit"),
    )
    .await?;
    // 2,000 characters: the application is cut to CloudWatch's 1,024 (real
    // EC2 allows 256-character tag values; moto does not check, and the
    // updater must not rely on either), the contact is kept whole.
    let long_app = "x".repeat(2000);
    let long_contact = format!("night shift, {}", "é".repeat(1986));
    let long = launch(&ec2, &ami, 1, &owner_tags(&long_app, &long_contact)).await?;
    let untagged = launch(&ec2, &ami, 1, &[("Name", "bastion")]).await?;
    asg.create_launch_configuration()
        .launch_configuration_name("lc")
        .image_id(&ami)
        .instance_type("t2.micro")
        .send()
        .await
        .context("CreateLaunchConfiguration")?;
    for (name, tags) in [
        (
            "batch-asg",
            vec![
                ("tailrace:application", "batch"),
                ("tailrace:contact", "batch@example.com"),
            ],
        ),
        ("api-asg", vec![]),
    ] {
        let mut req = asg
            .create_auto_scaling_group()
            .auto_scaling_group_name(name)
            .launch_configuration_name("lc")
            .min_size(2)
            .max_size(2)
            .desired_capacity(2)
            .availability_zones("us-east-1a");
        for (k, v) in tags {
            req = req.tags(
                AsgTag::builder()
                    .key(k)
                    .value(v)
                    .propagate_at_launch(false)
                    .resource_id(name)
                    .resource_type("auto-scaling-group")
                    .build(),
            );
        }
        req.send()
            .await
            .with_context(|| format!("CreateAutoScalingGroup {name}"))?;
    }
    let groups = asg.describe_auto_scaling_groups().send().await?;
    let members = |name: &str| -> Vec<String> {
        groups
            .auto_scaling_groups()
            .iter()
            .filter(|g| g.auto_scaling_group_name() == Some(name))
            .flat_map(|g| {
                g.instances()
                    .iter()
                    .filter_map(|i| i.instance_id().map(str::to_string))
            })
            .collect()
    };
    let (batch, api) = (members("batch-asg"), members("api-asg"));
    assert_eq!(
        (batch.len(), api.len()),
        (2, 2),
        "moto launched the groups' instances"
    );

    // The model: every address of each instance → the row it must get.
    let addrs = addresses(&ec2).await?;
    let mut expected: Vec<String> = Vec::new();
    let mut row = |ids: &[String], app: &str, contact: &str| {
        for id in ids {
            for a in &addrs[id] {
                expected.push(format!("{a},{app},{contact}"));
            }
        }
    };
    row(&web, "web", "web@example.com");
    row(
        &tricky,
        "\"pay, \"\"eu\"\" caf_\"",
        "\"Doe, \"\"Jane\"\" — nuit\"",
    );
    row(&long, &"x".repeat(1024), &format!("\"{long_contact}\""));
    row(&batch, "batch", "batch@example.com");
    row(&api, "api-asg", "");
    expected.sort();
    assert!(!addrs[&untagged[0]].is_empty());

    // 1. A full sync, as `inventory sync` and the schedule do.
    let obs = observe(&fleet, &Trigger::Reconcile).await?;
    let out = apply(&s3, &at, &obs, &Options::default(), &validate).await?;
    assert!(out.written);
    assert_eq!(out.diff.added.len(), expected.len(), "{}", out.diff);
    assert!(out.diff.unlisted.iter().any(|(id, _)| id == &untagged[0]));
    let (text, _) = read(&s3, BUCKET, KEY).await?;
    let (rows, people) = managed_lines(&text);
    assert_eq!(rows, expected, "\n{text}");
    assert_eq!(people, HAND);
    let parsed = Metadata::parse(&text);
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    let tricky_ip = addrs[&tricky[0]][0];
    let info = parsed.metadata.lookup(tricky_ip).context("tricky row")?;
    assert_eq!(
        (&*info.application, &*info.contact),
        ("pay, \"eu\" caf_", "Doe, \"Jane\" — nuit")
    );

    // A dry run of the same changes nothing and writes nothing.
    let (_, etag_before) = read(&s3, BUCKET, KEY).await?;
    let again = apply(
        &s3,
        &at,
        &obs,
        &Options {
            dry_run: true,
            ..Options::default()
        },
        &validate,
    )
    .await?;
    assert!(again.diff.is_empty() && !again.written);
    assert_eq!(read(&s3, BUCKET, KEY).await?.1, etag_before);

    // 2. Many launches at once: one updater per launch event, racing.
    const N: usize = 24;
    let ids = launch(
        &ec2,
        &ami,
        N as i32,
        &owner_tags("burst", "burst@example.com"),
    )
    .await?;
    let addrs = addresses(&ec2).await?;
    for id in &ids {
        for a in &addrs[id] {
            expected.push(format!("{a},burst,burst@example.com"));
        }
    }
    expected.sort();
    let s3a = Arc::new(s3.clone());
    let mut tasks = Vec::new();
    for id in ids.clone() {
        let (s3, at, fleet) = (s3a.clone(), at.clone(), fleet.clone());
        tasks.push(tokio::spawn(async move {
            let obs = observe(&fleet, &Trigger::Lookup { instance: id }).await?;
            anyhow::Ok(apply(&s3, &at, &obs, &racing(), &validate).await?)
        }));
    }
    let mut lost = 0;
    for t in tasks {
        let out = t.await??;
        assert!(out.written);
        lost += out.lost_races;
    }
    let (text, _) = read(&s3, BUCKET, KEY).await?;
    let (rows, people) = managed_lines(&text);
    assert_eq!(
        rows, expected,
        "after {N} racing updaters ({lost} lost races)\n{text}"
    );
    assert_eq!(people, HAND);
    eprintln!("{N} racing updaters: {lost} writes lost a race and were retried");
    assert!(
        lost > 0,
        "the updaters did not race: the test proves nothing"
    );
    // Addresses of every instance while all are alive (a terminated
    // instance may lose its address in EC2's answer).
    let addrs_before = addrs;

    // 3. Terminations racing with launches: six burst instances and one
    // Auto Scaling member go (their events race), four new instances come
    // (their events race too). Gone rows stay within the grace, go after it.
    let mut gone: Vec<String> = ids[..6].to_vec();
    ec2.terminate_instances()
        .set_instance_ids(Some(gone.clone()))
        .send()
        .await?;
    asg.terminate_instance_in_auto_scaling_group()
        .instance_id(&batch[0])
        .should_decrement_desired_capacity(true)
        .send()
        .await
        .context("TerminateInstanceInAutoScalingGroup")?;
    gone.push(batch[0].clone());
    let late = launch(
        &ec2,
        &ami,
        4,
        &[("tailrace:application", "late"), ("tailrace:contact", "")],
    )
    .await?;
    let addrs = addresses(&ec2).await?;
    for id in &late {
        for a in &addrs[id] {
            expected.push(format!("{a},late,"));
        }
    }
    expected.sort();
    let mut tasks = Vec::new();
    let triggers = gone
        .iter()
        .map(|id| Trigger::Gone {
            instance: id.clone(),
            at: None,
        })
        .chain(late.iter().map(|id| Trigger::Lookup {
            instance: id.clone(),
        }));
    for trigger in triggers {
        let (s3, at, fleet) = (s3a.clone(), at.clone(), fleet.clone());
        tasks.push(tokio::spawn(async move {
            let obs = observe(&fleet, &trigger).await?;
            anyhow::Ok(apply(&s3, &at, &obs, &racing(), &validate).await?)
        }));
    }
    for t in tasks {
        assert!(t.await??.written);
    }
    let (text, _) = read(&s3, BUCKET, KEY).await?;
    let (rows, people) = managed_lines(&text);
    assert_eq!(rows, expected, "gone rows kept during the grace\n{text}");
    assert_eq!(people, HAND);
    assert_eq!(text.matches("gone-since=").count(), 7, "{text}");
    // A reconcile within the grace keeps them too.
    let obs = observe(&fleet, &Trigger::Reconcile).await?;
    let out = apply(&s3, &at, &obs, &Options::default(), &validate).await?;
    assert!(out.diff.is_empty(), "{}", out.diff);
    assert_eq!(managed_lines(&read(&s3, BUCKET, KEY).await?.0).0, expected);
    // A reconcile with the grace over (zero) removes exactly those rows.
    let out = apply(
        &s3,
        &at,
        &obs,
        &Options {
            grace: Duration::ZERO,
            ..Options::default()
        },
        &validate,
    )
    .await?;
    assert_eq!(out.diff.removed.len(), 7, "{}", out.diff);
    let gone_addrs: Vec<String> = gone
        .iter()
        .flat_map(|id| addrs_before[id].iter().map(|a| format!("{a},")))
        .collect();
    expected.retain(|r| !gone_addrs.iter().any(|g| r.starts_with(g.as_str())));
    let (text, _) = read(&s3, BUCKET, KEY).await?;
    let (rows, people) = managed_lines(&text);
    assert_eq!(rows, expected, "\n{text}");
    assert_eq!(people, HAND);
    assert!(!text.contains("gone-since="));
    let parsed = Metadata::parse(&text);
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    Ok(())
}

/// Backoff for many racing updaters in one test: short steps, many tries.
fn racing() -> Options {
    Options {
        backoff: tailrace_inventory::store::Backoff {
            base: Duration::from_millis(5),
            cap: Duration::from_millis(200),
            max_attempts: 200,
        },
        ..Options::default()
    }
}
