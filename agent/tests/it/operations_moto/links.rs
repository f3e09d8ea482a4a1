//! Names that are links: a symbolic link moved to another directory while
//! the agent was stopped, and two names (a hard link) for one file.

use super::*;

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
