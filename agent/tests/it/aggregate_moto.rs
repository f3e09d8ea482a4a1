//! Aggregate mode against a real Kinesis emulator (moto_server on 127.0.0.1).
//!
//! Several agents (separate state dirs, different host ids) aggregate logs
//! spanning several windows, with late lines, unparseable lines and a
//! rotation; decoding every partial on the stream and merging gives exactly
//! the counts of an independent count of the files. A second test `kill -9`s
//! an agent mid-way: totals are never below the truth, and the excess is
//! reported.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use tailrace_tests::loggen::{append, now, Request, FORMAT};
use tailrace_tests::{read_stream, AgentDir, ChildGuard, Moto};
use tailrace_wire::{classify, ClientKey, ClientStats, Partial, RecordKind};

const WINDOW: i64 = 60;

/// Per (window start, client): the statistics an independent count expects.
type Truth = BTreeMap<(i64, String), ClientStats>;

fn agent_dir(test: &str, host: &str, endpoint: &str, stream: &str) -> Result<AgentDir> {
    agent_dir_with(test, host, endpoint, stream, "")
}

/// `extra`: more flow keys, each line indented by four spaces.
fn agent_dir_with(
    test: &str,
    host: &str,
    endpoint: &str,
    stream: &str,
    extra: &str,
) -> Result<AgentDir> {
    AgentDir::new(
        &format!("agg-{test}-{host}"),
        host,
        endpoint,
        &format!("    format: '{FORMAT}'\n    start_at: beginning\n    stream: {stream}\n    mode: aggregate\n    window: 1m\n    allowed_lateness: 5s\n    service: checkout\n{extra}"),
    )
}

fn start(agent: &AgentDir, tag: &str) -> Result<ChildGuard> {
    agent.run(Path::new(env!("CARGO_BIN_EXE_tailrace")), tag)
}

/// A deterministic request stream for one host: `n` requests whose event
/// times walk through five windows, then a few late ones for the first.
fn requests(host: usize, n: usize, base: i64) -> Vec<Request> {
    let mut out = Vec::with_capacity(n + 10);
    for i in 0..n {
        let client = match i % 7 {
            0 => format!("2001:db8::{:x}", i % 5 + host),
            _ => format!("10.{host}.{}.{}", i % 3, i % 11),
        };
        out.push(Request {
            client,
            time: base + (i as i64 * 5 * WINDOW) / n as i64,
            path: format!("/h{host}/r{i}"),
            status: [200, 200, 200, 201, 304, 404, 500][i % 7],
            bytes: (i as u64 * 37) % 5000,
            micros: 100 + (i as u64 * 7919) % 250_000,
        });
    }
    for j in 0..10 {
        out.push(Request {
            client: "192.0.2.9".into(),
            time: base + j,
            path: format!("/late/{j}"),
            status: 200,
            bytes: 10,
            micros: 1000,
        });
    }
    out
}

fn add(truth: &mut Truth, r: &Request) {
    let ws = r.time.div_euclid(WINDOW) * WINDOW;
    let client = ClientKey::from_text(r.client.as_bytes()).to_string();
    truth
        .entry((ws, client))
        .or_default()
        .record(Some(r.status), r.bytes, Some(r.micros));
}

/// Decode every record; merge partials per (window, client). Also returns
/// total rejected lines, how many partials were late, and duplicate ids.
struct Decoded {
    merged: Truth,
    /// Merged after dropping exact replays (same id and same bytes), as the
    /// aggregator does.
    deduped: Truth,
    rejected: u64,
    late_partials: usize,
    duplicate_ids: usize,
}

