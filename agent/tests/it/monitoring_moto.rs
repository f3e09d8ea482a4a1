//! Watching the agent run, against moto_server on 127.0.0.1 and the real
//! binary: self-metrics read back from CloudWatch with GetMetricStatistics,
//! `/metrics` and `/health` read with curl, and `tailrace status --json`,
//! all compared with independent counts of what was written and what is on
//! the stream. `/health` must turn 503 when the stream is deleted and when
//! the checkpoint cannot be written (its path made a directory: unlike a
//! chmod, that also stops root), and 200 again once each is repaired.

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use tailrace_tests::loggen;
use tailrace_tests::{create_stream, eventually, free_port, metric_sum, read_stream, Moto};

const STREAM: &str = "vis";
const HOST: &str = "vis-host";
const NAMESPACE: &str = "Tailrace/Test";

/// Lines `from..to` of the flow, appended to `log`.
fn append(log: &Path, from: usize, to: usize) -> Result<()> {
    loggen::append(log, &loggen::tagged_lines("vis", from..to))
}

/// GET `url` with curl: (status, body).
fn get(url: &str) -> Result<(u16, String)> {
    let out = Command::new("curl")
        .args(["-s", "-m", "5", "-w", "\n%{http_code}", url])
        .output()
        .context("running curl")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').context("curl output")?;
    Ok((code.trim().parse().unwrap_or(0), body.to_string()))
}

