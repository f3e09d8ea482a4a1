//! The aggregator's handler under faults, against moto_server (S3 +
//! CloudWatch), with fault-injecting proxies in front of it:
//!
//! - CloudWatch throttling (400 `Throttling`) and 500/503 on a share of
//!   PutMetricData calls: every request is published exactly once, and every
//!   injected error is exactly one retry or one failed call (the SDK's own
//!   retries are off: one HTTP call per attempt).
//! - Retries exhausted for the calls carrying some applications: exactly the
//!   records behind those units fail; a record that was half published
//!   (some of its applications in a call that succeeded) is completed on the
//!   retry without counting the published half twice; records after the
//!   first failed one, redelivered as Lambda does, are skipped.
//! - Metadata unreachable at cold start (connection refused, bucket missing,
//!   object missing): the whole batch fails and nothing is published; once
//!   the file is there, the batch counts once.
//! - Metadata refresh failing (connection reset, 5xx, bucket deleted,
//!   malformed rows): the last good table keeps serving, `MetadataStale` is
//!   published per batch and the log names `s3://bucket/key:LINE` and what
//!   was expected.
//! - Poison, oversized, unknown-version and foreign records: counted,
//!   logged with a sample, published as health metrics; never a failure.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::common::*;
use tailrace_aggregator::entry::handler::{Handler, Outcome, FINISH_BUDGET};
use tailrace_aggregator::ingest::batch::InputRecord;
use tailrace_aggregator::publish::calls::RetryPolicy;
use tailrace_tests::cloudwatch_proxy::{CloudWatchProxy, CwFaults};
use tailrace_tests::fault_proxy::{FaultProxy, Faults};
use tailrace_tests::{free_port, put_object, Moto};
use tailrace_wire::kpl::{aggregate, KplRecord};

/// moto with the metadata file `meta`, a CloudWatch proxy injecting
/// `faults`, and a handler publishing through it with `attempts` per call.
async fn behind_proxy(
    meta: &str,
    faults: CwFaults,
    attempts: u32,
) -> anyhow::Result<(Moto, CloudWatchProxy, Handler)> {
    let moto = Moto::start()?;
    metadata_file(&moto, meta).await?;
    let proxy = CloudWatchProxy::start(&moto.endpoint(), faults)?;
    let handler = handler_via(
        &moto.endpoint(),
        &proxy.endpoint(),
        Duration::ZERO,
        quick_retry(attempts),
    )
    .await?;
    Ok((moto, proxy, handler))
}

/// Handle `batch` as the event source mapping would: while records fail,
/// hand the batch again from the first failed record on (at most `rounds`
/// times). Returns every outcome.
async fn handle_until_done(
    handler: &Handler,
    batch: &[InputRecord],
    rounds: usize,
) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    let mut from = 0;
    for _ in 0..rounds {
        let out = handler.handle(&batch[from..]).await;
        let first_failed = out
            .failed
            .first()
            .and_then(|seq| batch.iter().position(|r| &r.sequence_number == seq));
        outcomes.push(out);
        match first_failed {
            Some(i) => from = i,
            None => break,
        }
    }
    outcomes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudwatch_throttling_and_5xx_lose_nothing_and_count_once() -> anyhow::Result<()> {
    let started = Instant::now();
    let faults = CwFaults {
        p_throttle: 0.3,
        p_5xx: 0.2,
        seed: 7,
        ..CwFaults::default()
    };
    let (moto, proxy, handler) = behind_proxy(SMALL_META, faults, 4).await?;
    let map = lookup(SMALL_MAP);
    let mut expected = Expected::new();
    let mut outcomes = Vec::new();
    let mut seq = 0;
    for b in 0..12u64 {
        let w = window_ago(1 + (b % 4) as i64);
        let mut batch = Vec::new();
        for h in 0..3u64 {
            let r = [
                reqs(1 + h as usize, "10.9.0.1", 200, 10 + b, Some(1_000)),
                reqs(2, "10.1.7.7", 404, 3, None),
                reqs(1, "198.51.100.4", 503, 1, Some(90_000)),
            ]
            .concat();
            expect(&mut expected, w, "web", &r, &map);
            seq += 1;
            batch.push(record(
                seq,
                partial(&format!("host-{h}"), b + 1, "web", w, &r).encode(),
            ));
        }
        outcomes.extend(handle_until_done(&handler, &batch, 10).await);
    }
    let counts = proxy.counts();
    let sum = |f: fn(&Outcome) -> usize| outcomes.iter().map(f).sum::<usize>();
    let (calls, retries, failed_calls) = (
        sum(|o| o.stats.calls),
        sum(|o| o.stats.retries),
        sum(|o| o.stats.failed_calls),
    );
    eprintln!(
        "proxy {counts:?}; handler: {} handle calls, {calls} calls ok, {retries} retries, {failed_calls} calls failed after 4 attempts",
        outcomes.len()
    );
    assert!(outcomes.last().is_some_and(|o| o.failed.is_empty()));
    assert!(counts.throttled > 0, "{counts:?}");
    assert!(
        counts.responses_500 + counts.responses_503 > 0,
        "{counts:?}"
    );
    // One HTTP call per attempt: the SDK does not retry behind our back.
    assert_eq!(counts.forwarded as usize, calls, "{counts:?}");
    assert_eq!(
        counts.injected() as usize,
        retries + failed_calls,
        "{counts:?}"
    );
    assert_eq!(counts.put_metric_data, counts.forwarded + counts.injected());
    assert_metrics(&moto_cloudwatch(&moto).await, &expected).await?;
    assert!(started.elapsed() < Duration::from_secs(120));
    Ok(())
}

