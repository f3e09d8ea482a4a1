//! Faults of the state directory: full or read-only (a small tmpfs), and a
//! torn checkpoint.

use super::*;

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
