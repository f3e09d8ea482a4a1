//! Kinesis unreachable, then back: the agent keeps its lines in the file
//! while the endpoint refuses connections (and, once it answers, while the
//! stream does not exist yet), and ships every line when it can. It never
//! exits on these transient faults.

use std::fs;
use std::time::Duration;

use anyhow::{ensure, Result};
use tailrace_tests::{create_stream, free_port, read_stream, Moto};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_written_during_an_outage_arrive_afterwards() -> Result<()> {
    let port = free_port()?;
    let dir = std::env::temp_dir().join(format!("tailrace-outage-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("logs"))?;
    let config = dir.join("tailrace.yaml");
    fs::write(
        &config,
        format!(
            "state_dir: {state}\ncheckpoint_interval: 200ms\naws:\n  region: us-east-1\n  endpoint_url: http://127.0.0.1:{port}\nflows:\n  - name: web\n    paths: [\"{logs}/*.log\"]\n    format: combined\n    start_at: beginning\n    stream: outage\n    linger: 100ms\n",
            state = dir.join("state").display(),
            logs = dir.join("logs").display(),
        ),
    )?;
    let mut agent = tailrace_tests::run_agent(
        std::path::Path::new(env!("CARGO_BIN_EXE_tailrace")),
        &config,
        &dir.join("agent.log"),
    )?;
    let lines: Vec<String> = (0..500)
        .map(|i| format!("192.0.2.{} - - [25/Nov/2026:10:00:00 +0000] \"GET /outage/{i} HTTP/1.1\" 200 5 \"-\" \"t\"", i % 200))
        .collect();
    fs::write(dir.join("logs/a.log"), lines.join("\n") + "\n")?;
    // Nothing listens for a while; then the server is up but the stream is
    // missing. Meanwhile the agent waits without spinning: its CPU time over
    // the outage stays far below one core (an earlier bug spun at ~100%).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = cpu_ticks(agent.0.id())?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let used = cpu_ticks(agent.0.id())? - before;
    ensure!(
        used < 60,
        "agent used {used} CPU ticks (1/100 s) in 3 s of outage: it loops hot"
    );
    ensure!(
        agent.0.try_wait()?.is_none(),
        "agent exited during the outage"
    );
    let moto = Moto::start_on(port)?;
    let kinesis = aws_sdk_kinesis::Client::new(&moto.sdk_config().await);
    tokio::time::sleep(Duration::from_secs(2)).await;
    create_stream(&kinesis, "outage", 1).await?;
    let got = tailrace_tests::eventually(
        Duration::from_secs(45),
        "every line after the outage",
        || {
            let kinesis = kinesis.clone();
            async move {
                let records = read_stream(&kinesis, "outage").await?;
                let mut got: Vec<String> = records
                    .iter()
                    .flat_map(|r| {
                        tailrace_wire::raw::lines(&r.data)
                            .map(|l| String::from_utf8_lossy(l).into_owned())
                            .collect::<Vec<_>>()
                    })
                    .collect();
                got.sort();
                Ok((got.len() >= 500).then_some(got))
            }
        },
    )
    .await?;
    let mut want = lines.clone();
    want.sort();
    ensure!(
        got == want,
        "lines on the stream differ from the file ({} vs {})",
        got.len(),
        want.len()
    );
    // `tailrace status` sees the running agent and nothing left to send.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tailrace"))
        .args(["status", "--json", "--config"])
        .arg(&config)
        .output()?;
    ensure!(
        out.status.success(),
        "status failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    ensure!(status["agent_running"] == true, "status: {status}");
    let file = &status["files"][0];
    ensure!(
        file["state"] == "ok" && file["lag"] == 0,
        "status: {status}"
    );
    agent.signal("TERM")?;
    ensure!(
        agent.wait_timeout(Duration::from_secs(25))?.success(),
        "agent did not stop cleanly"
    );
    let _ = fs::remove_dir_all(&dir);
    Ok(())
}

/// User + system CPU time of a process, in clock ticks (1/100 s).
fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which is in parentheses).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| -> Result<u64> {
        Ok(fields
            .get(i)
            .ok_or_else(|| anyhow::anyhow!("short /proc stat"))?
            .parse()?)
    };
    // utime and stime are fields 14 and 15 of stat, i.e. 11 and 12 after ')'.
    Ok(field(11)? + field(12)?)
}
