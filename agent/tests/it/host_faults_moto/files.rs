//! Faults of the files: deleted before they were read, truncated in place,
//! created while the agent was down, compressed while it was down, in a
//! directory created later, or not readable by the agent.

use super::*;

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

/// The glob names a directory that does not exist when the agent starts.
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
