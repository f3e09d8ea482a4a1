//! Raw mode against a real Kinesis emulator (moto_server on 127.0.0.1):
//! lines written while the file is rotated (rename+create, and separately
//! copytruncate), with the agent `kill -9`ed and restarted in between. Every
//! line must arrive at least once, exactly as written; duplicates may only be
//! lines written shortly before the kill (the replay window).

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use tailrace_tests::loggen;
use tailrace_tests::{
    has_every_id, raw_lines, read_stream, until_stream, AgentDir, ChildGuard, Moto,
};

const LINES: usize = 3000;

/// The agent's config for these tests: raw mode, start at the beginning.
fn setup(name: &str, endpoint: &str) -> Result<AgentDir> {
    AgentDir::new(
        &format!("it-{name}"),
        "test-host",
        endpoint,
        &format!("    format: combined\n    start_at: beginning\n    stream: {name}\n    mode: raw\n    linger: 200ms\n"),
    )
}

fn start_agent(s: &AgentDir, tag: &str) -> Result<ChildGuard> {
    s.run(Path::new(env!("CARGO_BIN_EXE_tailrace")), tag)
}

/// 25/Nov/2026 13:00:00 UTC, the hour the lines fall in.
const HOUR: i64 = 1_795_611_600;

/// A combined-format line with a unique, searchable request path (and
/// quotes in it, which raw mode must ship as they are).
fn line(i: usize) -> String {
    loggen::combined_line(
        &format!("10.1.{}.{}", i % 250, i % 199),
        HOUR + ((i / 60) % 60 * 60 + i % 60) as i64,
        &format!("/item/{i:06}?q=\\\"x\\\""),
        200,
        100 + i as u64,
        "bench/1.0",
    )
}

fn id_of(line: &[u8]) -> Option<usize> {
    loggen::item_id(line, 6)
}

#[derive(Clone, Copy)]
enum Rotation {
    Rename,
    CopyTruncate,
}

fn rotate(log: &Path, how: Rotation) -> Result<()> {
    let dir = log.parent().context("log dir")?;
    let one = dir.join("access.log.1");
    let two = dir.join("access.log.2");
    match how {
        Rotation::Rename => {
            if one.exists() {
                fs::rename(&one, &two)?;
            }
            fs::rename(log, &one)?;
            fs::File::create(log)?;
        }
        Rotation::CopyTruncate => {
            if one.exists() {
                fs::rename(&one, &two)?;
            }
            fs::copy(log, &one)?;
            OpenOptions::new().write(true).open(log)?.set_len(0)?;
        }
    }
    Ok(())
}

