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

/// cronolog writes `logs/%Y/%m/%d/access.log` and points `logs/access.log`
/// at today's file; the glob is the link. The agent is stopped across
/// midnight: the lines written to yesterday's file after the stop are
/// only there, in a directory nothing names any more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlink_switched_to_another_directory_while_stopped_loses_nothing() -> Result<()> {
    let mut c = Case::new("cronolog").await?;
    c.configure(&[c.flow("web", &["access.log"], "    start_at: beginning\n")])?;
    let day1 = c.logs().join("2026/12/01");
    let day2 = c.logs().join("2026/12/02");
    fs::create_dir_all(&day1)?;
    fs::create_dir_all(&day2)?;
    let link = c.logs().join("access.log");
    append(&day1.join("access.log"), 0..500)?;
    relink(&day1.join("access.log"), &link)?;
    c.start()?;
    c.until_shipped(0..500).await?;
    c.stop()?;
    append(&day1.join("access.log"), 500..800)?;
    append(&day2.join("access.log"), 800..850)?;
    relink(&day2.join("access.log"), &link)?;
    append(&day2.join("access.log"), 850..1000)?;
    c.start()?;
    let got = c.until_shipped(0..1000).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    no_repeats(&c.shipped().await?, &c.dir)?;
    ensure!(got.len() == 1000, "{} ids on the stream", got.len());
    c.stop()
}

/// `rotatelogs -L` (a hard link) and cronolog's `--symlink` (a symbolic
/// one) beside the dated files, with a glob matching both names: one inode,
/// two names, read once, and the reading does not flip between the names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_names_for_one_file_are_read_once() -> Result<()> {
    let mut c = Case::new("links").await?;
    let hard = c.logs().join("hard");
    let soft = c.logs().join("soft");
    fs::create_dir_all(&hard)?;
    fs::create_dir_all(&soft)?;
    c.configure(&[
        c.flow("hard", &["hard/access_log*"], "    start_at: beginning\n"),
        c.flow("soft", &["soft/access.log*"], "    start_at: beginning\n"),
    ])?;
    let (hard1, hard2) = (
        hard.join("access_log.20261201"),
        hard.join("access_log.20261202"),
    );
    let (soft1, soft2) = (
        soft.join("access.log.20261201"),
        soft.join("access.log.20261202"),
    );
    append(&hard1, 0..1000)?;
    fs::hard_link(&hard1, hard.join("access_log"))?;
    append(&soft1, 10_000..11_000)?;
    relink(&soft1, &soft.join("access.log"))?;
    c.start()?;
    c.until_shipped((0..1000).chain(10_000..11_000)).await?;
    // A few discoveries with both names in place.
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The switch: a new dated file, the link moved to it.
    append(&hard2, 1000..1100)?;
    fs::remove_file(hard.join("access_log"))?;
    fs::hard_link(&hard2, hard.join("access_log"))?;
    append(&hard.join("access_log"), 1100..1200)?;
    append(&soft2, 11_000..11_100)?;
    relink(&soft2, &soft.join("access.log"))?;
    append(&soft.join("access.log"), 11_100..11_200)?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The old files go later (cron).
    fs::remove_file(&hard1)?;
    fs::remove_file(&soft1)?;
    c.until_shipped((0..1200).chain(10_000..11_200)).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    no_repeats(&c.shipped().await?, &c.dir)?;
    let renames = c.agent_logs().matches("file renamed").count();
    ensure!(
        renames <= 2,
        "{renames} `file renamed` lines: discovery flips between the names of one file"
    );
    c.stop()
}

/// A `copytruncate` with an exact glob (its copy is read as the copy of
/// the reading it was made from), then a reload that widens the glob so
/// the copy now matches: it was read already.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_widens_the_glob_after_a_copytruncate_sends_nothing_twice() -> Result<()> {
    let mut c = Case::new("widen").await?;
    c.configure(&[c.flow("web", &["access.log"], "    start_at: beginning\n")])?;
    let live = c.logs().join("access.log");
    append(&live, 0..1000)?;
    c.start()?;
    c.until_shipped(0..1000).await?;
    fs::copy(&live, c.logs().join("access.log.1"))?;
    OpenOptions::new().write(true).open(&live)?.set_len(0)?;
    c.log_says("reading the copy of a file truncated", 1)
        .await?;
    // The copy's reading closes once drained and quiet (5 s).
    c.log_says("closed rotated file", 1).await?;
    append(&live, 1000..1300)?;
    c.until_shipped(1000..1300).await?;
    c.configure(&[c.flow("web", &["access.log*"], "    start_at: beginning\n")])?;
    c.reload(1).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    // And the same across a restart.
    c.stop()?;
    c.start()?;
    append(&live, 1300..1400)?;
    let got = c.until_shipped(0..1400).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    no_repeats(&c.shipped().await?, &c.dir)?;
    ensure!(got.len() == 1400);
    c.stop()
}

