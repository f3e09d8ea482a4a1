//! Faults of the host, not of Kinesis: files deleted before they were read,
//! truncated in place, directories that appear later, a file the agent may
//! not read, rotations compressed while the agent was down, a state
//! directory that is full or read-only, a torn checkpoint,
//! and the system clock stepping forward and back during aggregation. Each
//! runs the real agent binary against moto_server on 127.0.0.1 and compares
//! what reached the stream with what was written: nothing lost, nothing
//! duplicated unless the scenario is a crash, and the agent never exits.
//!
//! The state-directory tests mount a small tmpfs, and the permission test
//! runs the agent as `nobody` (root reads every file): both need root, which
//! CI has; elsewhere they say so and pass without running.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use tailrace_tests::loggen::{self, append, Request};
use tailrace_tests::{
    create_stream, eventually, free_port, read_stream, spawn_logged, AgentDir, ChildGuard, Moto,
};
use tailrace_wire::Partial;

const AGENT: &str = env!("CARGO_BIN_EXE_tailrace");

mod clock;
mod files;
mod state_dir;

/// A test directory with `logs/`, `state/` and a one-flow config
/// ([`AgentDir`], which it derefs to), removed when dropped.
struct Setup {
    agent: AgentDir,
    logs: PathBuf,
    state: PathBuf,
}

impl Setup {
    /// `paths` is the flow's glob relative to `logs/`; `flow` holds further
    /// flow keys, each line indented by four spaces.
    fn new(name: &str, endpoint: &str, stream: &str, paths: &str, flow: &str) -> Result<Setup> {
        let agent = AgentDir::with_paths(
            &format!("host-{name}"),
            "test-host",
            endpoint,
            paths,
            &format!(
                "    format: '{format}'\n    stream: {stream}\n    linger: 100ms\n{start_at}{flow}",
                start_at = if flow.contains("start_at:") {
                    ""
                } else {
                    "    start_at: beginning\n"
                },
                format = loggen::FORMAT,
            ),
        )?;
        fs::create_dir_all(agent.state())?;
        Ok(Setup {
            logs: agent.logs(),
            state: agent.state(),
            agent,
        })
    }

    /// Start the agent; its stderr goes to `agent-<tag>.log`.
    fn run(&self, tag: &str) -> Result<ChildGuard> {
        self.run_as(tag, None)
    }

    /// Start the agent, as `nobody` when `unprivileged` (through setpriv).
    fn run_as(&self, tag: &str, unprivileged: Option<()>) -> Result<ChildGuard> {
        let mut cmd = match unprivileged {
            Some(()) => {
                let mut c = Command::new("setpriv");
                c.args(["--reuid=65534", "--regid=65534", "--clear-groups", AGENT])
                    .args(["run", "--config"])
                    .arg(&self.config)
                    .envs(tailrace_tests::child_env());
                c
            }
            None => self.agent.command(Path::new(AGENT)),
        };
        spawn_logged(cmd.env("HOME", &self.dir), &self.log_path(tag))
    }
}

impl std::ops::Deref for Setup {
    type Target = AgentDir;

    fn deref(&self) -> &AgentDir {
        &self.agent
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Requests with unique paths `/{tag}/{i}`, stamped `time`.
fn requests(tag: &str, n: usize, time: i64) -> Vec<Request> {
    (0..n)
        .map(|i| Request {
            client: format!("10.0.{}.{}", i % 7, i % 250),
            time,
            path: format!("/{tag}/{i}"),
            status: 200,
            bytes: 100 + i as u64,
            micros: 1000,
        })
        .collect()
}

fn text(reqs: &[Request]) -> String {
    reqs.iter().map(Request::line).collect()
}

/// The raw lines on `stream`, each with how often it arrived.
async fn lines_on(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
) -> Result<HashMap<String, usize>> {
    let mut seen = HashMap::new();
    for r in read_stream(kinesis, stream).await? {
        for l in tailrace_wire::raw::lines(&r.data) {
            *seen
                .entry(String::from_utf8_lossy(l).into_owned())
                .or_insert(0) += 1;
        }
    }
    Ok(seen)
}

/// Wait until every line of `want` is on the stream; then require that no
/// other line is, and (with `exact`) that none arrived twice.
async fn expect_lines(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    want: &[Request],
    exact: bool,
) -> Result<HashMap<String, usize>> {
    let want: Vec<String> = want
        .iter()
        .map(|r| r.line().trim_end().to_string())
        .collect();
    let seen = eventually(Duration::from_secs(60), "every line on the stream", || {
        let want = &want;
        async move {
            let seen = lines_on(kinesis, stream).await?;
            Ok(want.iter().all(|l| seen.contains_key(l)).then_some(seen))
        }
    })
    .await
    .map_err(|e| e.context(format!("{} lines expected on {stream}", want.len())))?;
    let extra = seen.keys().filter(|l| !want.contains(l)).count();
    ensure!(
        extra == 0,
        "{extra} lines on the stream that were never written"
    );
    if exact {
        let dups: usize = seen.values().map(|n| n - 1).sum();
        ensure!(dups == 0, "{dups} duplicate lines");
    }
    Ok(seen)
}

/// SIGTERM: the agent must exit 0 within 25 s.
fn stop(mut agent: ChildGuard) -> Result<()> {
    agent.stop(Duration::from_secs(25))?;
    Ok(())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.trim_ascii() == b"0")
        .unwrap_or(false)
}