/// The value of `name{flow="web"}` in a Prometheus exposition.
fn prom(text: &str, name: &str) -> Option<f64> {
    let prefix = format!("{name}{{flow=\"web\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

/// Lines (by number), record count and data bytes on the stream.
async fn on_stream(
    kinesis: &aws_sdk_kinesis::Client,
) -> Result<(HashMap<usize, usize>, usize, usize)> {
    let records = read_stream(kinesis, STREAM).await?;
    let mut lines = HashMap::new();
    let mut bytes = 0;
    for r in &records {
        bytes += r.data.len();
        for l in tailrace_wire::raw::lines(&r.data) {
            let s = String::from_utf8_lossy(l);
            let at = s.find("/vis/").context("line without /vis/")? + 5;
            let n: usize = s[at..at + 6].parse()?;
            *lines.entry(n).or_default() += 1;
        }
    }
    Ok((lines, records.len(), bytes))
}

async fn all_lines(kinesis: &aws_sdk_kinesis::Client, n: usize) -> Result<(usize, usize)> {
    eventually(
        Duration::from_secs(60),
        &format!("{n} lines on the stream"),
        || async {
            let (lines, records, bytes) = on_stream(kinesis).await?;
            if lines.len() > n || lines.values().any(|&c| c > 1) {
                bail!(
                    "duplicates or unknown lines on the stream: {} distinct",
                    lines.len()
                );
            }
            Ok((lines.len() == n).then_some((records, bytes)))
        },
    )
    .await
}

async fn health_is(port: u16, code: u16, contains: &str) -> Result<String> {
    eventually(
        Duration::from_secs(60),
        &format!("/health answering {code} with `{contains}`"),
        || async move {
            let (got, body) = get(&format!("http://127.0.0.1:{port}/health"))?;
            Ok((got == code && body.contains(contains)).then_some(body))
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_health_and_status_match_independent_counts() -> Result<()> {
    let (moto, kinesis) = Moto::with_stream(STREAM, 1).await?;
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&moto.sdk_config().await);
    let port = free_port()?;
    let a = tailrace_tests::AgentDir::new(
        "monitoring",
        HOST,
        &moto.endpoint(),
        &format!(
            "    format: combined\n    start_at: beginning\n    stream: {STREAM}\n    linger: 100ms\n\
             monitoring:\n  cloudwatch:\n    enabled: true\n    namespace: {NAMESPACE}\n    interval: 1s\n    host_dimension: true\n\
             \x20 http:\n    enabled: true\n    listen: 127.0.0.1:{port}\n\
             \x20 health:\n    kinesis_failing_after: 2s\n"
        ),
    )?;
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let mut agent = a.run(Path::new(env!("CARGO_BIN_EXE_tailrace")), "1")?;
    tailrace_tests::wait_for_port(port, Duration::from_secs(20))?;

    // 1. Lines in, counted three ways.
    append(&a.log, 0, 300)?;
    let (records, bytes) = all_lines(&kinesis, 300).await?;
    // Every metric per Flow; with host_dimension only the stall alarm's
    // OldestUnacknowledgedAge per Flow and Host too (docs/COST.md).
    let dims = [("Flow", "web")];
    let sum = |metric: &'static str| {
        let cloudwatch = cloudwatch.clone();
        async move { metric_sum(&cloudwatch, NAMESPACE, metric, &dims, started - 120, 3600).await }
    };
    let expected = [
        ("LinesRead", 300.0),
        ("LinesSent", 300.0),
        ("RecordsSent", records as f64),
        ("BytesSent", bytes as f64),
        // moto never refuses a record: every attempt is a first one.
        ("RecordSendAttempts", records as f64),
        ("RecordSendErrors", 0.0),
        ("ServiceErrors", 0.0),
    ];
    eventually(
        Duration::from_secs(30),
        "CloudWatch sums equal to the counts",
        || async {
            for (metric, want) in expected {
                let (got, samples) = sum(metric).await?;
                if samples == 0.0 || got != want {
                    return Ok(None);
                }
            }
            Ok(Some(()))
        },
    )
    .await
    .with_context(|| format!("expected {expected:?}"))?;
    let (_, samples) = sum("BacklogBytes").await?;
    ensure!(samples > 0.0, "BacklogBytes is published");
    let per_host = [("Flow", "web"), ("Host", HOST)];
    for (metric, published) in [("OldestUnacknowledgedAge", true), ("LinesRead", false)] {
        let (_, samples) = metric_sum(
            &cloudwatch,
            NAMESPACE,
            metric,
            &per_host,
            started - 120,
            3600,
        )
        .await?;
        ensure!(
            (samples > 0.0) == published,
            "{metric} with Host: {samples} samples"
        );
    }

    let (code, text) = get(&format!("http://127.0.0.1:{port}/metrics"))?;
    ensure!(code == 200, "/metrics answered {code}");
    for (name, want) in [
        ("tailrace_lines_read_total", 300.0),
        ("tailrace_lines_sent_total", 300.0),
        ("tailrace_records_sent_total", records as f64),
        ("tailrace_bytes_sent_total", bytes as f64),
        ("tailrace_record_send_attempts_total", records as f64),
        ("tailrace_service_errors_total", 0.0),
    ] {
        ensure!(
            prom(&text, name) == Some(want),
            "{name}: want {want} in\n{text}"
        );
    }
    ensure!(text.contains("tailrace_healthy 1"), "{text}");
    let body = health_is(port, 200, "ok").await?;
    ensure!(body == "ok\n", "{body}");
    eventually(
        Duration::from_secs(10),
        "no backlog on /metrics",
        || async {
            let (_, text) = get(&format!("http://127.0.0.1:{port}/metrics"))?;
            Ok((prom(&text, "tailrace_backlog_bytes") == Some(0.0)
                && prom(&text, "tailrace_oldest_unacknowledged_age_seconds") == Some(0.0))
            .then_some(()))
        },
    )
    .await?;

    // `tailrace status` shows when the file was last acknowledged.
    let status = eventually(
        Duration::from_secs(10),
        "status with last acknowledgements",
        || async {
            let v = a.status(Path::new(env!("CARGO_BIN_EXE_tailrace")))?;
            let ready = v["files"][0]["last_acknowledged_at"].is_string()
                && v["files"][0]["lag"] == 0
                && v["flows"][0]["last_acknowledged_at"].is_string();
            Ok(ready.then_some(v))
        },
    )
    .await?;
    ensure!(status["flows"][0]["name"] == "web", "{status}");
    ensure!(status["flows"][0]["service_errors"] == 0, "{status}");
    let table = Command::new(env!("CARGO_BIN_EXE_tailrace"))
        .args(["status", "--config"])
        .arg(&a.config)
        .output()?;
    let table = String::from_utf8_lossy(&table.stdout);
    ensure!(
        table.contains("flow web → vis: last acknowledged 20"),
        "{table}"
    );

    // 2. The stream disappears: unhealthy; it comes back: healthy, nothing lost.
    kinesis.delete_stream().stream_name(STREAM).send().await?;
    append(&a.log, 300, 400)?;
    let body = health_is(port, 503, "Kinesis calls failing").await?;
    ensure!(body.contains("flow web"), "{body}");
    let (_, text) = get(&format!("http://127.0.0.1:{port}/metrics"))?;
    ensure!(
        prom(&text, "tailrace_service_errors_total").unwrap_or(0.0) > 0.0,
        "{text}"
    );
    ensure!(text.contains("tailrace_healthy 0"), "{text}");
    // A file all acknowledged at its last look is looked at again within
    // 5 s (observe::registry's IDLE_RESTAT), so its new bytes show as
    // backlog within that, not at once: health can turn first.
    eventually(
        Duration::from_secs(10),
        "the unsent lines as backlog on /metrics",
        || async {
            let (_, text) = get(&format!("http://127.0.0.1:{port}/metrics"))?;
            Ok((prom(&text, "tailrace_backlog_bytes").unwrap_or(0.0) > 0.0).then_some(()))
        },
    )
    .await?;
    create_stream(&kinesis, STREAM, 1).await?;
    health_is(port, 200, "ok").await?;
    all_lines_from(&kinesis, 300, 400).await?;

    // 3. The checkpoint cannot be written: unhealthy; repaired: healthy.
    let ckpt = a.dir.join("state/checkpoints.json");
    fs::remove_file(&ckpt)?;
    fs::create_dir(&ckpt)?;
    fs::write(ckpt.join("in-the-way"), b"x")?;
    append(&a.log, 400, 410)?;
    let body = health_is(port, 503, "checkpoint cannot be written").await?;
    ensure!(body.contains("checkpoints.json"), "{body}");
    fs::remove_dir_all(&ckpt)?;
    append(&a.log, 410, 420)?;
    health_is(port, 200, "ok").await?;
    ensure!(ckpt.is_file(), "the checkpoint is written again");

    agent.stop(Duration::from_secs(25))?;
    if std::env::var_os("KEEP").is_none() {
        let _ = fs::remove_dir_all(&a.dir);
    }
    Ok(())
}

/// Lines `from..to` arrive on the (recreated) stream, once each.
async fn all_lines_from(kinesis: &aws_sdk_kinesis::Client, from: usize, to: usize) -> Result<()> {
    eventually(
        Duration::from_secs(60),
        "the lines written during the outage",
        || async {
            let (lines, _, _) = on_stream(kinesis).await?;
            if lines.values().any(|&c| c > 1) {
                bail!("duplicates on the recreated stream");
            }
            Ok((from..to).all(|i| lines.contains_key(&i)).then_some(()))
        },
    )
    .await
}
