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
    let a = tailrace_tests::AgentDir::new(
        "outage",
        "auto",
        &format!("http://127.0.0.1:{port}"),
        "    format: combined\n    start_at: beginning\n    stream: outage\n    linger: 100ms\n",
    )?;
    let dir = a.dir.clone();
    let mut agent = a.run(std::path::Path::new(env!("CARGO_BIN_EXE_tailrace")), "1")?;
    let lines: Vec<String> = (0..500)
        .map(|i| {
            tailrace_tests::loggen::tagged_line("outage", i)
                .trim_end()
                .to_string()
        })
        .collect();
    fs::write(&a.log, lines.join("\n") + "\n")?;
    // Nothing listens for a while; then the server is up but the stream is
    // missing. Meanwhile the agent waits without spinning: its CPU time over
    // the outage stays far below one core (an earlier bug spun at ~100%).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = tailrace_tests::cpu_ticks(agent.0.id())?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let used = tailrace_tests::cpu_ticks(agent.0.id())? - before;
    ensure!(
        used < 60,
        "agent used {used} CPU ticks (1/100 s) in 3 s of outage: it loops hot"
    );
    ensure!(
        agent.0.try_wait()?.is_none(),
        "agent exited during the outage"
    );
    let moto = Moto::start_on(port)?;
    let kinesis = moto.kinesis().await;
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
    let status = a.status(std::path::Path::new(env!("CARGO_BIN_EXE_tailrace")))?;
    ensure!(status["agent_running"] == true, "status: {status}");
    let file = &status["files"][0];
    ensure!(
        file["state"] == "ok" && file["lag"] == 0,
        "status: {status}"
    );
    agent.stop(Duration::from_secs(25))?;
    let _ = fs::remove_dir_all(&dir);
    Ok(())
}
