//! Kinesis unreachable for minutes while lines keep coming (issue #6): the
//! agent in raw mode (the mode whose backlog is largest: every byte goes on
//! the stream) ships through a proxy that, during the outage, drops every
//! call's connection before forwarding it. Lines are written at a steady rate
//! before, during and after the outage.
//!
//! It reports, from samples every 2 s (RSS and CPU from `/proc`, lines sent
//! and backlog from the agent's `/metrics`): the agent's memory before, during
//! and after the outage; the backlog when Kinesis came back; how long the
//! first acknowledgement then took and how long until the agent caught up;
//! the drain rate and what the agent and moto_server used of the CPU meanwhile
//! (which of the two set the pace). At the end it reads the whole stream back
//! and fails on any lost line, any duplicate, or memory that grew with the
//! backlog.
//!
//! Ignored by `cargo test`: run it with `scripts/load.sh outage [minutes] [lines/s]`
//! (defaults 5 min of outage at 5 000 lines/s, after 1 min of normal work
//! and followed by 1 min of writing), which builds release binaries.
//! `OUTAGE_SECS`, `OUTAGE_RATE`, `OUTAGE_WARMUP_SECS`, `OUTAGE_AFTER_SECS` set
//! the same; `OUTAGE_WRITE_PER_LINE=1` writes each line with its own
//! `write(2)`, as Apache does (one file event per line), instead of one
//! write per 100 ms tick.

use std::fmt::Write as _;
use std::fs;
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use tailrace_tests::fault_proxy::{FaultProxy, Faults};
use tailrace_tests::loadrun::{LineWriter, Probe};
use tailrace_tests::loggen;
use tailrace_tests::{bin, create_stream, env_or, free_port, read_stream, AgentDir, Moto};

