//! The handler against moto_server (S3 + CloudWatch): the metadata join with
//! CIDRs, exact IPs, IPv6 and unknowns; the file rewritten between batches,
//! then broken, then deleted; a poison record; a replayed partial;
//! Kinesis-Agent JSON, raw lines and KPL records. Every expected number is
//! computed here from the requests and a hand-written IP → application table,
//! and read back from CloudWatch with GetMetricStatistics.

use std::time::Duration;

use crate::common::*;
use tailrace_aggregator::entry::handler::Handler;
use tailrace_tests::{put_object, s3_client, Moto};
use tailrace_wire::kpl::{aggregate, KplRecord};

const META_V1: &str = "\
# v1: corp network, the shop inside it, one canary host, an IPv6 partner block
ip_or_cidr,application,contact
10.0.0.0/8,corp,corp@example.com
10.1.0.0/16,shop,shop@example.com
10.1.2.3,canary,\"Jane Doe, +1 555 0100\"
2001:db8::/32,v6app,v6@example.com
";

const MAP_V1: Mapping = &[
    ("10.9.0.1", "corp"),
    ("10.1.7.7", "shop"),
    ("10.1.2.3", "canary"),
    ("2001:db8::7", "v6app"),
];

const META_V2: &str = "\
ip_or_cidr,application,contact
10.0.0.0/8,corp,corp@example.com
10.1.0.0/16,shop-v2,shop@example.com
10.1.2.3,canary,canary@example.com
192.0.2.0/24,partner,partner@example.com
2001:db8::/32,v6app,v6@example.com
";

const MAP_V2: Mapping = &[
    ("10.9.0.1", "corp"),
    ("10.1.7.7", "shop-v2"),
    ("10.1.2.3", "canary"),
    ("192.0.2.1", "partner"),
    ("2001:db8::7", "v6app"),
];