async fn scenario(name: &str, how: Rotation) -> Result<()> {
    let (moto, kinesis) = Moto::with_stream(name, 2).await?;
    let s = setup(name, &moto.endpoint())?;

    let mut agent = start_agent(&s, "1")?;
    let started = Instant::now();
    let mut written_at: Vec<Instant> = Vec::with_capacity(LINES);
    let mut file = OpenOptions::new().create(true).append(true).open(&s.log)?;
    let mut killed_at = None;
    for i in 0..LINES {
        if i == 1000 || i == 2000 {
            rotate(&s.log, how)?;
            file = OpenOptions::new().create(true).append(true).open(&s.log)?;
        }
        if i == 1500 {
            // Crash hard, mid-stream, between two rotations.
            agent.signal("KILL")?;
            agent.wait_timeout(Duration::from_secs(5))?;
            killed_at = Some(Instant::now());
        }
        if i == 1700 {
            agent = start_agent(&s, "2")?;
        }
        // With rename rotation Apache writes to the old file until signalled:
        // the writer here keeps its descriptor for a moment after the rename.
        file.write_all(line(i).as_bytes())?;
        written_at.push(Instant::now());
        if i % 50 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    drop(file);

    // Wait until every line is on the stream.
    let records = until_stream(
        &kinesis,
        name,
        Duration::from_secs(60),
        "all lines",
        |records| Ok(has_every_id(&records, LINES, id_of).then_some(records)),
    )
    .await;
    agent.signal("TERM")?;
    let status = agent.wait_timeout(Duration::from_secs(25))?;
    let records = records.with_context(|| format!("agent logs in {}", s.dir.display()))?;
    ensure!(status.success(), "agent exited with {status} after SIGTERM");

    // Every line arrived exactly as written; count duplicates.
    let mut count: HashMap<usize, usize> = HashMap::new();
    for r in &records {
        for l in tailrace_wire::raw::lines(&r.data) {
            let i = id_of(l).with_context(|| {
                format!("unexpected line on stream: {}", String::from_utf8_lossy(l))
            })?;
            let expected = line(i);
            ensure!(
                l == expected.trim_end_matches('\n').as_bytes(),
                "line {i} altered: {}",
                String::from_utf8_lossy(l)
            );
            *count.entry(i).or_default() += 1;
        }
    }
    ensure!(
        count.len() == LINES,
        "{} of {LINES} lines arrived",
        count.len()
    );
    let killed_at = killed_at.context("kill happened")?;
    // Checkpoints are written every 200 ms and records linger 200 ms: a line
    // can only be re-sent if it was written within a few seconds of the kill.
    let window = Duration::from_secs(3);
    let mut duplicates = 0;
    for (&i, &n) in &count {
        if n > 1 {
            duplicates += n - 1;
            let age = killed_at.saturating_duration_since(written_at[i]);
            ensure!(
                written_at[i] <= killed_at && age <= window,
                "line {i} duplicated but written {age:?} before the kill (outside the replay window)"
            );
        }
    }
    eprintln!(
        "{name}: {LINES} lines, {} records, {duplicates} duplicates, {:?}",
        records.len(),
        started.elapsed()
    );
    let _ = fs::remove_dir_all(&s.dir);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_rotation_and_kill9_lose_nothing() -> Result<()> {
    scenario("rename", Rotation::Rename).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copytruncate_and_kill9_lose_nothing() -> Result<()> {
    scenario("copytruncate", Rotation::CopyTruncate).await
}

/// logrotate writes a `copytruncate` copy in chunks: the agent may find the
/// copy half-written, and before the original is truncated. It must neither
/// ship a fragment of a line nor re-send what it already read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_copytruncate_copy_sends_each_line_once() -> Result<()> {
    let name = "slowcopy";
    let (moto, kinesis) = Moto::with_stream(name, 1).await?;
    let s = setup(name, &moto.endpoint())?;
    let mut agent = start_agent(&s, "1")?;
    let first: String = (0..100).map(line).collect();
    fs::write(&s.log, &first)?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // The copy, in two chunks with a pause; the cut is mid-line.
    let copy = s.log.with_extension("log.1");
    let cut = first.len() / 3 + 7;
    fs::write(&copy, &first.as_bytes()[..cut])?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    OpenOptions::new()
        .append(true)
        .open(&copy)?
        .write_all(&first.as_bytes()[cut..])?;
    OpenOptions::new().write(true).open(&s.log)?.set_len(0)?;
    let second: String = (100..150).map(line).collect();
    OpenOptions::new()
        .append(true)
        .open(&s.log)?
        .write_all(second.as_bytes())?;

    let records = until_stream(
        &kinesis,
        name,
        Duration::from_secs(30),
        "150 lines",
        |records| Ok((raw_lines(&records).count() >= 150).then_some(records)),
    )
    .await?;
    // Give a wrong re-send time to show up.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let records = read_stream(&kinesis, name).await.map(|r| {
        if r.len() >= records.len() {
            r
        } else {
            records
        }
    })?;
    agent.stop(Duration::from_secs(25))?;
    let mut seen = vec![0usize; 150];
    for r in &records {
        for l in tailrace_wire::raw::lines(&r.data) {
            let i = id_of(l).with_context(|| {
                format!("fragment on the stream: {}", String::from_utf8_lossy(l))
            })?;
            ensure!(
                l == line(i).trim_end_matches('\n').as_bytes(),
                "line {i} altered"
            );
            seen[i] += 1;
        }
    }
    ensure!(
        seen.iter().all(|&n| n == 1),
        "each line exactly once, got counts {seen:?}"
    );
    let _ = fs::remove_dir_all(&s.dir);
    Ok(())
}

/// A file rotated to a name the glob does not match while the agent was down
/// is found next to its old path and drained from its checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_rotated_while_agent_down_is_drained() -> Result<()> {
    let name = "rotated-down";
    let (moto, kinesis) = Moto::with_stream(name, 1).await?;
    let s = setup(name, &moto.endpoint())?;
    // Only the live file matches: rotated copies are out of the glob.
    let text = fs::read_to_string(&s.config)?.replace("access.log*", "access.log");
    fs::write(&s.config, text)?;
    let mut agent = start_agent(&s, "1")?;
    fs::write(&s.log, (0..100).map(line).collect::<String>())?;
    until_stream(
        &kinesis,
        name,
        Duration::from_secs(20),
        "first lines acknowledged and checkpointed",
        |records| Ok((raw_lines(&records).count() >= 100).then_some(())),
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(600)).await;
    agent.signal("KILL")?;
    agent.wait_timeout(Duration::from_secs(5))?;
    // While it is down: more lines, a rotation out of the glob, a new file.
    OpenOptions::new()
        .append(true)
        .open(&s.log)?
        .write_all((100..150).map(line).collect::<String>().as_bytes())?;
    fs::rename(&s.log, s.log.with_extension("log.1"))?;
    fs::write(&s.log, (150..200).map(line).collect::<String>())?;
    let mut agent = start_agent(&s, "2")?;
    let records = until_stream(
        &kinesis,
        name,
        Duration::from_secs(30),
        "all 200 lines",
        |records| Ok(has_every_id(&records, 200, id_of).then_some(records)),
    )
    .await?;
    agent.stop(Duration::from_secs(25))?;
    let total = raw_lines(&records).count();
    ensure!(
        total == 200,
        "each line once expected after a clean checkpoint, got {total}"
    );
    let _ = fs::remove_dir_all(&s.dir);
    Ok(())
}
