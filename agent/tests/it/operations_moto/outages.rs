//! What happens to files while the reader is blocked by an outage:
//! truncation to any size, generations created and deleted before it could
//! look, and the losses it could not avoid, reported.

use super::*;

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