/// Rows 3 and 5 are wrong; the rest would move everything to `moved`.
const META_BROKEN: &str = "\
ip_or_cidr,application,contact
10.0.0.0/8,moved,x
10.1.0.0/33,moved,x
192.0.2.0/24,moved,x
not-an-address,moved,x
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_refresh_poison_and_all_record_kinds() -> anyhow::Result<()> {
    let moto = Moto::start()?;
    let s3 = metadata_file(&moto, META_V1).await?;
    let (handler, clients) = moto_handler(&moto).await?;
    let (map_v1, map_v2) = (lookup(MAP_V1), lookup(MAP_V2));
    let mut expected = Expected::new();

    // Batch 1, window w1, mapping v1.
    let w1 = window_ago(6);
    let a = [
        reqs(3, "10.9.0.1", 200, 100, Some(1_000)),
        reqs(2, "10.1.7.7", 404, 50, Some(2_000)),
        reqs(1, "192.0.2.1", 500, 10, None),
    ]
    .concat();
    let b = [
        reqs(4, "10.1.2.3", 200, 20, Some(500)),
        reqs(2, "2001:db8::7", 503, 30, Some(80_000)),
        reqs(5, "2001:db9::1", 200, 1, None),
    ]
    .concat();
    let c = reqs(6, "10.1.7.7", 201, 7, Some(12_345));
    let raw = [
        reqs(2, "10.9.0.1", 302, 0, None),
        reqs(1, "10.1.2.3", 418, 9, None),
    ]
    .concat();
    let json = [
        reqs(1, "10.1.2.3", 200, 11, None),
        reqs(1, "192.0.2.1", 404, 0, None),
        reqs(1, "2001:db8::7", 500, 5, None),
    ]
    .concat();
    let pa = partial("h1", 1, "web", w1, &a);
    let batch1 = vec![
        record(1, pa.encode()),
        record(2, partial("h2", 1, "web", w1, &b).encode()),
        record(3, b"\0TRP\x01this is not protobuf \xff\xff\xff".to_vec()),
        record(4, pa.encode()), // a replay of record 1
        record(
            5,
            aggregate(&[
                KplRecord {
                    partition_key: "k1".into(),
                    explicit_hash_key: None,
                    data: partial("h3", 1, "api", w1, &c).encode(),
                },
                KplRecord {
                    partition_key: "k2".into(),
                    explicit_hash_key: None,
                    data: combined_lines(&raw, w1 + 17).into_bytes(),
                },
            ]),
        ),
        record(6, agent_json(&json, w1 + 299).into_bytes()),
    ];
    expect(&mut expected, w1, "web", &a, &map_v1);
    expect(&mut expected, w1, "web", &b, &map_v1);
    expect(&mut expected, w1, "api", &c, &map_v1);
    expect(&mut expected, w1, "raw", &raw, &map_v1);
    expect(&mut expected, w1, "raw", &json, &map_v1);

    let out = handler.handle(&batch1).await;
    assert!(out.failed.is_empty(), "{out:?}");
    assert_eq!(out.stats.poison, 1, "{:?}", out.stats);
    assert_eq!(out.stats.duplicates, 1, "{:?}", out.stats);
    assert_eq!(out.stats.kpl_inner, 2);
    assert_eq!(out.stats.tailrace_partials, 3);
    assert_eq!(out.stats.raw_partials, 1);
    assert_eq!(out.stats.json_partials, 1);
    assert_eq!(out.stats.lines, 6);
    assert_eq!(out.stats.rejected_lines, 0);

    // The same records again in a later batch: nothing is counted twice.
    let again = handler.handle(&batch1[..2]).await;
    assert_eq!(again.stats.duplicates, 2, "{:?}", again.stats);
    assert_eq!(again.stats.datums, 0);

    // Batch 2, window w2: the file was rewritten (v2).
    put_object(&s3, "meta", "apps.csv", META_V2).await?;
    let w2 = window_ago(5);
    let d = [
        reqs(3, "10.1.7.7", 200, 5, Some(3_000)),
        reqs(2, "192.0.2.1", 200, 6, None),
        reqs(1, "10.1.2.3", 500, 7, None),
    ]
    .concat();
    let out = handler
        .handle(&[record(7, partial("h1", 2, "web", w2, &d).encode())])
        .await;
    assert!(out.failed.is_empty(), "{out:?}");
    expect(&mut expected, w2, "web", &d, &map_v2);
    let status = handler.metadata().status().await;
    assert!(status.row_errors.is_empty(), "{status:?}");
    assert_eq!(status.serving_entries, 5);

    // Batch 3, window w3: the file is broken; v2 keeps serving.
    put_object(&s3, "meta", "apps.csv", META_BROKEN).await?;
    let w3 = window_ago(4);
    let e = [
        reqs(2, "10.1.7.7", 200, 1, None),
        reqs(1, "192.0.2.1", 200, 1, None),
    ]
    .concat();
    let out = handler
        .handle(&[record(8, partial("h1", 3, "web", w3, &e).encode())])
        .await;
    assert!(out.failed.is_empty(), "{out:?}");
    expect(&mut expected, w3, "web", &e, &map_v2);
    let status = handler.metadata().status().await;
    let rows: Vec<usize> = status.row_errors.iter().map(|e| e.row).collect();
    assert_eq!(rows, vec![3, 5], "{status:?}");
    assert_eq!(status.serving_entries, 5, "still serving v2");

    // Batch 4, window w4: the file is gone; v2 keeps serving.
    s3.delete_object()
        .bucket("meta")
        .key("apps.csv")
        .send()
        .await?;
    let w4 = window_ago(3);
    let f = reqs(4, "10.1.7.7", 200, 2, None);
    let out = handler
        .handle(&[record(9, partial("h1", 4, "web", w4, &f).encode())])
        .await;
    assert!(out.failed.is_empty(), "{out:?}");
    expect(&mut expected, w4, "web", &f, &map_v2);
    let status = handler.metadata().status().await;
    assert!(status.last_error.is_some(), "{status:?}");

    assert_metrics(&clients.cloudwatch, &expected).await?;
    // And nothing under the old or the broken mapping after the switch.
    for (w, app) in [(w2, "shop"), (w3, "shop"), (w3, "moved"), (w4, "moved")] {
        let (sum, _) = tailrace_tests::metric_sum(
            &clients.cloudwatch,
            NAMESPACE,
            "Requests",
            &[("Service", "web"), ("SourceApplication", app)],
            w,
            300,
        )
        .await?;
        assert_eq!(sum, 0.0, "window {w} app {app}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_metadata_ever_fails_the_batch_and_cloudwatch_down_fails_contributors(
) -> anyhow::Result<()> {
    let moto = Moto::start()?;
    let config = moto.sdk_config().await;
    let s3 = s3_client(&config);
    s3.create_bucket().bucket("meta").send().await?;
    let (handler, _clients) = moto_handler(&moto).await?;
    let w = window_ago(2);
    let batch = vec![
        record(
            1,
            partial("h1", 1, "web", w, &reqs(1, "10.1.7.7", 200, 1, None)).encode(),
        ),
        record(2, b"poison\xff".to_vec()),
    ];
    // No file yet and never loaded: every record fails, to be retried.
    let out = handler.handle(&batch).await;
    assert_eq!(out.failed.len(), 2, "{out:?}");

    // With the file there, it goes through.
    put_object(&s3, "meta", "apps.csv", META_V1).await?;
    let out = handler.handle(&batch).await;
    assert!(out.failed.is_empty(), "{out:?}");

    // CloudWatch unreachable: the records behind the datums fail, the
    // undecodable one does not.
    let dead = tailrace_tests::sdk_config_for(&format!(
        "http://127.0.0.1:{}",
        tailrace_tests::free_port()?
    ))
    .await;
    let dead_cw = aws_sdk_cloudwatch::Client::new(&dead);
    let handler = Handler::new(
        tailrace_aggregator::ingest::decode::Decoder::new("combined", "raw", 300)?,
        tailrace_aggregator::join::metadata_source::MetadataSource::none(),
        tailrace_aggregator::publish::calls::Publisher::new(dead_cw, NAMESPACE).with_retry(
            tailrace_aggregator::publish::calls::RetryPolicy {
                max_attempts: 2,
                base_delay: Duration::from_millis(10),
                max_delay: Duration::from_millis(20),
                attempt_timeout: Duration::from_secs(5),
            },
        ),
    );
    let batch = vec![
        record(
            1,
            partial("h9", 1, "web", w, &reqs(1, "10.1.7.7", 200, 1, None)).encode(),
        ),
        record(2, b"\0TRP\x01\xff".to_vec()),
        record(
            3,
            partial("h9", 2, "web", w, &reqs(1, "10.1.7.8", 200, 1, None)).encode(),
        ),
    ];
    let out = handler.handle(&batch).await;
    assert_eq!(out.failed, sequence_numbers(&batch, &[0, 2]));
    assert_eq!(out.stats.poison, 1);
    Ok(())
}
