//! The operations the randomized model (`model_moto.rs`) did not draw before
//! issue #23, one test per case of its table: names that are links, config
//! reloads that change globs and flows, truncation to a size other than 0,
//! files created and deleted while the reader is blocked by an outage, and a
//! lost state directory. Each runs the real agent binary in raw mode against
//! moto_server behind the fault proxy (which refuses every call for an
//! outage) and compares the stream with what was written, line by line:
//! every line still on disk must be on the stream, a line no longer on disk
//! must be on the stream or in a loss the agent reported, and nothing may be
//! on it twice unless the case says why.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use tailrace_tests::fault_proxy::{FaultProxy, Faults};
use tailrace_tests::loggen::{id_of, numbered_line, numbered_lines};
use tailrace_tests::{create_stream, id_counts, read_stream, run_agent, ChildGuard, Moto};

const AGENT: &str = env!("CARGO_BIN_EXE_tailrace");

mod links;
mod outages;
mod reloads;
mod state;

/// One case: moto_server behind the fault proxy, a stream, a directory
/// with `logs/`, `state/` and the config, and the agent when it runs.
struct Case {
    _moto: Moto,
    kinesis: aws_sdk_kinesis::Client,
    proxy: FaultProxy,
    dir: PathBuf,
    config: PathBuf,
    stream: String,
    agent: Option<ChildGuard>,
    starts: usize,
}

