//! The agent under Kinesis throttling and errors: the agent talks to
//! moto_server through [`tailrace_tests::fault_proxy`], which refuses single
//! records of `PutRecords` calls (`ProvisionedThroughputExceededException`,
//! `InternalFailure`), answers 500/503, stalls calls and drops connections.
//! moto never fails single records, so this is what exercises the shipper's
//! retry path. Nothing may be lost, the agent must keep running, must not
//! spin, and must stop cleanly on SIGTERM once the faults stop.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use tailrace_tests::fault_proxy::{FaultCounts, FaultProxy, Faults};
use tailrace_tests::loggen::{item_id, now, Request, FORMAT};
use tailrace_tests::{id_counts, read_stream, until_stream, AgentDir, ChildGuard, Moto};
use tailrace_wire::{classify, ClientKey, ClientStats, Partial, RecordKind};

const LINES: usize = 3000;

/// The faults of both tests.
fn faults(seed: u64) -> Faults {
    Faults {
        p_record: 0.3,
        p_5xx: 0.1,
        p_stall: 0.03,
        stall_for: Duration::from_secs(4),
        p_drop: 0.03,
        seed,
    }
}

/// Write the config; `flow` holds the mode-specific flow keys.
fn setup(name: &str, endpoint: &str, flow: &str) -> Result<AgentDir> {
    AgentDir::new(
        &format!("faults-{name}"),
        "test-host",
        endpoint,
        &format!("    format: '{FORMAT}'\n    start_at: beginning\n    stream: {name}\n{flow}"),
    )
}

/// The agent; its log is `agent-1.log` in the directory.
fn start_agent(a: &AgentDir) -> Result<ChildGuard> {
    a.run(Path::new(env!("CARGO_BIN_EXE_tailrace")), "1")
}

/// CPU time, in clock ticks, of a process's threads named `prefix*`
/// (`tokio-rt-worker`: where the shipper runs).
fn thread_ticks(pid: u32, prefix: &str) -> Result<u64> {
    let mut total = 0;
    for task in fs::read_dir(format!("/proc/{pid}/task"))? {
        let task = task?.path();
        let comm = fs::read_to_string(task.join("comm")).unwrap_or_default();
        if comm.starts_with(prefix) {
            let stat = fs::read_to_string(task.join("stat"))?;
            let after = stat.rsplit_once(')').context("/proc stat format")?.1;
            let fields: Vec<&str> = after.split_whitespace().collect();
            let utime: u64 = fields.get(11).context("utime")?.parse()?;
            let stime: u64 = fields.get(12).context("stime")?.parse()?;
            total += utime + stime;
        }
    }
    Ok(total)
}

/// Clock ticks per second (`getconf CLK_TCK`, 100 on Linux).
fn ticks_per_sec() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Seconds of event time the lines span: twenty one-minute windows.
const SPAN: i64 = 1200;

/// Request `i`, with event times walking from `base` over `SPAN` seconds.
fn request(i: usize, base: i64) -> Request {
    Request {
        client: format!("10.9.{}.{}", i % 3, i % 17),
        time: base + (i as i64 * SPAN) / LINES as i64,
        path: format!("/item/{i:06}"),
        status: [200, 200, 201, 304, 404, 500][i % 6],
        bytes: (i as u64 * 37) % 5000,
        micros: 100 + (i as u64 * 7919) % 250_000,
    }
}

/// The id of a [`request`]'s line.
fn id_of(line: &[u8]) -> Option<usize> {
    item_id(line, 6)
}