fn decode_all(records: &[tailrace_tests::StreamRecord]) -> Result<Decoded> {
    let mut merged = Truth::new();
    let mut deduped = Truth::new();
    let mut ids = HashSet::new();
    let mut exact = HashSet::new();
    let mut d = Decoded {
        merged: Truth::new(),
        deduped: Truth::new(),
        rejected: 0,
        late_partials: 0,
        duplicate_ids: 0,
    };
    for r in records {
        ensure!(
            classify(&r.data) == RecordKind::Partial,
            "non-partial record on the stream"
        );
        let p = Partial::decode(&r.data).context("decoding a partial")?;
        ensure!(p.service == "checkout" && p.flow == "web" && p.window_secs == WINDOW as u32);
        if !ids.insert((p.host_id.clone(), p.flow.clone(), p.sequence)) {
            d.duplicate_ids += 1;
        }
        d.rejected += p.rejected_lines;
        d.late_partials += usize::from(p.late);
        ensure!(p.overflow.requests == 0, "no overflow expected");
        let replay = !exact.insert((
            p.host_id.clone(),
            p.flow.clone(),
            p.sequence,
            r.data.clone(),
        ));
        for (client, stats) in &p.groups {
            let key = (p.window_start, client.to_string());
            merged.entry(key.clone()).or_default().merge(stats);
            if !replay {
                deduped.entry(key).or_default().merge(stats);
            }
        }
    }
    d.merged = merged;
    d.deduped = deduped;
    Ok(d)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_agents_merge_to_the_exact_counts() -> Result<()> {
    let stream = "agg-exact";
    let (moto, kinesis) = Moto::with_stream(stream, 2).await?;
    let base = (now() - 20 * WINDOW).div_euclid(WINDOW) * WINDOW;

    let mut truth = Truth::new();
    let mut garbage = 0u64;
    let mut agents = Vec::new();
    for host in 1..=3 {
        let a = agent_dir("exact", &format!("host-{host}"), &moto.endpoint(), stream)?;
        let guard = start(&a, "1")?;
        agents.push((a, guard, requests(host, 600, base)));
    }
    // Write in slices so windows close while the agents run, rotate once,
    // and end with the late lines.
    for step in 0..6 {
        for (a, _, reqs) in &agents {
            if step == 3 {
                fs::rename(&a.log, a.log.with_extension("log.1"))?;
            }
            let chunk: String = reqs
                .iter()
                .skip(step * 100)
                .take(100)
                .map(Request::line)
                .collect();
            append(&a.log, &chunk)?;
            if step == 2 {
                append(&a.log, "this is not an access log line\n\x16\x03 garbage\n")?;
                garbage += 2;
            }
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (a, _, reqs) in &agents {
        let late: String = reqs[600..].iter().map(Request::line).collect();
        append(&a.log, &late)?;
        for r in reqs {
            add(&mut truth, r);
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    for (a, guard, _) in &mut agents {
        guard.signal("TERM")?;
        let status = guard.wait_timeout(Duration::from_secs(25))?;
        ensure!(
            status.success(),
            "agent in {} exited with {status}",
            a.dir.display()
        );
    }

    let records = read_stream(&kinesis, stream).await?;
    let d = decode_all(&records)?;
    ensure!(
        d.duplicate_ids == 0,
        "{} partials shipped twice without a crash",
        d.duplicate_ids
    );
    ensure!(
        d.rejected == garbage,
        "rejected lines: {} on the stream, {garbage} written",
        d.rejected
    );
    ensure!(
        d.late_partials > 0,
        "the late lines should travel in late partials"
    );
    let windows: HashSet<i64> = truth.keys().map(|k| k.0).collect();
    ensure!(windows.len() >= 5, "the log spans several windows");
    for (key, want) in &truth {
        let got = d
            .merged
            .get(key)
            .with_context(|| format!("missing group {key:?}"))?;
        ensure!(got == want, "group {key:?}: got {got:?}, want {want:?}");
    }
    ensure!(
        d.merged.len() == truth.len(),
        "unexpected groups on the stream"
    );
    let raw_bytes: usize = agents
        .iter()
        .map(|(_, _, r)| r.iter().map(|q| q.line().len()).sum::<usize>())
        .sum();
    let sent: usize = records.iter().map(|r| r.data.len()).sum();
    eprintln!(
        "{} records, {sent} bytes for {raw_bytes} bytes of log",
        records.len()
    );
    for (a, _, _) in &agents {
        let _ = fs::remove_dir_all(&a.dir);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_during_aggregation_never_undercounts() -> Result<()> {
    let stream = "agg-kill";
    let (moto, kinesis) = Moto::with_stream(stream, 1).await?;
    let base = (now() - 20 * WINDOW).div_euclid(WINDOW) * WINDOW;
    let a = agent_dir("kill", "host-k", &moto.endpoint(), stream)?;
    let reqs = requests(4, 1000, base);
    let mut truth = Truth::new();
    for r in &reqs {
        add(&mut truth, r);
    }
    let mut agent = start(&a, "1")?;
    for (step, chunk) in reqs.chunks(100).enumerate() {
        let text: String = chunk.iter().map(Request::line).collect();
        append(&a.log, &text)?;
        // Kill four times, at different moments relative to the last write
        // and to the 200 ms checkpoint interval.
        let pause = [300, 50, 120, 260, 10, 300, 180, 75, 300, 300, 300][step % 11];
        tokio::time::sleep(Duration::from_millis(pause)).await;
        if step % 2 == 1 && step < 9 {
            agent.signal("KILL")?;
            agent.wait_timeout(Duration::from_secs(5))?;
            agent = start(&a, &format!("{step}"))?;
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    agent.stop(Duration::from_secs(25))?;

    let d = decode_all(&read_stream(&kinesis, stream).await?)?;
    let (mut want_total, mut got_total, mut dedup_total) = (0u64, 0u64, 0u64);
    for (key, want) in &truth {
        let got = d.merged.get(key).map_or(0, |s| s.requests);
        let dedup = d.deduped.get(key).map_or(0, |s| s.requests);
        ensure!(
            got >= want.requests,
            "group {key:?} undercounted: {got} < {}",
            want.requests
        );
        ensure!(
            dedup >= want.requests,
            "group {key:?} undercounted after dropping exact replays: {dedup} < {}",
            want.requests
        );
        want_total += want.requests;
    }
    got_total += d.merged.values().map(|s| s.requests).sum::<u64>();
    dedup_total += d.deduped.values().map(|s| s.requests).sum::<u64>();
    eprintln!(
        "kill -9 x4 during aggregation: {want_total} requests written; on the stream {got_total} ({} over, {} reused partial ids); after dropping exact replays {dedup_total} ({} over)",
        got_total - want_total,
        d.duplicate_ids,
        dedup_total - want_total
    );
    let _ = fs::remove_dir_all(&a.dir);
    Ok(())
}

/// Past `max_groups_per_window`, clients are merged into one overflow group:
/// their requests still count, and how many clients were folded is reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_past_the_cap_are_counted_in_overflow() -> Result<()> {
    let stream = "agg-cap";
    let (moto, kinesis) = Moto::with_stream(stream, 1).await?;
    let a = agent_dir_with(
        "cap",
        "host-c",
        &moto.endpoint(),
        stream,
        "    max_groups_per_window: 5\n",
    )?;
    let t = (now() - 10 * WINDOW).div_euclid(WINDOW) * WINDOW + 1;
    let reqs: Vec<Request> = (0..200)
        .map(|i| Request {
            client: format!("10.9.0.{}", i % 20),
            time: t,
            path: format!("/cap/{i}"),
            status: 200,
            bytes: 3,
            micros: 10,
        })
        .collect();
    append(&a.log, &reqs.iter().map(Request::line).collect::<String>())?;
    let mut agent = start(&a, "1")?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    agent.stop(Duration::from_secs(25))?;
    let records = read_stream(&kinesis, stream).await?;
    let partials: Vec<Partial> = records
        .iter()
        .map(|r| Partial::decode(&r.data))
        .collect::<Result<_, _>>()?;
    ensure!(partials.len() == 1, "one window, one record");
    let p = &partials[0];
    ensure!(
        p.groups.len() == 5,
        "{} groups kept, cap is 5",
        p.groups.len()
    );
    ensure!(
        p.overflow_clients == 15,
        "{} overflow clients, want 15",
        p.overflow_clients
    );
    ensure!(p.total().requests == 200, "every request counted");
    ensure!(
        p.overflow.requests == 150,
        "overflow requests {}",
        p.overflow.requests
    );
    let _ = fs::remove_dir_all(&a.dir);
    Ok(())
}
