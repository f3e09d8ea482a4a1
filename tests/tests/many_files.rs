//! Many watched files (issue #11, "bounded resources"): the agent watches
//! `MANY_FILES` files (default 1,000; one glob over one directory, a line
//! in each), all read to their end. It reports, from `/proc`:
//! - the CPU the agent uses while idle, over `MANY_IDLE_SECS` (default 60);
//! - how long a new file among them takes from its creation to its line on
//!   the stream (the flow's `linger` of 100 ms included), over
//!   `MANY_NEW_FILES` new files (default 10), one every 2 s;
//! - its RSS and open descriptors.
//!
//! Ignored by `cargo test`: run it with `scripts/many_files.sh`, which
//! builds release binaries (a debug build measures the debug agent).

use std::fs;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use tailrace_tests::{bin, cpu_ticks, create_stream, env_or, read_stream, rss_kib, AgentDir, Moto};

fn line(tag: &str, n: u64) -> String {
    format!(
        "10.9.{}.{} - - [01/Dec/2026:07:00:00 +0000] \"GET /{tag}/{n} HTTP/1.1\" 200 1 \"-\" \"many\"\n",
        n % 250,
        n % 199
    )
}

fn open_fds(pid: u32) -> Result<usize> {
    Ok(fs::read_dir(format!("/proc/{pid}/fd"))?.count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a minute long: run scripts/many_files.sh"]
async fn idle_cpu_and_new_file_pickup_among_many_files() -> Result<()> {
    let files = env_or("MANY_FILES", 1_000)?;
    let idle_secs = env_or("MANY_IDLE_SECS", 60)?;
    let new_files = env_or("MANY_NEW_FILES", 10)?;
    let moto = Moto::start()?;
    let kinesis = aws_sdk_kinesis::Client::new(&moto.sdk_config().await);
    create_stream(&kinesis, "many", 1).await?;
    let a = AgentDir::new(
        "many",
        "many",
        &moto.endpoint(),
        "    format: combined\n    start_at: beginning\n    stream: many\n    mode: raw\n    linger: 100ms\n",
    )?;
    // One glob over the directory: `logs/access.log*` matches site-N.
    let logs = a.dir.join("logs");
    for n in 0..files {
        fs::write(logs.join(format!("access.log.site-{n:05}")), line("old", n))?;
    }
    let agent = a.run(&bin("tailrace")?, "1")?;
    let pid = agent.0.id();
    tailrace_tests::eventually(Duration::from_secs(60), "every file read", || {
        let kinesis = kinesis.clone();
        async move {
            let n: usize = read_stream(&kinesis, "many")
                .await?
                .iter()
                .map(|r| tailrace_wire::raw::lines(&r.data).count())
                .sum();
            Ok((n as u64 >= files).then_some(()))
        }
    })
    .await?;
    // Settle, then measure idle.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let ticks_before = cpu_ticks(pid)?;
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(idle_secs)).await;
    let ticks = cpu_ticks(pid)? - ticks_before;
    let idle_share = ticks as f64 / 100.0 / t0.elapsed().as_secs_f64();
    let rss = rss_kib(pid)?;
    let fds = open_fds(pid)?;

    let mut pickups = Vec::new();
    for n in 0..new_files {
        let tag = format!("new{n}");
        let created = Instant::now();
        fs::write(logs.join(format!("access.log.new-{n:03}")), line(&tag, n))?;
        let want = format!("/{tag}/{n} ");
        tailrace_tests::eventually(Duration::from_secs(30), "the new file's line", || {
            let kinesis = kinesis.clone();
            let want = want.clone();
            async move {
                let found = read_stream(&kinesis, "many").await?.iter().any(|r| {
                    tailrace_wire::raw::lines(&r.data)
                        .any(|l| String::from_utf8_lossy(l).contains(&want))
                });
                Ok(found.then_some(()))
            }
        })
        .await
        .with_context(|| format!("new file {n}"))?;
        pickups.push(created.elapsed());
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    pickups.sort();
    let median = pickups[pickups.len() / 2];
    let max = pickups[pickups.len() - 1];
    eprintln!(
        "| watched files | idle CPU (share of one core, {idle_secs} s) | RSS MiB | open fds | new file → on the stream, median / max (linger 100 ms, read-back polling included) |\n|---:|---:|---:|---:|---:|\n| {files} | {:.2}% | {:.1} | {fds} | {} ms / {} ms |",
        idle_share * 100.0,
        rss as f64 / 1024.0,
        median.as_millis(),
        max.as_millis()
    );
    ensure!(
        idle_share < 0.05,
        "idle agent used {:.1}% of a core",
        idle_share * 100.0
    );
    Ok(())
}