/// A flow removed by a reload while its file keeps growing, then added
/// back: it resumes where it stood (OPERATIONS.md's promise), though
/// `start_at: end` is its setting and the agent restarted in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_removed_and_added_back_resumes_where_it_stood() -> Result<()> {
    let mut c = Case::new("readd").await?;
    let web = c.flow("web", &["access.log"], "    start_at: end\n");
    let other = c.flow("other", &["other.log"], "    start_at: end\n");
    let live = c.logs().join("access.log");
    File::create(&live)?;
    c.configure(&[web.clone(), other.clone()])?;
    c.start()?;
    c.log_says("reading file", 1).await?;
    append(&live, 0..1200)?;
    c.until_shipped(0..1200).await?;
    c.configure(std::slice::from_ref(&other))?;
    c.reload(1).await?;
    append(&live, 1200..1500)?;
    // Across a restart too.
    c.stop()?;
    c.start()?;
    append(&live, 1500..1700)?;
    // SIGHUP before the agent installed its handler would end it.
    c.log_says("tailrace starting", 2).await?;
    c.configure(&[web, other])?;
    c.reload(2).await?;
    let got = c.until_shipped(0..1700).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    no_repeats(&c.shipped().await?, &c.dir)?;
    ensure!(got.len() == 1700);
    c.stop()
}

/// A flow renamed by a reload while 2,000 lines a second are written: the
/// new name resumes from the old one's acknowledged positions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_renamed_under_load_loses_nothing() -> Result<()> {
    let mut c = Case::new("rename").await?;
    let live = c.logs().join("access.log");
    File::create(&live)?;
    c.configure(&[c.flow("web", &["access.log"], "    start_at: end\n")])?;
    c.start()?;
    c.log_says("reading file", 1).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let live = live.clone();
        std::thread::spawn(move || -> Result<usize> {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                append(&live, n..n + 20)?;
                n += 20;
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(n)
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    c.configure(&[c.flow("web-renamed", &["access.log"], "    start_at: end\n")])?;
    c.reload(1).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let written = writer
        .join()
        .map_err(|_| anyhow::anyhow!("writer panicked"))??;
    let got = c.until_shipped(0..written).await?;
    no_repeats(&got, &c.dir)?;
    c.stop()
}

/// `truncate -s N` with N > 0 while the reader is blocked by an outage,
/// then the file grows past where the reader stood: the first bytes still
/// match, only the bytes before the read position can tell.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncation_to_any_size_during_an_outage_is_seen() -> Result<()> {
    let mut c = Case::new("truncate").await?;
    c.configure(&[c.flow("web", &["access.log"], "    start_at: beginning\n")])?;
    let live = c.logs().join("access.log");
    append(&live, 0..1000)?;
    c.start()?;
    c.until_shipped(0..1000).await?;
    c.outage(true);
    // More than the queue (3 MiB) and a record: the reader blocks.
    append(&live, 1000..61_000)?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Cut a few bytes into line 20,000 (before its id), then write on.
    let text = fs::read(&live)?;
    let at = text
        .split_inclusive(|&b| b == b'\n')
        .take(20_000)
        .map(<[u8]>::len)
        .sum::<usize>()
        + 5;
    OpenOptions::new()
        .write(true)
        .open(&live)?
        .set_len(at as u64)?;
    append(&live, 61_000..91_000)?;
    c.outage(false);
    let on_disk = ids_on_disk(&c.logs())?;
    ensure!(on_disk.len() == 50_000, "{} ids on disk", on_disk.len());
    c.until_shipped(on_disk).await?;
    ensure!(
        c.agent_logs().contains("file truncated"),
        "the truncation is logged"
    );
    c.stop()
}

/// Rotations that delete the file they rotate away (`rotate 0`, or the
/// reader far behind `rotate N`), while the reader is blocked by an
/// outage: generations created and deleted before it could look.
/// `generations` of `lines` lines each, `pause` apart.
async fn rotate_zero_during_an_outage(
    name: &str,
    generations: usize,
    lines: usize,
    pause: Duration,
) -> Result<(Case, usize, HashMap<usize, usize>)> {
    let mut c = Case::new(name).await?;
    c.configure(&[c.flow("web", &["access.log"], "    start_at: beginning\n")])?;
    let live = c.logs().join("access.log");
    append(&live, 0..100)?;
    c.start()?;
    c.until_shipped(0..100).await?;
    c.outage(true);
    // Enough to block the reader (more than the queue and a record).
    append(&live, 100..40_100)?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut next = 40_100;
    for _ in 0..generations {
        // logrotate: rename, then `rotate 0` deletes; Apache reopens and
        // writes, request by request.
        let old = c.logs().join("access.log.1");
        fs::rename(&live, &old)?;
        fs::remove_file(&old)?;
        let half = lines / 2;
        append(&live, next..next + half)?;
        std::thread::sleep(pause / 2);
        append(&live, next + half..next + lines)?;
        next += lines;
        std::thread::sleep(pause / 2);
    }
    c.outage(false);
    // Whatever is on disk, at least, is shipped.
    c.until_shipped(ids_on_disk(&c.logs())?).await?;
    let settle = Instant::now();
    let mut got = c.shipped().await?;
    while settle.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = c.shipped().await?;
        if now.len() == got.len() {
            break;
        }
        got = now;
    }
    Ok((c, next, got))
}

