//! The system clock stepping forward and back during aggregation.

use super::*;

/// Requests and rejects per window over every partial on the stream.
async fn partial_totals(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
) -> Result<(u64, u64, usize)> {
    let (mut requests, mut rejected, mut late) = (0, 0, 0);
    for r in read_stream(kinesis, stream).await? {
        let p = Partial::decode(&r.data).context("decoding a partial")?;
        requests += p.total().requests;
        rejected += p.rejected_lines;
        late += usize::from(p.late);
    }
    Ok((requests, rejected, late))
}

/// Wait until the agent's clock is `offset` seconds off the real one, as
/// the time it writes into its status file shows, plus a moment for its
/// reader to tick.
async fn agent_clock_is(state: &Path, offset: i64) -> Result<()> {
    eventually(
        Duration::from_secs(20),
        "the agent's clock to step",
        || async move {
            let Ok(text) = fs::read_to_string(state.join("status.json")) else {
                return Ok(None);
            };
            let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            let written = v["written_ms"].as_i64().unwrap_or(0) / 1000;
            Ok(((written - loggen::now() - offset).abs() < 30).then_some(()))
        },
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok(())
}

/// The host's clock steps two hours forward and back again while lines keep
/// coming (stamped by that clock, as Apache would): every request is counted
/// once, the lines after the step back land in late partials of their
/// windows, and only lines stamped far ahead of the clock are rejected.
/// The agent runs under libfaketime, whose offset file the test rewrites.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clock_steps_forward_and_back_count_every_request_once() -> Result<()> {
    const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
    ensure!(
        Path::new(LIBFAKETIME).exists(),
        "{LIBFAKETIME} is missing: apt-get install faketime"
    );
    let (moto, kinesis) = Moto::with_stream("clock", 1).await?;
    let s = Setup::new(
        "clock",
        &moto.endpoint(),
        "clock",
        "*.log",
        "    mode: aggregate\n    window: 1m\n    allowed_lateness: 2s\n",
    )?;
    let offset_file = s.dir.join("faketime");
    fs::write(&offset_file, "+0")?;
    let child = Command::new(AGENT)
        .args(["run", "--config"])
        .arg(&s.config)
        .envs(tailrace_tests::child_env())
        .env("LD_PRELOAD", LIBFAKETIME)
        .env("FAKETIME_TIMESTAMP_FILE", &offset_file)
        .env("FAKETIME_CACHE_DURATION", "1")
        // A step of the system clock moves CLOCK_REALTIME only.
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(s.log_path("1"))?)
        .spawn()?;
    let mut agent = ChildGuard(child);
    let log = s.logs.join("a.log");
    let now = loggen::now();
    append(&log, &text(&requests("a", 300, now)))?;
    // A line from a broken clock, a year ahead: a reject, not a watermark.
    append(&log, &text(&requests("bogus", 5, now + 365 * 86_400)))?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    fs::write(&offset_file, "+7200")?;
    agent_clock_is(&s.state, 7200).await?;
    append(&log, &text(&requests("b", 300, loggen::now() + 7200)))?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    fs::write(&offset_file, "+0")?;
    agent_clock_is(&s.state, 0).await?;
    // Stamped like the first lines: `loggen::now()` here could fall in the
    // next one-minute window (the steps take 8 s or more), which no line
    // had opened, so it would not be late, and the test failed whenever it
    // began in a minute's last seconds.
    append(&log, &text(&requests("c", 300, now)))?;
    s.still_running(&mut agent, "1")?;
    // Stopping flushes every open window.
    stop(agent)?;
    let (requests, rejected, late) = partial_totals(&kinesis, "clock").await?;
    ensure!(
        (requests, rejected) == (900, 5),
        "requests {requests} (want 900), rejected {rejected} (want 5)\n{}",
        s.agent_log("1")
    );
    ensure!(
        late > 0,
        "the lines after the step back went to late partials"
    );
    Ok(())
}
