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

/// A file deleted while the agent still had most of it to read (Kinesis was
/// unreachable, so reading had stopped at the queue budget): the agent keeps
/// it open and ships all of it once Kinesis is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_deleted_before_it_was_read_is_still_shipped_whole() -> Result<()> {
    let port = free_port()?;
    let s = Setup::new(
        "deleted",
        &format!("http://127.0.0.1:{port}"),
        "deleted",
        "*.log",
        "    mode: raw\n",
    )?;
    let mut agent = s.run("1")?;
    // ~9 MB: three times what the agent queues while it cannot send.
    let reqs = requests(
        &format!("deleted/{}", "x".repeat(200)),
        30_000,
        loggen::now(),
    );
    let log = s.logs.join("a.log");
    append(&log, &text(&reqs))?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    fs::remove_file(&log)?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    s.still_running(&mut agent, "1")?;
    let moto = Moto::start_on(port)?;
    let kinesis = moto.kinesis().await;
    create_stream(&kinesis, "deleted", 2).await?;
    expect_lines(&kinesis, "deleted", &reqs, true).await?;
    eventually(
        Duration::from_secs(20),
        "the deleted file closed after draining",
        || async {
            Ok(s.agent_log("1")
                .contains("closed rotated file")
                .then_some(()))
        },
    )
    .await?;
    stop(agent)
}

/// `> access.log` (truncation in place, no copy anywhere): what was read
/// before is not sent again, and what is written after is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_truncated_in_place_goes_on_from_its_start() -> Result<()> {
    let (moto, kinesis) = Moto::with_stream("truncated", 1).await?;
    let s = Setup::new(
        "truncated",
        &moto.endpoint(),
        "truncated",
        "*.log",
        "    mode: raw\n",
    )?;
    let mut agent = s.run("1")?;
    let log = s.logs.join("a.log");
    let before = requests("before", 1000, loggen::now());
    append(&log, &text(&before))?;
    expect_lines(&kinesis, "truncated", &before, true).await?;
    OpenOptions::new().write(true).open(&log)?.set_len(0)?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = requests("after", 500, loggen::now());
    append(&log, &text(&after))?;
    let all: Vec<Request> = before.into_iter().chain(after).collect();
    expect_lines(&kinesis, "truncated", &all, true).await?;
    s.still_running(&mut agent, "1")?;
    stop(agent)
}

/// With `start_at: end` (the default), a rename rotation while the agent is
/// stopped: the old file is drained from its checkpoint, and the new file,
/// which has no checkpoint, is read from its beginning — `start_at` is for
/// the first start only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_created_while_the_agent_was_down_is_read_whole() -> Result<()> {
    let (moto, kinesis) = Moto::with_stream("down", 1).await?;
    let s = Setup::new(
        "down",
        &moto.endpoint(),
        "down",
        "access.log*",
        "    mode: raw\n    start_at: end\n",
    )?;
    let log = s.logs.join("access.log");
    fs::File::create(&log)?;
    let agent = s.run("1")?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let first = requests("first", 100, loggen::now());
    append(&log, &text(&first))?;
    expect_lines(&kinesis, "down", &first, true).await?;
    stop(agent)?;
    // Apache goes on writing to the renamed file until it reopens its logs.
    fs::rename(&log, s.logs.join("access.log.1"))?;
    let late = requests("late", 50, loggen::now());
    append(&s.logs.join("access.log.1"), &text(&late))?;
    let fresh = requests("fresh", 100, loggen::now());
    append(&log, &text(&fresh))?;
    let mut agent = s.run("2")?;
    let all: Vec<Request> = first.into_iter().chain(late).chain(fresh).collect();
    expect_lines(&kinesis, "down", &all, true).await?;
    s.still_running(&mut agent, "2")?;
    stop(agent)
}

/// The glob names a directory that does not exist when the agent starts.
/// `gzip -c src > dst`, then remove `src`: what logrotate's `compress` does.
fn compress(src: &Path, dst: &Path) -> Result<()> {
    let out = fs::File::create(dst)?;
    let status = Command::new("gzip")
        .arg("-c")
        .arg(src)
        .stdout(out)
        .status()
        .context("running gzip")?;
    ensure!(status.success(), "gzip {} failed", src.display());
    fs::remove_file(src)?;
    Ok(())
}