async fn moto_cloudwatch(moto: &Moto) -> aws_sdk_cloudwatch::Client {
    aws_sdk_cloudwatch::Client::new(&moto.sdk_config().await)
}

/// Requests per application as CloudWatch has them, against `expected`.
async fn assert_wide(
    cw: &aws_sdk_cloudwatch::Client,
    w: i64,
    expected: &Expected,
    only: &dyn Fn(&str) -> bool,
) -> anyhow::Result<()> {
    let got = sums_by_app(cw, "Requests", "web", &WIDE_APPS, w).await?;
    let want: BTreeMap<String, f64> = WIDE_APPS
        .iter()
        .map(|app| {
            let e = expected.get(&(w, "web".to_string(), app.clone()));
            let n = e.map_or(0.0, |e| e.requests);
            (app.clone(), if only(app) { n } else { 0.0 })
        })
        .collect();
    assert_eq!(got, want);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_retries_fail_exactly_the_records_behind_the_failed_units() -> anyhow::Result<()>
{
    let (moto, proxy, handler) = behind_proxy(&wide_meta(), fail_omega(), 3).await?;
    let w = window_ago(2);
    let mut expected = Expected::new();
    let batch = vec![
        record(1, wide_partial("h0", w, &[(1, 1, 1)], &mut expected)),
        record(2, wide_partial("h1", w, &[(2, 1, 2)], &mut expected)),
        // Half alpha (published in call 1), half omega (call 2 fails).
        record(
            3,
            wide_partial("h2", w, &[(1, 2, 1), (2, 2, 1)], &mut expected),
        ),
        record(4, b"\0TRP\x01\x0a\xff\xff\xff\xff".to_vec()),
        record(5, wide_partial("h4", w, &[(1, 3, 3)], &mut expected)),
    ];

    let t = Instant::now();
    let first = handler.handle(&batch).await;
    eprintln!("first attempt: {:?}, {:?}", t.elapsed(), first.stats);
    assert_eq!(
        first.failed,
        sequence_numbers(&batch, &[1, 2]),
        "exactly the records behind the omega units: {:?} {:?}",
        first.stats,
        proxy.counts()
    );
    let counts = proxy.counts();
    assert_eq!(counts.matched, 3, "3 attempts, then given up: {counts:?}");
    assert_eq!(first.stats.retries, 2);
    assert_eq!(first.stats.failed_calls, 1);
    assert_eq!(first.stats.split_units, 0);
    // Alpha call (1,000 datums) and the health call (PoisonRecords) went out.
    assert_eq!(first.stats.calls, 2, "{:?}", first.stats);
    assert_eq!(first.stats.datums, 1001, "{:?}", first.stats);
    let cw = moto_cloudwatch(&moto).await;
    assert_wide(&cw, w, &expected, &|app| app.starts_with("alpha")).await?;

    // Lambda retries from the lowest failed sequence number on.
    proxy.set_faults(CwFaults::default());
    let retry = handler.handle(&batch[1..]).await;
    assert!(retry.failed.is_empty(), "{retry:?}");
    assert_eq!(retry.stats.resumed, 1, "record 3 completes its omega half");
    assert_eq!(retry.stats.duplicates, 1, "record 5 was published whole");
    assert_eq!(retry.stats.poison, 1);
    assert_eq!(retry.stats.datums, 1001, "omega units and health only");
    assert_wide(&cw, w, &expected, &|_| true).await?;
    // The same records once more (a second redelivery): nothing new.
    let again = handler.handle(&batch).await;
    assert_eq!(again.stats.duplicates, 4);
    assert_eq!(again.stats.datums, 1, "PoisonRecords only");
    assert_wide(&cw, w, &expected, &|_| true).await?;
    // Full metric set for two applications, both dimension sets.
    let sample: Expected = expected
        .iter()
        .filter(|((_, _, app), _)| app == "alpha-000" || app == "omega-124")
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    assert_eq!(sample.len(), 2);
    assert_metrics(&cw, &sample).await?;
    assert_eq!(
        health_sum(&cw, "PoisonRecords").await?,
        3.0,
        "one per delivery"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_unreachable_at_cold_start_fails_the_whole_batch() -> anyhow::Result<()> {
    let moto = Moto::start()?;
    let cw = moto_cloudwatch(&moto).await;
    let w = window_ago(2);
    let r = reqs(4, "10.1.7.7", 200, 5, None);
    let batch = vec![
        record(1, partial("h1", 1, "web", w, &r).encode()),
        record(2, b"not ours at all\n".to_vec()),
    ];
    let all: Vec<String> = batch.iter().map(|r| r.sequence_number.clone()).collect();

    // S3 refuses connections.
    let dead = format!("http://127.0.0.1:{}", free_port()?);
    let handler = handler_via(&dead, &moto.endpoint(), Duration::ZERO, quick_retry(2)).await?;
    let started = Instant::now();
    let out = handler.handle(&batch).await;
    assert_eq!(out.failed, all, "{out:?}");
    assert_eq!(out.stats.datums, 0);
    let status = handler.metadata().status().await;
    assert!(status.last_error.is_some(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "bounded: {:?}",
        started.elapsed()
    );

    // Bucket missing, then object missing: the same handler, on moto.
    let handler = handler_via(
        &moto.endpoint(),
        &moto.endpoint(),
        Duration::ZERO,
        quick_retry(2),
    )
    .await?;
    let out = handler.handle(&batch).await;
    assert_eq!(out.failed, all);
    let status = handler.metadata().status().await;
    assert!(
        status
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("NoSuchBucket")),
        "{status:?}"
    );
    let s3 = tailrace_tests::s3_client(&moto.sdk_config().await);
    s3.create_bucket().bucket(META_BUCKET).send().await?;
    let out = handler.handle(&batch).await;
    assert_eq!(out.failed, all);
    let status = handler.metadata().status().await;
    assert!(
        status
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("NoSuchKey")),
        "{status:?}"
    );
    // Nothing was published by the failed attempts.
    assert_eq!(health_sum(&cw, "RejectedLines").await?, 0.0);

    // The file appears: the batch counts once.
    put_object(&s3, META_BUCKET, META_KEY, SMALL_META).await?;
    let out = handler.handle(&batch).await;
    assert!(out.failed.is_empty(), "{out:?}");
    assert!(!out.stats.metadata_stale);
    let mut expected = Expected::new();
    expect(&mut expected, w, "web", &r, &lookup(SMALL_MAP));
    assert_metrics(&cw, &expected).await?;
    assert_eq!(health_sum(&cw, "RejectedLines").await?, 1.0);
    Ok(())
}

/// Current-thread runtime: the log capture sees the handler's events.
#[tokio::test]
async fn metadata_refresh_failures_keep_the_last_good_table() -> anyhow::Result<()> {
    let (logs, _guard) = LogCapture::install();
    let moto = Moto::start()?;
    let s3 = metadata_file(&moto, SMALL_META).await?;
    let s3_proxy = FaultProxy::start(&moto.endpoint(), Faults::none())?;
    let handler = handler_via(
        &s3_proxy.endpoint(),
        &moto.endpoint(),
        Duration::ZERO,
        quick_retry(2),
    )
    .await?;
    let cw = moto_cloudwatch(&moto).await;
    let map = lookup(SMALL_MAP);
    let mut expected = Expected::new();
    let mut batch_no = 0u64;
    let mut run = |w: i64| {
        batch_no += 1;
        let r = [
            reqs(batch_no as usize, "10.1.7.7", 200, 1, None),
            reqs(1, "10.9.0.1", 500, 2, None),
        ]
        .concat();
        expect(&mut expected, w, "web", &r, &map);
        vec![record(
            batch_no,
            partial("h1", batch_no, "web", w, &r).encode(),
        )]
    };
    let w = window_ago(3);

    let out = handler.handle(&run(w)).await;
    assert!(
        out.failed.is_empty() && !out.stats.metadata_stale,
        "{out:?}"
    );

    // Connection reset, then 5xx, then the bucket gone: still `shop`.
    let faults = [
        Faults {
            p_drop: 1.0,
            ..Faults::none()
        },
        Faults {
            p_5xx: 1.0,
            ..Faults::none()
        },
    ];
    for f in faults {
        s3_proxy.set_faults(f);
        let out = handler.handle(&run(w)).await;
        assert!(out.failed.is_empty() && out.stats.metadata_stale, "{out:?}");
        let status = handler.metadata().status().await;
        assert!(status.last_error.is_some(), "{status:?}");
        assert_eq!(status.serving_entries, 2);
    }
    s3_proxy.set_faults(Faults::none());
    s3.delete_object()
        .bucket(META_BUCKET)
        .key(META_KEY)
        .send()
        .await?;
    s3.delete_bucket().bucket(META_BUCKET).send().await?;
    let out = handler.handle(&run(w)).await;
    assert!(out.failed.is_empty() && out.stats.metadata_stale, "{out:?}");
    let status = handler.metadata().status().await;
    assert!(
        status
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("NoSuchBucket")),
        "{status:?}"
    );

    // A malformed file: bad CIDR, bad CSV quoting, a missing field.
    s3.create_bucket().bucket(META_BUCKET).send().await?;
    put_object(
        &s3,
        META_BUCKET,
        META_KEY,
        "ip_or_cidr,application,contact\n10.1.0.0/33,moved,x\n\"10.9.0.0/16,moved,x\n10.9.0.0/16,moved\n",
    )
    .await?;
    let out = handler.handle(&run(w)).await;
    assert!(out.failed.is_empty() && out.stats.metadata_stale, "{out:?}");
    let status = handler.metadata().status().await;
    let rows: Vec<usize> = status.row_errors.iter().map(|e| e.row).collect();
    assert_eq!(rows, vec![2, 3, 4], "{status:?}");
    assert_eq!(status.serving_entries, 2, "the last good table");
    let text = logs.text();
    for needle in [
        "s3://meta/apps.csv:2: `10.1.0.0/33`: expected a prefix length from 0 to 32",
        "s3://meta/apps.csv:3:",
        "s3://meta/apps.csv:4: expected 3 fields",
        "keeping the last good copy",
        "using a stale metadata table",
    ] {
        assert!(text.contains(needle), "log lacks {needle:?}:\n{text}");
    }

    // Fixed: a new table, no longer stale.
    put_object(
        &s3,
        META_BUCKET,
        META_KEY,
        "ip_or_cidr,application,contact\n10.1.7.0/24,shop-v2,x\n",
    )
    .await?;
    let w2 = window_ago(2);
    let r = reqs(3, "10.1.7.7", 200, 1, None);
    let out = handler
        .handle(&[record(99, partial("h1", 99, "web", w2, &r).encode())])
        .await;
    assert!(
        out.failed.is_empty() && !out.stats.metadata_stale,
        "{out:?}"
    );
    expect(&mut expected, w2, "web", &r, &|_| "shop-v2");

    assert_metrics(&cw, &expected).await?;
    assert_eq!(health_sum(&cw, "MetadataStale").await?, 4.0);
    Ok(())
}

#[tokio::test]
async fn poison_oversized_and_foreign_records_are_counted_never_fatal() -> anyhow::Result<()> {
    let (logs, _guard) = LogCapture::install();
    let moto = Moto::start()?;
    metadata_file(&moto, SMALL_META).await?;
    let (handler, clients) = moto_handler(&moto).await?;
    let map = lookup(SMALL_MAP);
    let w = window_ago(2);
    let mut expected = Expected::new();

    let good = reqs(5, "10.1.7.7", 200, 7, Some(2_000));
    expect(&mut expected, w, "web", &good, &map);
    // ~1 MiB of valid raw lines (Kinesis' record limit): every line counts.
    let big = reqs(13_000, "10.9.0.1", 200, 3, None);
    let big_lines = combined_lines(&big, w + 5);
    assert!(
        (900_000..1 << 20).contains(&big_lines.len()),
        "{}",
        big_lines.len()
    );
    expect(&mut expected, w, "raw", &big, &map);
    // 1 MiB of binary garbage: not ours; lines rejected, counted.
    let mut garbage = vec![0u8; 1 << 20];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for b in garbage.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = (x >> 24) as u8;
    }
    garbage[0] = 0xff; // not a magic number, not `{`: raw lines
    let future = partial("h9", 1, "web", w + 30 * 86_400, &good).encode();
    let kpl_bad_inner = aggregate(&[KplRecord {
        partition_key: "k".into(),
        explicit_hash_key: None,
        data: b"\0TRP\x01\x0a\xff\xff\xff\xff".to_vec(),
    }]);
    let good_partial = partial("h1", 1, "web", w, &good).encode();
    let truncated = good_partial[..good_partial.len() - 3].to_vec();
    let batch = vec![
        record(1, good_partial),
        record(2, b"\0TRP\x09future wire version".to_vec()),
        record(3, truncated),
        record(4, big_lines.into_bytes()),
        record(5, garbage),
        record(6, kpl_bad_inner),
        record(7, b"{\"host\": \"10.1.7.7\", \"datetime\": ".to_vec()),
        record(8, Vec::new()),
        record(9, future),
        record(10, b"\0TRP\x01\x0a\xff\xff\xff\xff\x0f".to_vec()),
    ];
    let out = handler.handle(&batch).await;
    assert!(out.failed.is_empty(), "poison is never a failure: {out:?}");
    assert_eq!(out.stats.poison, 5, "{:?}", out.stats); // 2, 3, 6, 7, 10
    assert_eq!(out.stats.lines, 13_000);
    assert!(out.stats.rejected_lines > 1_000, "{:?}", out.stats);
    assert!(out.stats.unpublishable_datums > 0, "{:?}", out.stats);
    let text = logs.text();
    for seq in [2, 3, 6, 7, 10] {
        let needle = format!("4960000000000000000000{seq:04}");
        assert!(
            text.lines()
                .any(|l| l.contains("poison record skipped") && l.contains(&needle)),
            "record {seq} is logged as poison:\n{text}"
        );
    }
    assert!(
        text.contains("first_bytes=00545250"),
        "a sample of the bytes"
    );
    assert!(text.contains("lines of a raw or JSON record did not parse"));
    assert!(text.contains("metrics NOT published"));

    assert_metrics(&clients.cloudwatch, &expected).await?;
    assert_eq!(health_sum(&clients.cloudwatch, "PoisonRecords").await?, 5.0);
    assert_eq!(
        health_sum(&clients.cloudwatch, "RejectedLines").await?,
        out.stats.rejected_lines as f64
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_near_deadline_fails_the_records_instead_of_timing_out() -> anyhow::Result<()> {
    let (moto, proxy, _) = behind_proxy(
        SMALL_META,
        CwFaults {
            p_5xx: 1.0,
            ..CwFaults::default()
        },
        1,
    )
    .await?;
    // Patient retries: only the deadline stops them.
    let handler = handler_via(
        &moto.endpoint(),
        &proxy.endpoint(),
        Duration::ZERO,
        RetryPolicy {
            max_attempts: 1_000,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(400),
            attempt_timeout: Duration::from_secs(60),
        },
    )
    .await?;
    let w = window_ago(2);
    let batch = vec![
        record(
            1,
            partial("h1", 1, "web", w, &reqs(2, "10.1.7.7", 200, 1, None)).encode(),
        ),
        record(
            2,
            partial("h2", 1, "web", w, &reqs(1, "10.9.0.1", 200, 1, None)).encode(),
        ),
    ];
    // 4 s of publishing, then the finish budget.
    let started = Instant::now();
    let out = handler
        .handle_until(
            &batch,
            Some(started + FINISH_BUDGET + Duration::from_secs(4)),
        )
        .await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(4),
        "stopped publishing before the deadline less the finish budget: {took:?}"
    );
    assert!(
        took >= Duration::from_millis(2_000),
        "used the time it had: {took:?}"
    );
    let all: Vec<String> = batch.iter().map(|r| r.sequence_number.clone()).collect();
    assert_eq!(out.failed, all, "{out:?}");
    assert!(out.stats.retries >= 3, "{:?}", out.stats);
    assert_eq!(
        proxy.counts().put_metric_data as usize,
        out.stats.retries + 1
    );
    Ok(())
}

#[test]
fn production_retry_policy_is_bounded() {
    let p = RetryPolicy::default();
    assert_eq!(p.max_attempts, 6);
    let worst: Duration = (1..p.max_attempts)
        .map(|a| p.base_delay.saturating_mul(1 << (a - 1)).min(p.max_delay))
        .sum::<Duration>()
        + p.attempt_timeout * p.max_attempts;
    assert!(worst <= Duration::from_secs(70), "{worst:?}");
}
