//! `tailrace-aggregator replay` against moto_server (Kinesis + SQS +
//! DynamoDB + S3 + CloudWatch): the Lambda published some records of a
//! shard and gave up on others; the failure queue holds the on-failure
//! record (the documented `KinesisBatchInfo` shape) of a range that covers
//! both. The replay publishes exactly the records that were not published,
//! deletes the message, and a second replay of the whole shard by
//! `--shard/--from-sequence/--to-sequence` publishes nothing: CloudWatch
//! equals the count made here, every request once.
//!
//! And `replay` publishes the metric model `consume` (the live path)
//! publishes for the same environment (issue #24: it built its own
//! settings and published every metric whatever `TAILRACE_DIMENSIONS` and
//! `TAILRACE_METRICS` said).

use std::collections::BTreeSet;
use std::time::Duration;

use crate::common::*;
use aws_sdk_kinesis::primitives::Blob;
use tailrace_aggregator::entry::handler::Handler;
use tailrace_aggregator::ingest::batch::InputRecord;
use tailrace_aggregator::ingest::idempotency::{ClaimStore, DEFAULT_RETENTION};
use tailrace_tests::{free_port, Moto, Piped};

const TABLE: &str = "tailrace-claims";

/// A Lambda environment claiming in `TABLE`, publishing to `cloudwatch`.
async fn lambda(moto: &Moto, cloudwatch: &str) -> anyhow::Result<Handler> {
    let handler = handler_via(&moto.endpoint(), cloudwatch, Duration::ZERO, quick_retry(1)).await?;
    let store = ClaimStore::new(
        aws_sdk_dynamodb::Client::new(&moto.sdk_config().await),
        TABLE,
        DEFAULT_RETENTION,
    );
    store.ensure_table().await?;
    Ok(handler.with_claims(store, Duration::from_secs(60)))
}

