//! `tailrace-aggregator consume` against moto_server (Kinesis + S3 +
//! CloudWatch): records of every kind on a two-shard stream, a poison record,
//! the metadata file rewritten while the consumer runs; metrics read back
//! equal the counts computed here; the consumer exits 0 when idle.

use std::time::Duration;

use crate::common::*;
use tailrace_tests::{eventually, metric_sum, put_object, Piped};
use tailrace_wire::kpl::{aggregate, KplRecord};

const META_V1: &str = "\
ip_or_cidr,application,contact
10.0.0.0/8,corp,corp@example.com
10.1.0.0/16,shop,shop@example.com
2001:db8::/32,v6app,v6@example.com
";

const MAP_V1: Mapping = &[
    ("10.9.0.1", "corp"),
    ("10.1.7.7", "shop"),
    ("2001:db8::7", "v6app"),
];

const META_V2: &str = "\
ip_or_cidr,application,contact
10.0.0.0/8,corp,corp@example.com
10.1.7.0/24,shop-new,shop@example.com
";

const MAP_V2: Mapping = &[
    ("10.9.0.1", "corp"),
    ("10.1.2.3", "corp"),
    ("10.1.7.7", "shop-new"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consume_counts_every_kind_and_follows_the_rewritten_file() -> anyhow::Result<()> {
    let StreamOnMoto {
        moto,
        s3,
        kinesis,
        cw,
        ..
    } = stream_on_moto(META_V1, 2).await?;
    let (map_v1, map_v2) = (lookup(MAP_V1), lookup(MAP_V2));

    let mut expected = Expected::new();
    let w1 = window_ago(4);
    let mut n = 0u64;
    // Many partials over many partition keys (both shards, > one batch of 200).
    for host in 0..30u64 {
        for seq in 1..=8u64 {
            let r = [
                reqs(1, "10.9.0.1", 200, 10, Some(1_000 + seq)),
                reqs((seq % 3) as usize, "10.1.7.7", 404, 3, None),
                reqs(1, "2001:db8::7", 502, 1, Some(50_000)),
            ]
            .concat();
            let p = partial(&format!("host-{host}"), seq, "web", w1, &r);
            expect(&mut expected, w1, "web", &r, &map_v1);
            put(&kinesis, &format!("host-{host}"), p.encode()).await?;
            n += 1;
            if seq == 4 {
                // A replay, as an agent retry would produce.
                put(&kinesis, &format!("host-{host}"), p.encode()).await?;
            }
        }
    }
    let raw = [
        reqs(3, "10.1.7.7", 200, 100, None),
        reqs(1, "203.0.113.9", 500, 0, None),
    ]
    .concat();
    put(&kinesis, "raw", combined_lines(&raw, w1 + 1).into_bytes()).await?;
    expect(&mut expected, w1, "raw", &raw, &map_v1);
    let json = reqs(2, "10.9.0.1", 304, 0, None);
    put(&kinesis, "json", agent_json(&json, w1 + 2).into_bytes()).await?;
    expect(&mut expected, w1, "raw", &json, &map_v1);
    let kpl_reqs = reqs(5, "2001:db8::7", 200, 9, Some(777));
    let inner: Vec<KplRecord> = (0..3)
        .map(|i| KplRecord {
            partition_key: format!("kpl-{i}"),
            explicit_hash_key: None,
            data: partial("kpl-host", i + 1, "api", w1, &kpl_reqs).encode(),
        })
        .collect();
    for _ in 0..3 {
        expect(&mut expected, w1, "api", &kpl_reqs, &map_v1);
    }
    put(&kinesis, "kpl", aggregate(&inner)).await?;
    put(
        &kinesis,
        "poison",
        b"\0TRP\x01\x0a\xff\xff\xff\xff".to_vec(),
    )
    .await?;
    assert!(n > 200);

    let consumer = Piped::spawn(
        aggregator_cli(&moto, &["consume", "--stream", "logs"])
            .args(["--exit-when-idle", "6s", "--poll-interval", "200ms"])
            .env("TAILRACE_NAMESPACE", NAMESPACE)
            .env("TAILRACE_METADATA_TTL", "0s"),
    )?;

    // Wait until window 1 is published, then rewrite the file and write window 2.
    let shop = [("Service", "web"), ("SourceApplication", "shop")];
    let want = expected[&(w1, "web".to_string(), "shop".to_string())].requests;
    eventually(Duration::from_secs(60), "window 1 published", || async {
        let (sum, _) = metric_sum(&cw, NAMESPACE, "Requests", &shop, w1, 300).await?;
        Ok((sum >= want).then_some(()))
    })
    .await?;
    put_object(&s3, "meta", "apps.csv", META_V2).await?;
    let w2 = window_ago(3);
    let r2 = [
        reqs(7, "10.1.7.7", 200, 4, None),
        reqs(2, "10.1.2.3", 200, 4, None),
    ]
    .concat();
    put(
        &kinesis,
        "late-host",
        partial("late-host", 1, "web", w2, &r2).encode(),
    )
    .await?;
    expect(&mut expected, w2, "web", &r2, &map_v2);

    let out = consumer.wait(Duration::from_secs(90))?;
    let (status, stderr) = (out.status, String::from_utf8_lossy(&out.stderr));
    assert!(status.success(), "consume exited with {status}: {stderr}");
    assert!(stderr.contains("poison record skipped"), "{stderr}");
    assert!(stderr.contains("who do I call"), "{stderr}");
    // A log that is not a terminal carries no colour codes.
    assert!(
        !stderr.contains('\x1b'),
        "ANSI escapes in a piped log: {stderr}"
    );

    assert_metrics(&cw, &expected).await?;
    Ok(())
}