impl Case {
    async fn new(name: &str) -> Result<Case> {
        let moto = Moto::start()?;
        let kinesis = moto.kinesis().await;
        let stream = format!("ops-{name}");
        create_stream(&kinesis, &stream, 1).await?;
        let proxy = FaultProxy::start(&moto.endpoint(), Faults::none())?;
        let dir = std::env::temp_dir().join(format!("tailrace-ops-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("logs"))?;
        Ok(Case {
            _moto: moto,
            kinesis,
            proxy,
            config: dir.join("tailrace.yaml"),
            dir,
            stream,
            agent: None,
            starts: 0,
        })
    }

    fn logs(&self) -> PathBuf {
        self.dir.join("logs")
    }

    /// A flow reading `paths` (globs relative to `logs/`), raw mode, with
    /// more keys in `extra` (each line indented by four spaces).
    fn flow(&self, name: &str, paths: &[&str], extra: &str) -> String {
        let paths: Vec<String> = paths
            .iter()
            .map(|p| format!("\"{}/{p}\"", self.logs().display()))
            .collect();
        format!(
            "  - name: {name}\n    paths: [{}]\n    format: combined\n    stream: {}\n    mode: raw\n    linger: 100ms\n{extra}",
            paths.join(", "),
            self.stream
        )
    }

    /// Write the config with these flows (write, then rename, as config
    /// management does).
    fn configure(&self, flows: &[String]) -> Result<()> {
        let text = format!(
            "state_dir: {}/state\ncheckpoint_interval: 200ms\nshutdown_timeout: 20s\nhost_id: ops\naws:\n  region: us-east-1\n  endpoint_url: {}\nflows:\n{}",
            self.dir.display(),
            self.proxy.endpoint(),
            flows.concat()
        );
        let tmp = self.config.with_extension("tmp");
        fs::write(&tmp, text)?;
        fs::rename(&tmp, &self.config)?;
        Ok(())
    }

    fn log_path(&self, n: usize) -> PathBuf {
        self.dir.join(format!("agent-{n}.log"))
    }

    /// Everything every agent started so far logged.
    fn agent_logs(&self) -> String {
        (1..=self.starts)
            .map(|n| fs::read_to_string(self.log_path(n)).unwrap_or_default())
            .collect()
    }

    fn start(&mut self) -> Result<()> {
        self.starts += 1;
        self.agent = Some(run_agent(
            Path::new(AGENT),
            &self.config,
            &self.log_path(self.starts),
        )?);
        Ok(())
    }

    /// SIGTERM, and a clean exit.
    fn stop(&mut self) -> Result<()> {
        if let Some(mut agent) = self.agent.take() {
            agent.stop(Duration::from_secs(25))?;
        }
        Ok(())
    }

    fn kill(&mut self) -> Result<()> {
        if let Some(mut agent) = self.agent.take() {
            agent.signal("KILL")?;
            agent.wait_timeout(Duration::from_secs(5))?;
        }
        Ok(())
    }

    /// SIGHUP, then wait for the `n`-th "configuration reloaded" (counted
    /// over every agent this case started).
    async fn reload(&self, n: usize) -> Result<()> {
        let agent = self.agent.as_ref().context("the agent runs")?;
        agent.signal("HUP")?;
        self.log_says("configuration reloaded", n).await
    }

    /// Wait until the agents' logs hold `needle` at least `times` times.
    async fn log_says(&self, needle: &str, times: usize) -> Result<()> {
        tailrace_tests::eventually(
            Duration::from_secs(40),
            &format!("`{needle}` in the agent's log"),
            || async { Ok((self.agent_logs().matches(needle).count() >= times).then_some(())) },
        )
        .await
    }

    fn outage(&self, on: bool) {
        self.proxy.set_faults(if on {
            Faults {
                p_5xx: 1.0,
                ..Faults::none()
            }
        } else {
            Faults::none()
        });
    }

    /// How often each line id is on the stream.
    async fn shipped(&self) -> Result<HashMap<usize, usize>> {
        id_counts(&read_stream(&self.kinesis, &self.stream).await?, id_of)
    }

    /// Wait until every id in `want` is on the stream (read once a second:
    /// some cases put megabytes on it); how often each id is there.
    async fn until_shipped(
        &self,
        want: impl IntoIterator<Item = usize>,
    ) -> Result<HashMap<usize, usize>> {
        let want: Vec<usize> = want.into_iter().collect();
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let got = self.shipped().await?;
            let missing: Vec<usize> = want
                .iter()
                .copied()
                .filter(|i| !got.contains_key(i))
                .collect();
            if missing.is_empty() {
                return Ok(got);
            }
            if Instant::now() > deadline {
                bail!(
                    "{} of {} lines never shipped: {}\nagent logs in {}",
                    missing.len(),
                    want.len(),
                    ranges(&missing),
                    self.dir.display()
                );
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// `tailrace status --json`.
    fn status(&self) -> Result<serde_json::Value> {
        let out = tailrace_tests::run_checked(
            std::process::Command::new(AGENT)
                .args(["status", "--json", "--config"])
                .arg(&self.config),
            "tailrace status",
        )?;
        serde_json::from_slice(&out.stdout).context("tailrace status --json prints JSON")
    }
}

impl Drop for Case {
    fn drop(&mut self) {
        self.agent.take();
        if !std::thread::panicking() && std::env::var_os("KEEP").is_none() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// `ids` as `a-b, c, d-e`.
fn ranges(ids: &[usize]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < ids.len() {
        let mut j = i;
        while j + 1 < ids.len() && ids[j + 1] == ids[j] + 1 {
            j += 1;
        }
        out.push(if i == j {
            ids[i].to_string()
        } else {
            format!("{}-{}", ids[i], ids[j])
        });
        i = j + 1;
    }
    out.join(", ")
}

/// Append lines `range` to `path` (created if missing), as Apache does.
fn append(path: &Path, range: std::ops::Range<usize>) -> Result<()> {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    f.write_all(numbered_lines(range).as_bytes())?;
    Ok(())
}

/// Fail if any id is on the stream more than once.
fn no_repeats(got: &HashMap<usize, usize>, dir: &Path) -> Result<()> {
    let mut twice: Vec<usize> = got
        .iter()
        .filter(|(_, &n)| n > 1)
        .map(|(&i, _)| i)
        .collect();
    twice.sort_unstable();
    ensure!(
        twice.is_empty(),
        "{} lines sent twice: {}\nagent logs in {}",
        twice.len(),
        ranges(&twice),
        dir.display()
    );
    Ok(())
}

/// Ids of the complete lines in the plain files under `dir` (recursively).
fn ids_on_disk(dir: &Path) -> Result<Vec<usize>> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in fs::read_dir(&d)?.filter_map(Result::ok) {
            let t = e.file_type()?;
            if t.is_dir() {
                dirs.push(e.path());
            } else if t.is_file() {
                let data = fs::read(e.path())?;
                let end = data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
                out.extend(data[..end].split(|&b| b == b'\n').filter_map(id_of));
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Replace `link` by a symbolic link to `target` (a new link renamed over
/// the old one, as cronolog's `--symlink` does).
fn relink(target: &Path, link: &Path) -> Result<()> {
    let tmp = link.with_extension("tmp-link");
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)?;
    fs::rename(&tmp, link)?;
    Ok(())
}