/// One metric's value from the agent's Prometheus text, flow `web`.
fn metric(text: &str, name: &str) -> Option<f64> {
    let prefix = format!("{name}{{flow=\"web\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

/// `GET /metrics` with curl (CI installs it).
fn scrape(port: u16) -> Result<String> {
    let out = Command::new("curl")
        .args(["-sf", "--max-time", "5"])
        .arg(format!("http://127.0.0.1:{port}/metrics"))
        .output()
        .context("running curl")?;
    ensure!(out.status.success(), "curl /metrics failed: {}", out.status);
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Before,
    Outage,
    After,
}

struct Sample {
    at: f64,
    phase: Phase,
    agent: Probe,
    moto: Probe,
    written: u64,
    sent: u64,
    backlog_bytes: u64,
}

/// The number `n` of a line whose path is `/outage/{n}`.
fn line_number(line: &[u8]) -> Option<usize> {
    let at = memchr_find(line, b"/outage/")? + b"/outage/".len();
    let digits = line[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&line[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

fn memchr_find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "minutes long: run scripts/load.sh outage"]
async fn outage() -> Result<()> {
    let outage_secs = env_or("OUTAGE_SECS", 300)?;
    let rate = env_or("OUTAGE_RATE", 5_000)?;
    let warmup = env_or("OUTAGE_WARMUP_SECS", 60)?;
    let after = env_or("OUTAGE_AFTER_SECS", 60)?;
    let per_line = env_or("OUTAGE_WRITE_PER_LINE", 0)? == 1;
    let moto = Moto::start()?;
    let kinesis = aws_sdk_kinesis::Client::new(&moto.sdk_config().await);
    create_stream(&kinesis, "outage", 2).await?;
    let proxy = FaultProxy::start(&moto.endpoint(), Faults::none())?;
    let http_port = free_port()?;
    let a = AgentDir::new(
        "outage-long",
        "outage-host",
        &proxy.endpoint(),
        &format!(
            "    format: '{}'\n    start_at: beginning\n    stream: outage\n    mode: raw\n    linger: 200ms\nmonitoring:\n  cloudwatch:\n    enabled: false\n  http:\n    enabled: true\n    listen: 127.0.0.1:{http_port}\n",
            loggen::FORMAT
        ),
    )?;
    let mut agent = a.run(&bin("tailrace")?, "outage")?;
    let pid = agent.0.id();
    let moto_pid = moto.pid();

    let mut writer = LineWriter::new(&a.log, "outage", rate)?.per_line(per_line);
    let mut samples: Vec<Sample> = Vec::new();
    let mut next_sample = Duration::ZERO;
    let mut phase = Phase::Before;
    let tick = Duration::from_millis(50);
    let outage_from = Duration::from_secs(warmup);
    let outage_to = outage_from + Duration::from_secs(outage_secs);
    let write_until = outage_to + Duration::from_secs(after);
    let drain_limit = write_until + Duration::from_secs(outage_secs * 2 + 120);
    let mut caught_up_at: Option<f64> = None;
    loop {
        let t = writer.elapsed();
        let written = writer.written();
        let want = if t < outage_from {
            Phase::Before
        } else if t < outage_to {
            Phase::Outage
        } else {
            Phase::After
        };
        if want != phase {
            phase = want;
            proxy.set_faults(if phase == Phase::Outage {
                Faults {
                    p_drop: 1.0,
                    ..Faults::none()
                }
            } else {
                Faults::none()
            });
            println!("t={:>5.0}s phase {phase:?}", t.as_secs_f64());
        }
        if t >= next_sample {
            next_sample += Duration::from_secs(2);
            let text = scrape(http_port)?;
            let s = Sample {
                at: t.as_secs_f64(),
                phase,
                agent: Probe::of(pid)?,
                moto: Probe::of(moto_pid)?,
                written,
                sent: metric(&text, "tailrace_lines_sent_total").unwrap_or(0.0) as u64,
                backlog_bytes: metric(&text, "tailrace_backlog_bytes").unwrap_or(0.0) as u64,
            };
            if samples.len().is_multiple_of(5) {
                println!(
                    "t={:>5.0}s {:?} rss={} KiB written={} sent={} backlog={} B",
                    s.at, s.phase, s.agent.rss_kib, s.written, s.sent, s.backlog_bytes
                );
            }
            if phase == Phase::After
                && t >= write_until
                && caught_up_at.is_none()
                && s.sent >= written
            {
                caught_up_at = Some(s.at);
            }
            samples.push(s);
            if caught_up_at.is_some() {
                break;
            }
        }
        ensure!(
            t < drain_limit,
            "the agent had not caught up {} s after the outage",
            drain_limit.saturating_sub(outage_to).as_secs()
        );
        if t < write_until {
            writer.step()?;
        }
        writer.wait_tick(tick).await;
        ensure!(
            agent.0.try_wait()?.is_none(),
            "the agent exited during the test"
        );
    }
    let written = writer.written();
    drop(writer);
    agent.signal("TERM")?;
    ensure!(
        agent.wait_timeout(Duration::from_secs(60))?.success(),
        "the agent did not stop cleanly"
    );

    // Every line, read back from the stream.
    let mut seen = vec![0u8; written as usize];
    let (mut records, mut bytes) = (0u64, 0u64);
    for r in read_stream(&kinesis, "outage").await? {
        records += 1;
        bytes += r.data.len() as u64;
        for line in tailrace_wire::raw::lines(&r.data) {
            let n = line_number(line).context("a line without /outage/N on the stream")?;
            ensure!(n < seen.len(), "line {n} on the stream was never written");
            seen[n] = seen[n].saturating_add(1);
        }
    }
    let lost = seen.iter().filter(|&&c| c == 0).count();
    let duplicates: u64 = seen.iter().map(|&c| u64::from(c.saturating_sub(1))).sum();

    let in_phase = |p: Phase| samples.iter().filter(move |s| s.phase == p);
    let max_rss = |p: Phase| in_phase(p).map(|s| s.agent.rss_kib).max().unwrap_or(0);
    let end_of_outage = samples
        .iter()
        .rfind(|s| s.phase == Phase::Outage)
        .context("no sample during the outage")?;
    let first_after = in_phase(Phase::After)
        .find(|s| s.sent > end_of_outage.sent)
        .context("nothing sent after the outage")?;
    // The backlog of the outage is cleared when every line written before
    // Kinesis came back has been acknowledged.
    let cleared = samples
        .iter()
        .find(|s| s.phase == Phase::After && s.sent >= end_of_outage.written)
        .context("the outage's backlog was never cleared")?;
    let drain_secs = cleared.at - end_of_outage.at;
    let drained_lines = cleared.sent - end_of_outage.sent;
    let cpu_share = |now: &Probe, then: &Probe| now.cpu_secs_since(then) / drain_secs;
    let line_bytes =
        fs::metadata(&a.log).map(|m| m.len()).unwrap_or(0) as f64 / written.max(1) as f64;

    let mut report = String::new();
    writeln!(report, "# Outage report\n")?;
    writeln!(report, "- writing {rate} lines/s (about {line_bytes:.0} bytes each): {warmup} s normal, {outage_secs} s with every Kinesis call's connection dropped, {after} s normal")?;
    writeln!(report, "- lines written: {written}; on the stream: {} in {records} records ({bytes} bytes); lost: {lost}; duplicates: {duplicates}", written as usize - lost)?;
    writeln!(report, "- faults: {:?}", proxy.counts())?;
    writeln!(
        report,
        "- agent RSS: max {} KiB before, {} KiB during the outage, {} KiB after",
        max_rss(Phase::Before),
        max_rss(Phase::Outage),
        max_rss(Phase::After)
    )?;
    writeln!(
        report,
        "- at the end of the outage: {} lines behind, backlog {} bytes",
        end_of_outage.written - end_of_outage.sent,
        end_of_outage.backlog_bytes
    )?;
    writeln!(
        report,
        "- first lines acknowledged within {:.0} s of Kinesis coming back; the outage's backlog cleared within {drain_secs:.0} s (samples every 2 s)",
        first_after.at - end_of_outage.at
    )?;
    writeln!(
        report,
        "- drain: {drained_lines} lines (backlog and new lines) in {drain_secs:.0} s = {:.0} lines/s ({:.1} MB/s), while {rate} lines/s were written; CPU meanwhile: agent {:.2} cores, moto_server {:.2} cores\n",
        drained_lines as f64 / drain_secs,
        drained_lines as f64 * line_bytes / drain_secs / 1e6,
        cpu_share(&cleared.agent, &end_of_outage.agent),
        cpu_share(&cleared.moto, &end_of_outage.moto),
    )?;
    writeln!(
        report,
        "| t (s) | phase | RSS (KiB) | agent CPU (s) | written | sent | backlog (B) |\n|---|---|---|---|---|---|---|"
    )?;
    for s in samples.iter().step_by(5) {
        writeln!(
            report,
            "| {:.0} | {:?} | {} | {:.2} | {} | {} | {} |",
            s.at,
            s.phase,
            s.agent.rss_kib,
            s.agent.cpu_ticks() as f64 / 100.0,
            s.written,
            s.sent,
            s.backlog_bytes
        )?;
    }
    let out = a.dir.join("outage-report.md");
    fs::write(&out, &report)?;
    println!("{report}\nreport: {}", out.display());

    ensure!(lost == 0, "{lost} lines lost");
    ensure!(duplicates == 0, "{duplicates} duplicate lines");
    let (before, during) = (max_rss(Phase::Before), max_rss(Phase::Outage));
    ensure!(
        during <= before + before / 2 + 8192,
        "RSS grew with the backlog: {before} KiB before, {during} KiB during the outage"
    );
    Ok(())
}