/// `rotate 0`, one rotation every 300 ms during an outage: every line,
/// though most of the files were gone before the reader could look.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_deleted_while_the_reader_is_blocked_are_still_read() -> Result<()> {
    let (mut c, written, got) =
        rotate_zero_during_an_outage("rotate0", 12, 300, Duration::from_millis(300)).await?;
    let missing: Vec<usize> = (0..written).filter(|i| !got.contains_key(i)).collect();
    ensure!(
        missing.is_empty(),
        "{} lines lost: {}",
        missing.len(),
        ranges(&missing)
    );
    no_repeats(&got, &c.dir)?;
    c.stop()
}

/// More generations created and deleted during one outage than the reader
/// keeps descriptors for: the ones it could not keep are lost, and the
/// agent says so: a warning naming each file and its bytes, `BytesLost`,
/// and `tailrace status`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loss_it_could_not_avoid_is_reported() -> Result<()> {
    let (mut c, written, got) =
        rotate_zero_during_an_outage("lossreport", 90, 6, Duration::from_millis(60)).await?;
    let missing: Vec<usize> = (0..written).filter(|i| !got.contains_key(i)).collect();
    ensure!(
        !missing.is_empty(),
        "nothing lost: the case did not outrun the descriptors kept"
    );
    let logs = c.agent_logs();
    let warnings: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("lost") && l.contains("deleted before"))
        .collect();
    ensure!(
        !warnings.is_empty(),
        "no warning for {} lost lines",
        missing.len()
    );
    let reported: u64 = warnings
        .iter()
        .filter_map(|l| l.split("bytes=").nth(1))
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    // What is reported was lost (the files reported were never read), and
    // most of what was lost is reported (a file is looked at again when
    // written to, not at every write).
    let lost: u64 = missing.iter().map(|&i| numbered_line(i).len() as u64).sum();
    eprintln!(
        "{written} lines written, {} lost ({lost} bytes), {reported} bytes reported lost in {} warnings",
        missing.len(),
        warnings.len()
    );
    ensure!(
        reported <= lost && reported * 2 >= lost,
        "{} lines ({lost} bytes) lost, {reported} bytes reported:\n{}",
        missing.len(),
        warnings.join("\n")
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let status = c.status()?;
    let in_status = status["flows"][0]["bytes_lost"].as_u64().unwrap_or(0);
    ensure!(
        in_status == reported,
        "status says {in_status} bytes lost, the log {reported}: {status}"
    );
    c.stop()
}

/// Time-named files (`rotatelogs`, glob `access_log.*`) created while the
/// reader is blocked by an outage, and deleted by cron before it could
/// look at them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_named_files_deleted_during_an_outage_are_still_read() -> Result<()> {
    let mut c = Case::new("timenamed").await?;
    c.configure(&[c.flow("web", &["access_log.*"], "    start_at: beginning\n")])?;
    let logs = c.logs();
    let name = |g: usize| logs.join(format!("access_log.{:010}", 1_796_108_400 + g * 60));
    append(&name(0), 0..100)?;
    c.start()?;
    c.until_shipped(0..100).await?;
    c.outage(true);
    append(&name(0), 100..40_100)?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut next = 40_100;
    let mut kept: Vec<PathBuf> = vec![name(0)];
    for g in 1..=12 {
        let path = name(g);
        append(&path, next..next + 150)?;
        std::thread::sleep(Duration::from_millis(150));
        append(&path, next + 150..next + 300)?;
        next += 300;
        kept.push(path);
        // cron keeps the two newest.
        while kept.len() > 2 {
            fs::remove_file(kept.remove(0))?;
        }
        std::thread::sleep(Duration::from_millis(150));
    }
    c.outage(false);
    let got = c.until_shipped(0..next).await?;
    no_repeats(&got, &c.dir)?;
    c.stop()
}

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
    // The files are checked for the user running the test: without
    // --user, a root run checks for `tailrace` when that user exists (it
    // does once the package tests installed the .deb).
    let me = std::process::Command::new("id").arg("-un").output()?;
    let me = String::from_utf8_lossy(&me.stdout).trim().to_string();
    let run = || -> Result<(i32, String)> {
        let out = std::process::Command::new(AGENT)
            .args(["check", "--live", "--user", &me, "--config"])
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
