//! The soak: a sustained stream of access-log lines into a file rotated
//! every 30 s (rename+create and copytruncate in turn, old files deleted),
//! the agent in aggregate mode shipping through a fault proxy that injects
//! Kinesis throttling, 5xx, stalls and resets in every other minute.
//! It reports lines in vs requests counted on the stream, duplicates, the
//! agent's RSS over time and its CPU per 10k lines/s, and fails on any loss,
//! any duplicate or growing memory.
//!
//! Ignored by `cargo test`: run it with `scripts/load.sh soak [minutes] [lines/s]`
//! (defaults 30 min at 20 000 lines/s), which builds release binaries.
//! `SOAK_SECS` and `SOAK_RATE` set the same from the environment.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::fs;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use tailrace_tests::fault_proxy::{FaultProxy, Faults};
use tailrace_tests::loadrun::{LineWriter, Probe, Rotation};
use tailrace_tests::loggen;
use tailrace_tests::{bin, create_stream, env_or, read_stream, AgentDir, Moto};
use tailrace_wire::Partial;

struct Sample {
    at_secs: u64,
    probe: Probe,
    lines: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a long soak: run scripts/load.sh soak"]
async fn soak() -> Result<()> {
    let secs = env_or("SOAK_SECS", 30 * 60)?;
    let rate = env_or("SOAK_RATE", 20_000)?;
    let moto = Moto::start()?;
    let kinesis = aws_sdk_kinesis::Client::new(&moto.sdk_config().await);
    create_stream(&kinesis, "soak", 2).await?;
    let proxy = FaultProxy::start(&moto.endpoint(), Faults::none())?;
    let a = AgentDir::new(
        "soak",
        "soak-host",
        &proxy.endpoint(),
        &format!(
            "    format: '{}'\n    start_at: beginning\n    stream: soak\n    mode: aggregate\n    window: 1m\n    allowed_lateness: 2s\n",
            loggen::FORMAT
        ),
    )?;
    let mut agent = a.run(&bin("tailrace")?, "soak")?;
    let pid = agent.0.id();

    let mut writer = LineWriter::new(&a.log, "soak", rate)?
        .with_errors(true)
        .rotating(Rotation::Alternate {
            every: Duration::from_secs(30),
        });
    let mut samples: Vec<Sample> = Vec::new();
    let mut next_sample = Duration::ZERO;
    let mut faulty = false;
    let tick = Duration::from_millis(50);
    while writer.elapsed() < Duration::from_secs(secs) {
        let t = writer.elapsed();
        // Faults in every other minute: each window's records (sent once
        // a minute) meet them in turn.
        let want_faults = (t.as_secs() / 60).is_multiple_of(2);
        if want_faults != faulty {
            faulty = want_faults;
            proxy.set_faults(if faulty {
                Faults {
                    p_record: 0.5,
                    p_5xx: 0.2,
                    p_stall: 0.05,
                    stall_for: Duration::from_secs(3),
                    p_drop: 0.05,
                    seed: t.as_secs(),
                }
            } else {
                Faults::none()
            });
        }
        if t >= next_sample {
            next_sample += Duration::from_secs(10);
            let s = Sample {
                at_secs: t.as_secs(),
                probe: Probe::of(pid)?,
                lines: writer.written(),
            };
            println!(
                "t={:>5}s rss={:>6} KiB cpu={:>7.2}s lines={}",
                s.at_secs,
                s.probe.rss_kib,
                s.probe.cpu_ticks() as f64 / 100.0,
                s.lines
            );
            samples.push(s);
        }
        writer.step()?;
        writer.wait_tick(tick).await;
        ensure!(
            agent.0.try_wait()?.is_none(),
            "the agent exited during the soak"
        );
    }
    let (written, rotations) = (writer.written(), writer.rotations());
    let wrote_for = writer.elapsed();
    proxy.set_faults(Faults::none());
    let cpu_before_drain = Probe::of(pid)?.cpu_ticks();
    // Let the last windows close, then stop: stopping flushes what is open.
    tokio::time::sleep(Duration::from_secs(15)).await;
    agent.signal("TERM")?;
    ensure!(
        agent.wait_timeout(Duration::from_secs(60))?.success(),
        "the agent did not stop cleanly"
    );

    let mut ids = HashSet::new();
    let (mut counted, mut duplicates, mut rejected, mut records) = (0u64, 0u64, 0u64, 0u64);
    let mut per_window: HashMap<i64, u64> = HashMap::new();
    for r in read_stream(&kinesis, "soak").await? {
        records += 1;
        let p = Partial::decode(&r.data).context("decoding a partial")?;
        if !ids.insert((
            p.host_id.clone(),
            p.flow.clone(),
            p.sequence,
            r.data.clone(),
        )) {
            duplicates += 1;
            continue;
        }
        counted += p.total().requests;
        rejected += p.rejected_lines;
        *per_window.entry(p.window_start).or_default() += p.total().requests;
    }
    let faults = proxy.counts();

    let cpu_secs = cpu_before_drain as f64 / 100.0;
    let per_10k = cpu_secs / wrote_for.as_secs_f64() / (rate as f64 / 10_000.0);
    let third = samples.len() / 3;
    let max_rss = |s: &[Sample]| s.iter().map(|x| x.probe.rss_kib).max().unwrap_or(0);
    let (early, late) = (
        max_rss(&samples[..third.max(1).min(samples.len())]),
        max_rss(&samples[samples.len() - third..]),
    );
    let mut report = String::new();
    writeln!(report, "# Soak report\n")?;
    writeln!(report, "- duration: {:.0} s writing at {rate} lines/s, rotation every 30 s ({rotations} rotations)", wrote_for.as_secs_f64())?;
    writeln!(report, "- lines written: {written}; requests counted on the stream: {counted}; lost: {}; rejected: {rejected}", written as i64 - counted as i64)?;
    writeln!(
        report,
        "- records on the stream: {records}; exact duplicates: {duplicates}; windows: {}",
        per_window.len()
    )?;
    writeln!(report, "- faults injected: {faults:?}")?;
    writeln!(
        report,
        "- agent CPU: {cpu_secs:.1} s = {per_10k:.3} CPU-s per s per 10k lines/s"
    )?;
    writeln!(
        report,
        "- agent RSS: max {early} KiB in the first third, {late} KiB in the last third\n"
    )?;
    writeln!(
        report,
        "| t (s) | RSS (KiB) | CPU (s) | lines written |\n|---|---|---|---|"
    )?;
    for s in &samples {
        writeln!(
            report,
            "| {} | {} | {:.2} | {} |",
            s.at_secs,
            s.probe.rss_kib,
            s.probe.cpu_ticks() as f64 / 100.0,
            s.lines
        )?;
    }
    let out = a.dir.join("soak-report.md");
    fs::write(&out, &report)?;
    println!("{report}\nreport: {}", out.display());

    ensure!(
        counted == written,
        "lost {} lines",
        written as i64 - counted as i64
    );
    ensure!(rejected == 0, "{rejected} lines rejected");
    // The proxy never forwards a call it fails, so nothing is put twice.
    ensure!(duplicates == 0, "{duplicates} records on the stream twice");
    ensure!(
        late <= early + early / 4 + 4096,
        "RSS grew: {early} KiB early, {late} KiB late"
    );
    Ok(())
}