/// How logrotate moves `access.log` to `access.log.1` in these tests.
#[derive(Clone, Copy)]
enum Rotate {
    /// `create`: rename, then a new file.
    Rename,
    /// `copytruncate`: copy, then truncate the original in place.
    CopyTruncate,
}

impl Rotate {
    fn apply(self, log: &Path) -> Result<()> {
        let to = log.with_extension("log.1");
        match self {
            Rotate::Rename => fs::rename(log, to)?,
            Rotate::CopyTruncate => {
                fs::copy(log, to)?;
                OpenOptions::new().write(true).open(log)?.set_len(0)?;
            }
        }
        Ok(())
    }
}

/// The agent is stopped with 50 lines it has not sent; two rotations
/// (logrotate's `compress` + `delaycompress`) pass before it starts again,
/// so those lines exist only in `access.log.2.gz`. It finds that file by
/// its decompressed first bytes and sends them, once; once that is
/// acknowledged, a third start sends nothing again.
async fn unsent_lines_compressed_while_down(name: &str, how: Rotate) -> Result<()> {
    let (moto, kinesis) = Moto::with_stream(name, 1).await?;
    let s = Setup::new(
        name,
        &moto.endpoint(),
        name,
        "access.log*",
        "    mode: raw\n",
    )?;
    let log = s.logs.join("access.log");
    let first = requests("first", 100, loggen::now());
    append(&log, &text(&first))?;
    let agent = s.run("1")?;
    expect_lines(&kinesis, name, &first, true).await?;
    stop(agent)?;
    let unsent = requests("unsent", 50, loggen::now());
    append(&log, &text(&unsent))?;
    how.apply(&log)?;
    let mid = requests("mid", 30, loggen::now());
    append(&log, &text(&mid))?;
    compress(
        &s.logs.join("access.log.1"),
        &s.logs.join("access.log.2.gz"),
    )?;
    how.apply(&log)?;
    let last = requests("last", 20, loggen::now());
    append(&log, &text(&last))?;

    let mut agent = s.run("2")?;
    let all: Vec<Request> = [first, unsent, mid, last].concat();
    expect_lines(&kinesis, name, &all, true)
        .await
        .with_context(|| s.agent_log("2"))?;
    s.still_running(&mut agent, "2")?;
    let said = s.agent_log("2");
    ensure!(
        said.contains("from its compressed copy"),
        "the agent did not say it read the .gz:\n{said}"
    );
    stop(agent)?;
    let agent = s.run("3")?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop(agent)?;
    let again = lines_on(&kinesis, name).await?;
    let dups: usize = again.values().map(|n| n - 1).sum();
    ensure!(dups == 0, "{dups} lines sent again by the third start");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsent_lines_compressed_by_rename_rotations_while_down_are_sent() -> Result<()> {
    unsent_lines_compressed_while_down("gzrename", Rotate::Rename).await
}

/// With `copytruncate` the original keeps its inode but holds other bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsent_lines_compressed_by_copytruncate_rotations_while_down_are_sent() -> Result<()> {
    unsent_lines_compressed_while_down("gzcopy", Rotate::CopyTruncate).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_created_later_is_picked_up() -> Result<()> {
    let (moto, kinesis) = Moto::with_stream("later", 1).await?;
    let s = Setup::new(
        "later",
        &moto.endpoint(),
        "later",
        "sites/*/access.log",
        "    mode: raw\n",
    )?;
    let mut agent = s.run("1")?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    s.still_running(&mut agent, "1")?;
    let site = s.logs.join("sites/shop");
    fs::create_dir_all(&site)?;
    let reqs = requests("later", 300, loggen::now());
    append(&site.join("access.log"), &text(&reqs))?;
    expect_lines(&kinesis, "later", &reqs, true).await?;
    stop(agent)
}

/// A file the agent may not open: one clear log line naming it, the other
/// files go on, and once it becomes readable it is read from its start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_it_may_not_read_is_reported_and_others_go_on() -> Result<()> {
    if !is_root() {
        eprintln!("skipped: needs root to run the agent as nobody (chmod does not stop root)");
        return Ok(());
    }
    let (moto, kinesis) = Moto::with_stream("perm", 1).await?;
    let s = Setup::new("perm", &moto.endpoint(), "perm", "*.log", "    mode: raw\n")?;
    let open = requests("open", 200, loggen::now());
    let closed = requests("closed", 200, loggen::now());
    append(&s.logs.join("open.log"), &text(&open))?;
    let secret = s.logs.join("closed.log");
    append(&secret, &text(&closed))?;
    fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o000))?;
    let chown = Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(&s.dir)
        .status()?;
    ensure!(chown.success(), "chown failed");
    fs::set_permissions(&s.dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    // The test directory's parents must be searchable by nobody.
    let mut agent = s.run_as("1", Some(()))?;
    expect_lines(&kinesis, "perm", &open, true).await?;
    s.still_running(&mut agent, "1")?;
    let log = s.agent_log("1");
    let complaints = log
        .lines()
        .filter(|l| l.contains("cannot open log file") && l.contains("closed.log"))
        .count();
    ensure!(
        complaints == 1,
        "one clear complaint about closed.log expected, got {complaints}:\n{log}"
    );
    ensure!(
        log.contains("Permission denied"),
        "the reason is named:\n{log}"
    );
    fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    let all: Vec<Request> = open.into_iter().chain(closed).collect();
    expect_lines(&kinesis, "perm", &all, true).await?;
    stop(agent)
}

