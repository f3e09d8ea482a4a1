//! The host budget (issue #14): what `tailrace run` costs the host it runs
//! on. For each rate (default 1k, 10k and 50k lines/s), for `BUDGET_SECS`
//! (default 600), the agent in aggregate mode reads a file written as Apache
//! writes it (one `write(2)` per line) and rotated every minute, and ships to
//! moto_server's Kinesis. It reports the agent's CPU as a share of one core
//! (user and system apart) and its RSS, next to `wc -l` on the same files
//! (the floor: reading the lines once and counting them), and fails when the
//! requests counted on the stream differ from the lines written. The agent
//! runs with the product's checkpoint interval (every second), not the test
//! kit's 200 ms; self-metrics are `auto`, so off (no instance metadata).
//!
//! Ignored by `cargo test`: run it with `scripts/load.sh budget [minutes]
//! [lines/s ...]`, which builds release binaries. `BUDGET_SECS` and
//! `BUDGET_RATES` (comma-separated) set the same.

use std::fmt::Write as _;
use std::fs;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use tailrace_tests::loadrun::{wc_floor, LineWriter, Probe, Rotation};
use tailrace_tests::loggen;
use tailrace_tests::{bin, create_stream, env_or, read_stream, AgentDir, Moto};
use tailrace_wire::Partial;

/// Seconds after the agent's start left out of the measurement (its
/// start, the first discovery, the first window opening).
const WARMUP: Duration = Duration::from_secs(10);

/// What one rate cost.
struct Row {
    rate: u64,
    secs: f64,
    written: u64,
    wrote_secs: f64,
    user: f64,
    system: f64,
    rss_max_kib: u64,
    rss_last_kib: u64,
    floor: f64,
}