/// Write `LINES` requests over about three seconds.
async fn write_lines(log: &Path, base: i64) -> Result<()> {
    let mut file = OpenOptions::new().create(true).append(true).open(log)?;
    for i in 0..LINES {
        file.write_all(request(i, base).line().as_bytes())?;
        if i % 30 == 29 {
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }
    Ok(())
}

/// Stop the faults, SIGTERM the agent: it must exit 0 within 30 s.
fn stop(proxy: &FaultProxy, agent: &mut ChildGuard, a: &AgentDir) -> Result<Duration> {
    proxy.set_faults(Faults::none());
    agent
        .stop(Duration::from_secs(30))
        .with_context(|| format!("SIGTERM after the faults (logs in {})", a.dir.display()))
}

/// The proxy really injected faults: the test cannot pass vacuously.
/// `whole_calls`: also require whole-call faults (5xx) among them.
/// The faults that must have happened for the test to mean anything:
/// records refused inside PutRecords (the raw test guarantees them with a
/// refuse-everything phase; the aggregate test with p = 0.3 per record).
/// Which whole-call faults (5xx, stalls, resets) and mixed calls occur
/// depends on how many calls the timing produces: they are reported, not
/// required, so the test does not fail by chance.
fn check_injected(c: &FaultCounts) -> Result<()> {
    ensure!(c.put_records_calls > 0, "no PutRecords reached the proxy");
    ensure!(c.records_failed() > 0, "no records refused: {c:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_mode_loses_nothing_under_throttling_and_errors() -> Result<()> {
    let name = "faults-raw";
    let (moto, kinesis) = Moto::with_stream(name, 2).await?;
    // First every record is refused: the shipper must back off, not spin.
    let refuse_all = Faults {
        p_record: 1.0,
        ..faults(7)
    };
    let proxy = FaultProxy::start(&moto.endpoint(), refuse_all)?;
    let a = setup(
        name,
        &proxy.endpoint(),
        "    mode: raw\n    linger: 100ms\n    max_record_bytes: 4096\n",
    )?;
    let log = &a.log;
    let mut agent = start_agent(&a)?;
    fs::write(log, "")?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut file = OpenOptions::new().append(true).open(log)?;
    file.write_all(request(LINES, 0).line().as_bytes())?;
    drop(file);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pid = agent.0.id();
    let (ticks, rt_ticks) = (
        tailrace_tests::cpu_ticks(pid)?,
        thread_ticks(pid, "tokio-rt")?,
    );
    let calls = proxy.counts().calls;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let hz = ticks_per_sec();
    let refused_cpu = (tailrace_tests::cpu_ticks(pid)? - ticks) as f64 / hz;
    let refused_rt = (thread_ticks(pid, "tokio-rt")? - rt_ticks) as f64 / hz;
    let refused_calls = proxy.counts().calls - calls;
    eprintln!(
        "every record refused for 4 s: {refused_calls} calls, agent CPU {refused_cpu:.2} s (runtime workers {refused_rt:.2} s)"
    );
    // The shipper (on the runtime workers) must back off, not spin.
    ensure!(
        refused_rt < 0.5 && refused_calls < 20,
        "the shipper spins while every record is refused: {refused_calls} calls, {refused_rt:.2} s CPU in 4 s"
    );
    proxy.set_faults(faults(7));
    let started = Instant::now();
    let ticks0 = tailrace_tests::cpu_ticks(agent.0.id())?;
    write_lines(log, now()).await?;
    let records = until_stream(
        &kinesis,
        name,
        Duration::from_secs(70),
        "every line",
        |records| {
            a.still_running(&mut agent, "1")?;
            // The lines written plus the one written while all was refused.
            let mut seen = vec![false; LINES + 1];
            for r in &records {
                for l in tailrace_wire::raw::lines(&r.data) {
                    if let Some(i) = id_of(l) {
                        seen[i] = true;
                    }
                }
            }
            Ok(seen.iter().all(|&b| b).then_some(records))
        },
    )
    .await
    .with_context(|| format!("proxy {:?}, logs in {}", proxy.counts(), a.dir.display()))?;
    let busy = started.elapsed();
    let cpu = (tailrace_tests::cpu_ticks(agent.0.id())? - ticks0) as f64 / ticks_per_sec();
    let counts = proxy.counts();
    let stop_took = stop(&proxy, &mut agent, &a)?;

    let count = id_counts(&records, id_of)?;
    let duplicates: usize = count.values().map(|n| n - 1).sum();
    eprintln!(
        "raw under faults: {} lines, {} lost, {duplicates} duplicates, {} records; all on the stream after {busy:?}; agent CPU {cpu:.2} s; SIGTERM exit in {stop_took:?}\nproxy: {counts:?}",
        LINES + 1,
        LINES + 1 - count.len(),
        records.len(),
    );
    ensure!(
        count.len() == LINES + 1,
        "{} of {} lines arrived",
        count.len(),
        LINES + 1
    );
    check_injected(&counts)?;
    let _ = fs::remove_dir_all(&a.dir);
    Ok(())
}

/// Per (window start, client): the statistics an independent count expects.
type Truth = BTreeMap<(i64, String), ClientStats>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregate_mode_counts_exactly_under_throttling_and_errors() -> Result<()> {
    let name = "faults-agg";
    let (moto, kinesis) = Moto::with_stream(name, 1).await?;
    let proxy = FaultProxy::start(&moto.endpoint(), faults(11))?;
    let a = setup(
        name,
        &proxy.endpoint(),
        "    mode: aggregate\n    window: 1m\n    allowed_lateness: 5s\n    service: checkout\n",
    )?;
    // Event times from twenty minutes ago to now: windows close while the
    // faults are on, so their partials go through the proxy's faults.
    let base = now() - SPAN;
    let mut truth = Truth::new();
    for i in 0..LINES {
        let r = request(i, base);
        let client = ClientKey::from_text(r.client.as_bytes()).to_string();
        truth
            .entry((r.time.div_euclid(60) * 60, client))
            .or_default()
            .record(Some(r.status), r.bytes, Some(r.micros));
    }
    let closed_windows: HashSet<i64> = truth.keys().map(|k| k.0).collect();
    let started = Instant::now();
    let mut agent = start_agent(&a)?;
    let ticks0 = tailrace_tests::cpu_ticks(agent.0.id())?;
    write_lines(&a.log, base).await?;
    // Wait until the windows that closed while writing (all but the last
    // one or two) are on the stream, through the faults.
    let want_windows = closed_windows.len().saturating_sub(2).max(1);
    until_stream(
        &kinesis,
        name,
        Duration::from_secs(70),
        "closed windows",
        |records| {
            a.still_running(&mut agent, "1")?;
            let mut windows = HashSet::new();
            for r in records {
                if let Ok(p) = Partial::decode(&r.data) {
                    windows.insert(p.window_start);
                }
            }
            Ok((windows.len() >= want_windows).then_some(()))
        },
    )
    .await
    .with_context(|| format!("proxy {:?}, logs in {}", proxy.counts(), a.dir.display()))?;
    let busy = started.elapsed();
    let cpu = (tailrace_tests::cpu_ticks(agent.0.id())? - ticks0) as f64 / ticks_per_sec();
    let counts = proxy.counts();
    let stop_took = stop(&proxy, &mut agent, &a)?;

    let records = read_stream(&kinesis, name).await?;
    let mut merged = Truth::new();
    let mut ids = HashSet::new();
    let mut duplicate_ids = 0usize;
    for r in &records {
        ensure!(
            classify(&r.data) == RecordKind::Partial,
            "non-partial record on the stream"
        );
        let p = Partial::decode(&r.data).context("decoding a partial")?;
        if !ids.insert((p.host_id.clone(), p.flow.clone(), p.sequence)) {
            duplicate_ids += 1;
        }
        for (client, stats) in &p.groups {
            merged
                .entry((p.window_start, client.to_string()))
                .or_default()
                .merge(stats);
        }
    }
    let want: u64 = truth.values().map(|s| s.requests).sum();
    let got: u64 = merged.values().map(|s| s.requests).sum();
    eprintln!(
        "aggregate under faults: {want} requests written, {got} on the stream ({} partials, {duplicate_ids} duplicate partial ids); windows on the stream after {busy:?}; agent CPU {cpu:.2} s; SIGTERM exit in {stop_took:?}\nproxy: {counts:?}",
        records.len()
    );
    for (key, want) in &truth {
        let got = merged
            .get(key)
            .with_context(|| format!("missing group {key:?}"))?;
        ensure!(got == want, "group {key:?}: got {got:?}, want {want:?}");
    }
    ensure!(
        merged.len() == truth.len(),
        "unexpected groups on the stream"
    );
    ensure!(duplicate_ids == 0, "{duplicate_ids} partials shipped twice");
    check_injected(&counts)?;
    let _ = fs::remove_dir_all(&a.dir);
    Ok(())
}
