//! SIGHUP reloads the configuration without downtime, against moto_server on
//! 127.0.0.1 and the real binary. While lines are written all the time, the
//! test removes a flow (whose lines sit in a long linger: they must be
//! flushed, not lost), changes a flow twice (it restarts from where it
//! stood), adds a flow, leaves one alone, and sends an invalid config (which
//! is rejected while everything keeps running). Every line written must be
//! on the stream exactly once.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use tailrace_tests::loggen;
use tailrace_tests::{eventually, read_stream, run_agent, Moto};

const STREAM: &str = "reload";

/// Lines `from..to` of `flow`, appended to `log`.
fn append(log: &Path, flow: &str, from: usize, to: usize) -> Result<()> {
    loggen::append(log, &loggen::tagged_lines(flow, from..to))
}

fn flow(dir: &Path, name: &str, extra: &str) -> String {
    format!(
        "  - name: {name}\n    paths: [\"{}/logs/{name}.log\"]\n    format: combined\n    start_at: beginning\n    stream: {STREAM}\n{extra}",
        dir.display()
    )
}

fn write_config(path: &Path, dir: &Path, endpoint: &str, flows: &[String]) -> Result<()> {
    let text = format!(
        "state_dir: {}/state\ncheckpoint_interval: 200ms\nshutdown_timeout: 20s\nhost_id: reload-host\naws:\n  region: us-east-1\n  endpoint_url: {endpoint}\nflows:\n{}",
        dir.display(),
        flows.concat()
    );
    // Write-then-rename, as config management tools do.
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, text)?;
    fs::rename(&tmp, path)?;
    Ok(())
}

/// Per flow, how many times each line number is on the stream.
async fn on_stream(
    kinesis: &aws_sdk_kinesis::Client,
) -> Result<HashMap<String, HashMap<usize, usize>>> {
    let mut out: HashMap<String, HashMap<usize, usize>> = HashMap::new();
    for r in read_stream(kinesis, STREAM).await? {
        for l in tailrace_wire::raw::lines(&r.data) {
            let s = String::from_utf8_lossy(l);
            let req = s.split('"').nth(1).context("request")?;
            let path = req.split(' ').nth(1).context("path")?;
            let (flow, n) = path[1..].split_once('/').context("flow/n")?;
            *out.entry(flow.to_string())
                .or_default()
                .entry(n.parse()?)
                .or_default() += 1;
        }
    }
    Ok(out)
}

async fn log_has(log: &Path, needle: &str, times: usize) -> Result<String> {
    eventually(
        Duration::from_secs(40),
        &format!("`{needle}` in the agent's log"),
        || async {
            let text = fs::read_to_string(log)?;
            Ok((text.matches(needle).count() >= times).then_some(text))
        },
    )
    .await
}

fn hup(pid: u32) -> Result<()> {
    let ok = std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()?
        .success();
    ensure!(ok, "kill -HUP failed");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_adds_removes_and_changes_flows_without_losing_or_repeating_lines() -> Result<()> {
    let (moto, kinesis) = Moto::with_stream(STREAM, 2).await?;
    let dir: PathBuf = std::env::temp_dir().join(format!("tailrace-reload-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("logs"))?;
    let config = dir.join("tailrace.yaml");
    let log = dir.join("agent.log");
    let fast = "    linger: 100ms\n";
    let a_random = flow(&dir, "a", fast);
    let a_fixed = flow(&dir, "a", &format!("{fast}    partition_key: a-key\n"));
    let b = flow(&dir, "b", "    linger: 60s\n");
    let c = flow(&dir, "c", fast);
    let d = flow(&dir, "d", fast);
    write_config(
        &config,
        &dir,
        &moto.endpoint(),
        &[a_random.clone(), b.clone(), d.clone()],
    )?;
    let mut agent = run_agent(Path::new(env!("CARGO_BIN_EXE_tailrace")), &config, &log)?;
    let pid = agent.0.id();

    // Flows a and d get lines all the time.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let logs = dir.join("logs");
        std::thread::spawn(move || -> Result<usize> {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                append(&logs.join("a.log"), "a", n, n + 5)?;
                append(&logs.join("d.log"), "d", n, n + 5)?;
                n += 5;
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(n)
        })
    };
    // b's lines wait in its 60 s linger; c's file exists before c does.
    append(&dir.join("logs/b.log"), "b", 0, 100)?;
    append(&dir.join("logs/c.log"), "c", 0, 100)?;
    eventually(
        Duration::from_secs(30),
        "a's and d's lines flowing",
        || async {
            let got = on_stream(&kinesis).await?;
            Ok((got.contains_key("a") && got.contains_key("d")).then_some(()))
        },
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    ensure!(
        !on_stream(&kinesis).await?.contains_key("b"),
        "b's lines should still be lingering"
    );

    // Reload 1: b removed, a changed, c added, d untouched.
    write_config(
        &config,
        &dir,
        &moto.endpoint(),
        &[a_fixed.clone(), c.clone(), d.clone()],
    )?;
    hup(pid)?;
    let text = log_has(&log, "configuration reloaded", 1).await?;
    let summary = text
        .lines()
        .find(|l| l.contains("configuration reloaded"))
        .unwrap_or_default();
    for want in [
        "started=[\"c\"]",
        "stopped=[\"b\"]",
        "restarted=[\"a\"]",
        "unchanged=[\"d\"]",
    ] {
        ensure!(summary.contains(want), "{want} in: {summary}");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Reload 2: an invalid config is rejected; everything keeps running.
    let broken = a_fixed.replace("format: combined", "format: \"%h %Z\"");
    write_config(
        &config,
        &dir,
        &moto.endpoint(),
        &[broken, c.clone(), d.clone()],
    )?;
    hup(pid)?;
    let text = log_has(&log, "configuration reload rejected", 1).await?;
    ensure!(
        text.contains("flows[0].format"),
        "the reason is logged:\n{text}"
    );
    ensure!(
        agent.0.try_wait()?.is_none(),
        "agent exited on an invalid config"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Reload 3: a changed back, under load again.
    write_config(&config, &dir, &moto.endpoint(), &[a_random, c, d])?;
    hup(pid)?;
    log_has(&log, "configuration reloaded", 2).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;

    stop.store(true, Ordering::Relaxed);
    let written = writer
        .join()
        .map_err(|_| anyhow::anyhow!("writer panicked"))??;
    let want: HashMap<&str, usize> =
        [("a", written), ("b", 100), ("c", 100), ("d", written)].into();
    let got = eventually(
        Duration::from_secs(60),
        "every line on the stream",
        || async {
            let got = on_stream(&kinesis).await?;
            for (flow, lines) in &got {
                if let Some((n, c)) = lines.iter().find(|(_, &c)| c > 1) {
                    bail!("flow {flow}: line {n} is on the stream {c} times");
                }
            }
            let complete = want
                .iter()
                .all(|(f, &n)| got.get(*f).map_or(0, HashMap::len) == n);
            Ok(complete.then_some(got))
        },
    )
    .await?;
    for (flow, &n) in &want {
        let lines = &got[*flow];
        ensure!(
            (0..n).all(|i| lines.get(&i) == Some(&1)),
            "flow {flow}: lines missing"
        );
    }
    agent.stop(Duration::from_secs(25))?;
    if std::env::var_os("KEEP").is_none() {
        let _ = fs::remove_dir_all(&dir);
    }
    Ok(())
}
