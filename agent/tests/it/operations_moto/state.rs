//! Crashes and the state directory: a rotation shipped before a crash, a
//! deleted state directory, and what `check --live` says.

use super::*;

/// A rotation read to its end and closed (its plain file deleted by the
/// compressor), then a crash, and the compressed copy's modification time
/// set while the agent was down (a compressor that stamps its output when
/// it finishes, a copy tool): newer than the checkpoint, it is still a file
/// the flow shipped (issue #11 noted it was read again after a crash: only
/// the checkpoint's own files were known).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_shipped_before_a_crash_is_not_read_again() -> Result<()> {
    let mut c = Case::new("shippedgz").await?;
    c.configure(&[c.flow("web", &["access.log"], "    start_at: beginning\n")])?;
    let live = c.logs().join("access.log");
    append(&live, 0..300)?;
    c.start()?;
    c.until_shipped(0..300).await?;
    let rotated = c.logs().join("access.log.1");
    fs::rename(&live, &rotated)?;
    append(&live, 300..320)?;
    c.until_shipped(300..320).await?;
    // `compress`: a new file (its modification time now), the plain one
    // deleted; the reading of it closes once drained and quiet.
    let data = fs::read(&rotated)?;
    let gz_path = c.logs().join("access.log.1.gz");
    let mut gz =
        flate2::write::GzEncoder::new(File::create(&gz_path)?, flate2::Compression::fast());
    gz.write_all(&data)?;
    gz.finish()?.sync_all()?;
    fs::remove_file(&rotated)?;
    c.log_says("closed rotated file", 1).await?;
    tokio::time::sleep(Duration::from_millis(800)).await;
    c.kill()?;
    tokio::time::sleep(Duration::from_millis(50)).await;
    OpenOptions::new()
        .write(true)
        .open(&gz_path)?
        .set_modified(std::time::SystemTime::now())?;
    c.start()?;
    append(&live, 320..330)?;
    let got = c.until_shipped(0..330).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    no_repeats(&c.shipped().await?, &c.dir)?;
    ensure!(got.len() == 330);
    c.stop()
}

/// The state directory deleted while the agent runs, then a crash and a
/// restart: it recreated the directory and wrote its positions again, so
/// the restart resumes from them (with `start_at: end`, no checkpoint
/// would mean skipping what was written while it was down).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_state_directory_heals() -> Result<()> {
    let mut c = Case::new("statedir").await?;
    c.configure(&[c.flow("web", &["access.log"], "    start_at: end\n")])?;
    let live = c.logs().join("access.log");
    File::create(&live)?;
    c.start()?;
    c.log_says("reading file", 1).await?;
    append(&live, 0..1000)?;
    c.until_shipped(0..1000).await?;
    let state = c.dir.join("state");
    fs::remove_dir_all(&state)?;
    append(&live, 1000..1600)?;
    c.until_shipped(1000..1600).await?;
    tailrace_tests::eventually(
        Duration::from_secs(10),
        "the checkpoint written again",
        || async { Ok(state.join("checkpoints.json").exists().then_some(())) },
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(600)).await;
    c.kill()?;
    append(&live, 1600..1800)?;
    c.start()?;
    let got = c.until_shipped(0..1800).await?;
    ensure!(got.len() == 1800);
    let logs = c.agent_logs();
    ensure!(
        !logs.contains("a restart would re-send them"),
        "the old, wrong advice:\n{logs}"
    );
    c.stop()
}

/// `tailrace check --live`: credentials and streams, readable files, which
/// file each flow would read from where, and overlaps; non-zero when a
/// stream is missing or a file cannot be read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_live_says_what_would_stop_shipping() -> Result<()> {
    let c = Case::new("checklive").await?;
    let logs = c.logs();
    append(&logs.join("access.log"), 0..10)?;
    fs::hard_link(logs.join("access.log"), logs.join("access.log.link"))?;
    append(&logs.join("other.log"), 0..3)?;
    let flows = |stream: &str| {
        vec![
            c.flow("web", &["access.log*"], "    start_at: beginning\n"),
            c.flow("copy", &["access.log"], "    start_at: end\n")
                .replace(&c.stream, stream),
            c.flow("other", &["other.log"], "    start_at: beginning\n"),
        ]
    };
    let run = || -> Result<(i32, String)> {
        let out = std::process::Command::new(AGENT)
            .args(["check", "--live", "--config"])
            .arg(&c.config)
            .envs(tailrace_tests::child_env())
            .output()?;
        Ok((
            out.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        ))
    };
    c.configure(&flows(&c.stream))?;
    let (code, text) = run()?;
    ensure!(code == 0, "exit {code}:\n{text}");
    let size = fs::metadata(logs.join("access.log"))?.len();
    for want in [
        "access.log: from 0 (new file)".to_string(),
        format!("access.log: from {size} (start_at: end)"),
        "access.log.link".to_string(),
        "same file".to_string(),
        "web and copy".to_string(),
    ] {
        ensure!(text.contains(&want), "`{want}` in:\n{text}");
    }
    c.configure(&flows("no-such-stream"))?;
    let (code, text) = run()?;
    ensure!(code != 0, "a missing stream passes:\n{text}");
    ensure!(text.contains("no-such-stream"), "{text}");
    Ok(())
}
