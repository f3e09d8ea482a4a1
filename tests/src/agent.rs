//! Binaries under test as processes. An agent: its throw-away directory and
//! config ([`AgentDir`]), starting it with its log in a file
//! ([`spawn_logged`]), stopping it the way an operator would
//! ([`ChildGuard::stop`]), and reading what it says about itself (`tailrace
//! status`, the checkpoint file). Any binary: killed when the test lets go
//! of it ([`ChildGuard`]), run to its end ([`run_checked`]) or with its
//! output read while it runs ([`Piped`]). One copy of each, for every test
//! that runs a binary.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

/// A throw-away agent installation under the temp dir: `logs/`, `state/`
/// and `tailrace.yaml` with one flow `web` reading `logs/<paths>`
/// (`logs/access.log*` with [`AgentDir::new`]). Checkpoints every 200 ms;
/// host id, endpoint and the flow's other keys (format, stream, mode, …)
/// come from the test.
pub struct AgentDir {
    /// The directory (removed and recreated by [`AgentDir::new`]).
    pub dir: PathBuf,
    /// The config file.
    pub config: PathBuf,
    /// `logs/access.log` (not created).
    pub log: PathBuf,
}

impl AgentDir {
    /// `name` must be unique per test; `flow` holds the flow's keys after
    /// `paths`, each line indented by four spaces and ending in a newline.
    pub fn new(name: &str, host_id: &str, endpoint: &str, flow: &str) -> Result<AgentDir> {
        AgentDir::with_paths(name, host_id, endpoint, "access.log*", flow)
    }