async fn one_rate(
    moto: &Moto,
    kinesis: &aws_sdk_kinesis::Client,
    rate: u64,
    secs: u64,
) -> Result<Row> {
    let stream = format!("budget-{rate}");
    create_stream(kinesis, &stream, 1).await?;
    let a = AgentDir::new(
        &stream,
        "budget-host",
        &moto.endpoint(),
        &format!(
            "    format: '{}'\n    start_at: beginning\n    stream: {stream}\n    mode: aggregate\n    window: 1m\n    allowed_lateness: 2s\n",
            loggen::FORMAT
        ),
    )?;
    // The product's checkpoint interval (1 s), not the kit's 200 ms.
    let config = fs::read_to_string(&a.config)?;
    fs::write(
        &a.config,
        config.replace("checkpoint_interval: 200ms\n", ""),
    )?;
    let mut agent = a.run(&bin("tailrace")?, &stream)?;
    let pid = agent.0.id();
    let mut writer = LineWriter::new(&a.log, &stream, rate)?
        .per_line(true)
        .rotating(Rotation::Rename {
            every: Duration::from_secs(60),
        });
    let tick = Duration::from_millis(20);
    let total = WARMUP + Duration::from_secs(secs);
    let mut first: Option<(Probe, Duration, u64)> = None;
    let (mut rss_max, mut next_sample) = (0u64, WARMUP);
    while writer.elapsed() < total {
        writer.step()?;
        let t = writer.elapsed();
        if t >= next_sample {
            next_sample += Duration::from_secs(5);
            let p = Probe::of(pid)?;
            rss_max = rss_max.max(p.rss_kib);
            if first.is_none() {
                first = Some((p, t, writer.written()));
            }
        }
        writer.wait_tick(tick).await;
        ensure!(
            agent.0.try_wait()?.is_none(),
            "the agent exited at {rate} lines/s: {}",
            a.agent_log(&stream)
        );
    }
    let last = Probe::of(pid)?;
    let t_end = writer.elapsed();
    let (p0, t0, _) = first.context("no sample after the warm-up")?;
    let measured = (t_end - t0).as_secs_f64();
    let (written, files) = (writer.written(), writer.files());
    drop(writer);

    let (wc_cpu, wc_lines) = wc_floor(&files)?;
    // Only the newest rotations are kept: scale the floor to every line.
    let floor_per_line = wc_cpu / wc_lines.max(1) as f64;
    let lines_measured = written as f64 * measured / t_end.as_secs_f64();

    tokio::time::sleep(Duration::from_secs(3)).await;
    agent.signal("TERM")?;
    ensure!(
        agent.wait_timeout(Duration::from_secs(60))?.success(),
        "the agent did not stop cleanly at {rate} lines/s"
    );
    let mut counted = 0u64;
    for r in read_stream(kinesis, &stream).await? {
        counted += Partial::decode(&r.data)
            .context("decoding a partial")?
            .total()
            .requests;
    }
    ensure!(
        counted == written,
        "at {rate} lines/s: {written} lines written, {counted} requests on the stream"
    );
    Ok(Row {
        rate,
        secs: measured,
        written,
        wrote_secs: t_end.as_secs_f64(),
        user: (last.user_ticks - p0.user_ticks) as f64 / 100.0,
        system: (last.system_ticks - p0.system_ticks) as f64 / 100.0,
        rss_max_kib: rss_max.max(last.rss_kib),
        rss_last_kib: last.rss_kib,
        floor: floor_per_line * lines_measured,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "minutes long: run scripts/load.sh budget"]
async fn host_budget() -> Result<()> {
    let secs = env_or("BUDGET_SECS", 600)?;
    let rates: Vec<u64> = std::env::var("BUDGET_RATES")
        .unwrap_or_else(|_| "1000,10000,50000".into())
        .split(',')
        .map(|r| {
            r.trim()
                .parse()
                .with_context(|| format!("BUDGET_RATES: {r:?} is not a number"))
        })
        .collect::<Result<_>>()?;
    let moto = Moto::start()?;
    let kinesis = aws_sdk_kinesis::Client::new(&moto.sdk_config().await);
    let mut rows = Vec::new();
    for &rate in &rates {
        let row = one_rate(&moto, &kinesis, rate, secs).await?;
        println!(
            "{rate} lines/s: {:.2}% of a core ({:.2}% user, {:.2}% system), RSS max {} KiB; wc -l {:.3}%",
            100.0 * (row.user + row.system) / row.secs,
            100.0 * row.user / row.secs,
            100.0 * row.system / row.secs,
            row.rss_max_kib,
            100.0 * row.floor / row.secs
        );
        rows.push(row);
    }

    let mut report = String::new();
    writeln!(report, "# Host budget\n")?;
    writeln!(report, "`tailrace run`, aggregate mode, one file written one line per write(2) and renamed every 60 s; measured for {secs} s after a {} s warm-up.\n", WARMUP.as_secs())?;
    writeln!(report, "| lines/s asked | lines/s written | agent CPU, % of a core | user | system | RSS max (MiB) | RSS at end (MiB) | `wc -l` on the same lines, % of a core | agent ÷ `wc -l` |")?;
    writeln!(report, "|---|---|---|---|---|---|---|---|---|")?;
    for r in &rows {
        let cpu = r.user + r.system;
        writeln!(
            report,
            "| {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.1} | {:.1} | {:.3} | {:.0}× |",
            r.rate,
            r.written as f64 / r.wrote_secs,
            100.0 * cpu / r.secs,
            100.0 * r.user / r.secs,
            100.0 * r.system / r.secs,
            r.rss_max_kib as f64 / 1024.0,
            r.rss_last_kib as f64 / 1024.0,
            100.0 * r.floor / r.secs,
            cpu / r.floor.max(1e-9),
        )?;
    }
    let out = std::env::temp_dir().join("tailrace-budget-report.md");
    fs::write(&out, &report).with_context(|| format!("writing {}", out.display()))?;
    println!("\n{report}\nreport: {}", out.display());
    Ok(())
}