/// Run `tailrace-aggregator replay ARGS`; its exit status and stdout.
fn replay(moto: &Moto, args: &[&str]) -> anyhow::Result<(bool, String, String)> {
    let out = Piped::spawn(
        aggregator_cli(moto, &["replay"])
            .args(["--idempotency-table", TABLE])
            .args(args)
            .env("TAILRACE_NAMESPACE", NAMESPACE),
    )?
    .wait(Duration::from_secs(120))?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_publishes_exactly_the_records_not_yet_published() -> anyhow::Result<()> {
    let StreamOnMoto {
        moto,
        config,
        kinesis,
        cw,
        ..
    } = stream_on_moto(SMALL_META, 1).await?;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let map = lookup(SMALL_MAP);
    let w = window_ago(2);

    let mut expected = Expected::new();
    let mut records: Vec<InputRecord> = Vec::new();
    let mut shard = String::new();
    for i in 0..10u64 {
        let r = [
            reqs(1 + i as usize, "10.9.0.1", 200, 10, Some(2_000)),
            reqs(2, "10.1.7.7", 404, 3, None),
            reqs(1, "198.51.100.4", 503, 1, None),
        ]
        .concat();
        expect(&mut expected, w, "web", &r, &map);
        let data = partial(&format!("host-{}", i % 3), i + 1, "web", w, &r).encode();
        let out = kinesis
            .put_record()
            .stream_name("logs")
            .partition_key("k")
            .data(Blob::new(data.clone()))
            .send()
            .await?;
        shard = out.shard_id().to_string();
        records.push(InputRecord {
            sequence_number: out.sequence_number().to_string(),
            partition_key: "k".into(),
            data,
        });
    }

    // The Lambda: records 0-2 published; 3-6 failed every attempt
    // (CloudWatch unreachable); 7-9 published afterwards.
    let ok = lambda(&moto, &moto.endpoint()).await?;
    let dead = format!("http://127.0.0.1:{}", free_port()?);
    let failing = lambda(&moto, &dead).await?;
    assert!(ok.handle(&records[0..3]).await.failed.is_empty());
    let out = failing.handle(&records[3..7]).await;
    assert_eq!(out.failed.len(), 4, "{out:?}");
    assert!(ok.handle(&records[7..10]).await.failed.is_empty());

    // The on-failure record of a batch 2-6 (2 was published, 3-6 were not).
    let queue = sqs
        .create_queue()
        .queue_name("tailrace-failures")
        .send()
        .await?
        .queue_url()
        .unwrap_or_default()
        .to_string();
    let body = serde_json::json!({
        "requestContext": {
            "requestId": "c9b8fa9f-5a7f-xmpl-af9c-0c604cde93a5",
            "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:tailrace",
            "condition": "RetryAttemptsExhausted",
            "approximateInvokeCount": 11
        },
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "version": "1.0",
        "timestamp": "2026-11-30T00:38:06.021Z",
        "KinesisBatchInfo": {
            "shardId": shard,
            "startSequenceNumber": records[2].sequence_number,
            "endSequenceNumber": records[6].sequence_number,
            "approximateArrivalOfFirstRecord": "2026-11-30T00:38:04.835Z",
            "approximateArrivalOfLastRecord": "2026-11-30T00:38:05.580Z",
            "batchSize": 5,
            "streamArn": "arn:aws:kinesis:us-east-1:123456789012:stream/logs"
        }
    });
    sqs.send_message()
        .queue_url(&queue)
        .message_body(body.to_string())
        .send()
        .await?;

    let (ok_exit, out, err) = replay(&moto, &["--queue-url", &queue])?;
    assert!(ok_exit, "{out}\n{err}");
    assert_eq!(
        out.trim(),
        "replayed 1 ranges: 5 records, 4 partials published, 1 already published",
        "{err}"
    );
    assert_metrics(&cw, &expected).await?;
    let left = sqs
        .receive_message()
        .queue_url(&queue)
        .wait_time_seconds(0)
        .send()
        .await?;
    assert!(left.messages().is_empty(), "the message is deleted");

    // The whole shard once more, by range: nothing new.
    let (ok_exit, out, err) = replay(
        &moto,
        &[
            "--stream",
            "logs",
            "--shard",
            &shard,
            "--from-sequence",
            &records[0].sequence_number,
            "--to-sequence",
            &records[9].sequence_number,
        ],
    )?;
    assert!(ok_exit, "{out}\n{err}");
    assert_eq!(
        out.trim(),
        "replayed 1 ranges: 10 records, 0 partials published, 10 already published",
        "{err}"
    );
    assert_metrics(&cw, &expected).await?;
    Ok(())
}

/// The metrics in `namespace` that carry dimensions (the metric model's;
/// the pipeline's health metrics have none): name and dimension names.
async fn model_published(
    cw: &aws_sdk_cloudwatch::Client,
    namespace: &str,
) -> anyhow::Result<BTreeSet<(String, Vec<String>)>> {
    let mut found = BTreeSet::new();
    let mut pages = cw
        .list_metrics()
        .namespace(namespace)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        for m in page?.metrics() {
            let mut dims: Vec<String> = m
                .dimensions()
                .iter()
                .filter_map(|d| d.name().map(str::to_string))
                .collect();
            if dims.is_empty() {
                continue;
            }
            dims.sort();
            found.insert((m.metric_name().unwrap_or_default().to_string(), dims));
        }
    }
    Ok(found)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_publishes_the_metric_model_consume_publishes() -> anyhow::Result<()> {
    let StreamOnMoto {
        moto, kinesis, cw, ..
    } = stream_on_moto(SMALL_META, 1).await?;
    let w = window_ago(2);
    let r = [
        reqs(3, "10.9.0.1", 200, 10, Some(2_000)),
        reqs(2, "10.1.7.7", 503, 3, None),
    ]
    .concat();
    let mut sequences = Vec::new();
    let mut shard = String::new();
    for host in ["host-a", "host-b"] {
        let out = kinesis
            .put_record()
            .stream_name("logs")
            .partition_key(host)
            .data(Blob::new(partial(host, 1, "web", w, &r).encode()))
            .send()
            .await?;
        shard = out.shard_id().to_string();
        sequences.push(out.sequence_number().to_string());
    }
    // The same model settings for both; each publishes to its own
    // namespace, so what each published can be listed apart.
    let model = [
        ("TAILRACE_DIMENSIONS", "SourceApplication"),
        ("TAILRACE_METRICS", "Requests"),
    ];

    let out = Piped::spawn(
        aggregator_cli(&moto, &["consume", "--stream", "logs"])
            .args(["--exit-when-idle", "3s", "--poll-interval", "200ms"])
            .envs(model)
            .env("TAILRACE_NAMESPACE", "Live"),
    )?
    .wait(Duration::from_secs(90))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "consume: {stderr}");

    let out = Piped::spawn(
        aggregator_cli(&moto, &["replay", "--stream", "logs", "--shard", &shard])
            .args(["--from-sequence", &sequences[0]])
            .args(["--to-sequence", &sequences[1]])
            .args(["--idempotency-table", TABLE])
            .envs(model)
            .env("TAILRACE_NAMESPACE", "Replayed"),
    )?
    .wait(Duration::from_secs(120))?;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "replay: {stdout}\n{stderr}");
    assert_eq!(
        stdout.trim(),
        "replayed 1 ranges: 2 records, 2 partials published, 0 already published",
        "{stderr}"
    );

    let live = model_published(&cw, "Live").await?;
    let replayed = model_published(&cw, "Replayed").await?;
    let want = BTreeSet::from([(
        "Requests".to_string(),
        vec!["SourceApplication".to_string()],
    )]);
    assert_eq!(live, want, "consume publishes the model of its environment");
    assert_eq!(replayed, live, "replay publishes what consume publishes");
    // And the same counts: both hosts' requests, once each.
    for (namespace, app, n) in [
        ("Live", "corp", 6.0),
        ("Replayed", "corp", 6.0),
        ("Live", "shop", 4.0),
        ("Replayed", "shop", 4.0),
    ] {
        let dims = [("SourceApplication", app)];
        let (sum, _) =
            tailrace_tests::metric_sum(&cw, namespace, "Requests", &dims, w, 300).await?;
        assert_eq!(sum, n, "{namespace} {app}");
    }
    Ok(())
}