    /// [`AgentDir::new`] with the flow's glob `paths`, relative to `logs/`.
    pub fn with_paths(
        name: &str,
        host_id: &str,
        endpoint: &str,
        paths: &str,
        flow: &str,
    ) -> Result<AgentDir> {
        let dir = std::env::temp_dir().join(format!("tailrace-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("logs"))?;
        let config = dir.join("tailrace.yaml");
        std::fs::write(
            &config,
            format!(
                "state_dir: {state}\ncheckpoint_interval: 200ms\nshutdown_timeout: 20s\nhost_id: {host_id}\naws:\n  region: us-east-1\n  endpoint_url: {endpoint}\nflows:\n  - name: web\n    paths: [\"{logs}/{paths}\"]\n{flow}",
                state = dir.join("state").display(),
                logs = dir.join("logs").display(),
            ),
        )?;
        Ok(AgentDir {
            log: dir.join("logs/access.log"),
            dir,
            config,
        })
    }

    /// `logs/`, where the flow's files are.
    pub fn logs(&self) -> PathBuf {
        self.dir.join("logs")
    }

    /// `state/`, the agent's state directory.
    pub fn state(&self) -> PathBuf {
        self.dir.join("state")
    }

    /// Where the agent started with `tag` logs: `agent-<tag>.log`.
    pub fn log_path(&self, tag: &str) -> PathBuf {
        self.dir.join(format!("agent-{tag}.log"))
    }

    /// What the agent started with `tag` logged so far (empty if nothing).
    pub fn agent_log(&self, tag: &str) -> String {
        std::fs::read_to_string(self.log_path(tag)).unwrap_or_default()
    }

    /// `bin run --config <config>` with dummy credentials, not yet started:
    /// for a test that adds to its environment before [`spawn_logged`].
    pub fn command(&self, bin: &Path) -> Command {
        let mut cmd = Command::new(bin);
        cmd.args(["run", "--config"])
            .arg(&self.config)
            .envs(crate::child_env());
        cmd
    }

    /// Start the agent binary `bin` on this config; its log goes to
    /// `agent-<tag>.log` in the directory.
    pub fn run(&self, bin: &Path, tag: &str) -> Result<ChildGuard> {
        spawn_logged(&mut self.command(bin), &self.log_path(tag))
    }

    /// Fail, with the agent's log, if the agent started with `tag` has exited.
    pub fn still_running(&self, agent: &mut ChildGuard, tag: &str) -> Result<()> {
        if let Some(status) = agent.0.try_wait()? {
            bail!(
                "agent exited ({status}); its log ({}):\n{}",
                self.log_path(tag).display(),
                self.agent_log(tag)
            );
        }
        Ok(())
    }

    /// `bin status --json` on this config, parsed.
    pub fn status(&self, bin: &Path) -> Result<serde_json::Value> {
        let out = run_checked(
            Command::new(bin)
                .args(["status", "--json", "--config"])
                .arg(&self.config),
            "tailrace status",
        )?;
        serde_json::from_slice(&out.stdout).context("tailrace status --json prints JSON")
    }

    /// The checkpoint file (`state/checkpoints.json`) as JSON, if the agent
    /// wrote one that parses.
    pub fn checkpoints(&self) -> Option<serde_json::Value> {
        let text = std::fs::read_to_string(self.state().join("checkpoints.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// The offsets of the checkpoint's files, in the file's order (empty
    /// without a checkpoint).
    pub fn checkpoint_offsets(&self) -> Vec<u64> {
        let Some(v) = self.checkpoints() else {
            return Vec::new();
        };
        v["files"]
            .as_array()
            .map(|files| files.iter().filter_map(|f| f["offset"].as_u64()).collect())
            .unwrap_or_default()
    }
}

/// Start `cmd` with stdin and stdout closed and stderr written to `log`.
pub fn spawn_logged(cmd: &mut Command, log: &Path) -> Result<ChildGuard> {
    let stderr =
        std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .with_context(|| format!("starting {:?}", cmd.get_program()))?;
    Ok(ChildGuard(child))
}

/// Start `tailrace run --config CONFIG` (the binary at `bin`) with dummy
/// credentials, its log (stderr) written to `log`.
pub fn run_agent(bin: &Path, config: &Path, log: &Path) -> Result<ChildGuard> {
    spawn_logged(
        Command::new(bin)
            .args(["run", "--config"])
            .arg(config)
            .envs(crate::child_env()),
        log,
    )
}

/// Run `cmd` to its end with stdin closed; its output if it exited 0, else
/// an error naming `what` with everything it printed.
pub fn run_checked(cmd: &mut Command, what: &str) -> Result<Output> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {what}"))?;
    ensure!(
        out.status.success(),
        "{what} failed with {}: {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out)
}

/// A running child whose stdout and stderr two threads read to their ends
/// (so a chatty child never blocks on a full pipe).
pub struct Piped {
    /// The child, killed if the [`Piped`] is dropped before it exits.
    pub child: ChildGuard,
    stdout: std::thread::JoinHandle<Vec<u8>>,
    stderr: std::thread::JoinHandle<Vec<u8>>,
}

impl Piped {
    /// Start `cmd` with stdin closed and both outputs piped.
    pub fn spawn(cmd: &mut Command) -> Result<Piped> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {:?}", cmd.get_program()))?;
        let read = |pipe: Option<Box<dyn std::io::Read + Send>>| {
            std::thread::spawn(move || {
                let mut out = Vec::new();
                if let Some(mut pipe) = pipe {
                    let _ = pipe.read_to_end(&mut out);
                }
                out
            })
        };
        let stdout = read(child.stdout.take().map(|p| Box::new(p) as _));
        let stderr = read(child.stderr.take().map(|p| Box::new(p) as _));
        Ok(Piped {
            child: ChildGuard(child),
            stdout,
            stderr,
        })
    }

    /// Wait up to `timeout` for the exit (else an error, and the child is
    /// killed): its status and everything it printed.
    pub fn wait(mut self, timeout: Duration) -> Result<Output> {
        let status = self.child.wait_timeout(timeout)?;
        Ok(Output {
            status,
            stdout: self.stdout.join().unwrap_or_default(),
            stderr: self.stderr.join().unwrap_or_default(),
        })
    }
}

/// A child process killed (SIGKILL) when dropped, for binaries under test.
pub struct ChildGuard(pub Child);

impl ChildGuard {
    /// Send a signal by name or number (`TERM`, `KILL`, `15`) via `kill(1)`.
    pub fn signal(&self, signal: &str) -> Result<()> {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.0.id().to_string()])
            .status()?;
        if !status.success() {
            bail!("kill -{signal} {} failed", self.0.id());
        }
        Ok(())
    }

    /// Wait for exit up to `timeout`; returns the exit status or an error on timeout.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.0.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("process {} did not exit within {timeout:?}", self.0.id());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stop it as an operator would: SIGTERM, then it must exit 0 within
    /// `timeout`. How long it took.
    pub fn stop(&mut self, timeout: Duration) -> Result<Duration> {
        let t = Instant::now();
        self.signal("TERM")?;
        let status = self
            .wait_timeout(timeout)
            .context("waiting for the exit after SIGTERM")?;
        ensure!(status.success(), "exited with {status} after SIGTERM");
        Ok(t.elapsed())
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