/// A tmpfs mounted over a directory for the life of the value.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Result<Tmpfs> {
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()?
            .success();
        ensure!(ok, "mounting a tmpfs on {}", at.display());
        Ok(Tmpfs(at.to_path_buf()))
    }

    /// Remount with `opts`; a few tries, since `ro` fails while a save has
    /// its temp file open.
    fn remount(&self, opts: &str) -> Result<()> {
        for _ in 0..20 {
            let ok = Command::new("mount")
                .args(["-o", &format!("remount,{opts}")])
                .arg(&self.0)
                .stderr(Stdio::null())
                .status()?
                .success();
            if ok {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("remounting {} {opts}", self.0.display())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// The checkpoint's offset for the single file, read from disk.
fn checkpoint_offset(state: &Path) -> Result<u64> {
    let text =
        fs::read_to_string(state.join("checkpoints.json")).context("reading the checkpoint")?;
    let v: serde_json::Value =
        serde_json::from_str(&text).context("the checkpoint is valid JSON")?;
    v["files"][0]["offset"]
        .as_u64()
        .context("an offset in the checkpoint")
}

/// The state directory fills up, then becomes read-only, then recovers:
/// lines keep flowing, the error is logged once per episode, the checkpoint
/// on disk stays the last good one, and writing resumes by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_or_read_only_state_directory_never_corrupts_the_checkpoint() -> Result<()> {
    if !is_root() {
        eprintln!("skipped: needs root to mount a tmpfs as the state directory");
        return Ok(());
    }
    let (moto, kinesis) = Moto::with_stream("state", 1).await?;
    let s = Setup::new(
        "state",
        &moto.endpoint(),
        "state",
        "*.log",
        "    mode: raw\n",
    )?;
    let fs_ = Tmpfs::mount(&s.state, "256k")?;
    let log = s.logs.join("a.log");
    let mut agent = s.run("1")?;
    let first = requests("first", 100, loggen::now());
    append(&log, &text(&first))?;
    expect_lines(&kinesis, "state", &first, true).await?;
    let size = |p: &Path| fs::metadata(p).map(|m| m.len());
    eventually(Duration::from_secs(10), "the first checkpoint", || async {
        Ok((checkpoint_offset(&s.state).ok() == Some(size(&log)?)).then_some(()))
    })
    .await?;

    // Full: fill the tmpfs to the last byte.
    let mut filler = fs::File::create(s.state.join("filler"))?;
    let block = vec![0u8; 4096];
    while filler.write_all(&block).is_ok() {}
    let _ = filler.write_all(&block[..1]);
    drop(filler);
    let good = checkpoint_offset(&s.state)?;
    let second = requests("second", 100, loggen::now());
    append(&log, &text(&second))?;
    let mut want: Vec<Request> = first.into_iter().chain(second).collect();
    expect_lines(&kinesis, "state", &want, true).await?;
    eventually(
        Duration::from_secs(10),
        "the checkpoint error in the log",
        || async {
            Ok(s.agent_log("1")
                .contains("cannot write checkpoint")
                .then_some(()))
        },
    )
    .await?;
    ensure!(
        checkpoint_offset(&s.state)? == good,
        "the checkpoint on disk is the last good one"
    );

    // Read-only. (Still full: freeing the room first left a moment in
    // which a retried checkpoint could land before the remount.)
    fs_.remount("ro")?;
    let third = requests("third", 100, loggen::now());
    append(&log, &text(&third))?;
    want.extend(third);
    expect_lines(&kinesis, "state", &want, true).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    ensure!(
        checkpoint_offset(&s.state)? == good,
        "the checkpoint on disk is still the last good one"
    );
    s.still_running(&mut agent, "1")?;

    // Writable, with room again: the checkpoint catches up without a restart.
    fs_.remount("rw")?;
    fs::remove_file(s.state.join("filler"))?;
    eventually(
        Duration::from_secs(10),
        "the checkpoint to cover every line",
        || async { Ok((checkpoint_offset(&s.state)? == size(&log)?).then_some(())) },
    )
    .await?;
    let agent_log = s.agent_log("1");
    let errors = agent_log
        .lines()
        .filter(|l| l.contains("cannot write checkpoint"))
        .count();
    ensure!(
        errors <= 2,
        "the checkpoint error is logged once per episode, not per attempt ({errors}):\n{agent_log}"
    );
    ensure!(
        agent_log.contains("checkpoint written again"),
        "recovery is logged:\n{agent_log}"
    );
    // A restart sends nothing again: the checkpoint is exact.
    agent.signal("KILL")?;
    agent.wait_timeout(Duration::from_secs(5))?;
    let mut agent = s.run("2")?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    expect_lines(&kinesis, "state", &want, true).await?;
    s.still_running(&mut agent, "2")?;
    stop(agent)
}

/// A torn checkpoint at start: the agent resumes from the previous version
/// (sending a few lines again, losing none); with both torn it still starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_checkpoint_falls_back_and_never_crash_loops() -> Result<()> {
    let (moto, kinesis) = Moto::with_stream("torn", 1).await?;
    let s = Setup::new("torn", &moto.endpoint(), "torn", "*.log", "    mode: raw\n")?;
    let log = s.logs.join("a.log");
    let agent = s.run("1")?;
    let first = requests("first", 300, loggen::now());
    append(&log, &text(&first))?;
    expect_lines(&kinesis, "torn", &first, true).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let second = requests("second", 100, loggen::now());
    append(&log, &text(&second))?;
    let mut want: Vec<Request> = first.into_iter().chain(second).collect();
    expect_lines(&kinesis, "torn", &want, true).await?;
    stop(agent)?;
    let ckpt = s.state.join("checkpoints.json");
    let body = fs::read(&ckpt)?;
    fs::write(&ckpt, &body[..body.len() / 2])?;
    let while_down = requests("down", 100, loggen::now());
    append(&log, &text(&while_down))?;
    want.extend(while_down);
    let mut agent = s.run("2")?;
    let seen = expect_lines(&kinesis, "torn", &want, false).await?;
    s.still_running(&mut agent, "2")?;
    let dups: usize = seen.values().map(|n| n - 1).sum();
    ensure!(
        dups <= 100,
        "at most the lines after the previous checkpoint are sent again: {dups}"
    );
    let log2 = s.agent_log("2");
    ensure!(
        log2.contains("moved aside") && log2.contains("previous checkpoint"),
        "the fallback is logged:\n{log2}"
    );
    stop(agent)?;

    // Both versions torn: the agent starts anyway and says what it did.
    fs::write(&ckpt, b"{\"version\":")?;
    fs::write(s.state.join("checkpoints.json.prev"), b"\0\0")?;
    let mut agent = s.run("3")?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    s.still_running(&mut agent, "3")?;
    ensure!(
        s.agent_log("3").contains("starting without checkpoints"),
        "{}",
        s.agent_log("3")
    );
    stop(agent)
}

/// Requests and rejects per window over every partial on the stream.
async fn partial_totals(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
) -> Result<(u64, u64, usize)> {
    let (mut requests, mut rejected, mut late) = (0, 0, 0);
    for r in read_stream(kinesis, stream).await? {
        let p = Partial::decode(&r.data).context("decoding a partial")?;
        requests += p.total().requests;
        rejected += p.rejected_lines;
        late += usize::from(p.late);
    }
    Ok((requests, rejected, late))
}

/// Wait until the agent's clock is `offset` seconds off the real one, as
/// the time it writes into its status file shows, plus a moment for its
/// reader to tick.
async fn agent_clock_is(state: &Path, offset: i64) -> Result<()> {
    eventually(
        Duration::from_secs(20),
        "the agent's clock to step",
        || async move {
            let Ok(text) = fs::read_to_string(state.join("status.json")) else {
                return Ok(None);
            };
            let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            let written = v["written_ms"].as_i64().unwrap_or(0) / 1000;
            Ok(((written - loggen::now() - offset).abs() < 30).then_some(()))
        },
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok(())
}

/// The host's clock steps two hours forward and back again while lines keep
/// coming (stamped by that clock, as Apache would): every request is counted
/// once, the lines after the step back land in late partials of their
/// windows, and only lines stamped far ahead of the clock are rejected.
/// The agent runs under libfaketime, whose offset file the test rewrites.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clock_steps_forward_and_back_count_every_request_once() -> Result<()> {
    const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
    ensure!(
        Path::new(LIBFAKETIME).exists(),
        "{LIBFAKETIME} is missing: apt-get install faketime"
    );
    let (moto, kinesis) = Moto::with_stream("clock", 1).await?;
    let s = Setup::new(
        "clock",
        &moto.endpoint(),
        "clock",
        "*.log",
        "    mode: aggregate\n    window: 1m\n    allowed_lateness: 2s\n",
    )?;
    let offset_file = s.dir.join("faketime");
    fs::write(&offset_file, "+0")?;
    let child = Command::new(AGENT)
        .args(["run", "--config"])
        .arg(&s.config)
        .envs(tailrace_tests::child_env())
        .env("LD_PRELOAD", LIBFAKETIME)
        .env("FAKETIME_TIMESTAMP_FILE", &offset_file)
        .env("FAKETIME_CACHE_DURATION", "1")
        // A step of the system clock moves CLOCK_REALTIME only.
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(s.log_path("1"))?)
        .spawn()?;
    let mut agent = ChildGuard(child);
    let log = s.logs.join("a.log");
    let now = loggen::now();
    append(&log, &text(&requests("a", 300, now)))?;
    // A line from a broken clock, a year ahead: a reject, not a watermark.
    append(&log, &text(&requests("bogus", 5, now + 365 * 86_400)))?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    fs::write(&offset_file, "+7200")?;
    agent_clock_is(&s.state, 7200).await?;
    append(&log, &text(&requests("b", 300, loggen::now() + 7200)))?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    fs::write(&offset_file, "+0")?;
    agent_clock_is(&s.state, 0).await?;
    // Stamped like the first lines: `loggen::now()` here could fall in the
    // next one-minute window (the steps take 8 s or more), which no line
    // had opened, so it would not be late, and the test failed whenever it
    // began in a minute's last seconds.
    append(&log, &text(&requests("c", 300, now)))?;
    s.still_running(&mut agent, "1")?;
    // Stopping flushes every open window.
    stop(agent)?;
    let (requests, rejected, late) = partial_totals(&kinesis, "clock").await?;
    ensure!(
        (requests, rejected) == (900, 5),
        "requests {requests} (want 900), rejected {rejected} (want 5)\n{}",
        s.agent_log("1")
    );
    ensure!(
        late > 0,
        "the lines after the step back went to late partials"
    );
    Ok(())
}
