//! Config reloads that change globs and flows: a wider glob after a
//! `copytruncate`, a flow removed and added back, a flow renamed under load.

use super::*;

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
