//! The agent on a host east of UTC (`TZ=Etc/GMT-1`, UTC+1 all year) reading a
//! format whose time has no offset, with the client taken from
//! `X-Forwarded-For` behind trusted proxy networks, against moto_server's Kinesis.
//!
//! Before time zones, every such line was read as UTC, an hour ahead of the
//! host's clock, and rejected as "in the future". Now each line must land in the
//! window of its true UTC time, attributed to the client the trusted-network rule
//! picks; the counts are compared with an independent count of what was written.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use tailrace_logformat::LogTime;
use tailrace_tests::loggen::now;
use tailrace_tests::{read_stream, spawn_logged, AgentDir, Moto};
use tailrace_wire::{classify, ClientKey, Partial, RecordKind};

const WINDOW: i64 = 60;
const FORMAT: &str = r#"%a %l %u [%{%d/%b/%Y:%H:%M:%S}t] \"%r\" %>s %b \"%{X-Forwarded-For}i\""#;
/// `dd/Mon/yyyy:HH:MM:SS` of unix time `t` as a clock `offset` seconds east
/// of UTC shows it: Apache's `%t` without its zone.
fn local_text(t: i64, offset: i32) -> String {
    let mut text = Vec::with_capacity(26);
    LogTime {
        unix_secs: t,
        nanos: 0,
        offset_secs: offset,
    }
    .write_clf(&mut text);
    text.truncate(text.len() - " +0100".len());
    String::from_utf8_lossy(&text).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_time_east_of_utc_and_forwarded_clients() -> Result<()> {
    let stream = "local-time";
    let (moto, kinesis) = Moto::with_stream(stream, 1).await?;
    let a = AgentDir::new(
        "localtime",
        "host-tz",
        &moto.endpoint(),
        &format!(
            "    format: \"{FORMAT}\"\n    start_at: beginning\n    stream: {stream}\n    mode: aggregate\n    window: 1m\n    allowed_lateness: 5s\n    service: checkout\n    client_field: x_forwarded_for\n    trusted_proxies: [10.0.0.0/8, \"2001:db8::/32\"]\n"
        ),
    )?;
    // (peer, X-Forwarded-For, the client an operator expects)
    let cases: [(&str, &str, &str); 5] = [
        ("10.0.0.5", "1.1.1.1, 203.0.113.7", "203.0.113.7"),
        ("198.51.100.9", "203.0.113.99", "198.51.100.9"),
        ("10.0.0.5", "-", "10.0.0.5"),
        ("10.0.0.5", "203.0.113.8:5555, 10.0.0.6", "203.0.113.8"),
        ("2001:db8::1", "[2001:db9::5]:443", "2001:db9::5"),
    ];
    let base = (now() - 5 * WINDOW).div_euclid(WINDOW) * WINDOW;
    let mut truth: BTreeMap<(i64, String), u64> = BTreeMap::new();
    let mut text = String::new();
    for i in 0..300i64 {
        let t = base + i; // five windows of UTC time, written as UTC+1 local time
        let (peer, xff, client) = cases[(i % 5) as usize];
        text.push_str(&format!(
            "{peer} - - [{}] \"GET /r{i} HTTP/1.1\" 200 10 \"{xff}\"\n",
            local_text(t, 3600)
        ));
        let key = ClientKey::from_text(client.as_bytes()).to_string();
        *truth
            .entry((t.div_euclid(WINDOW) * WINDOW, key))
            .or_default() += 1;
    }
    fs::write(&a.log, &text)?;

    let mut guard = spawn_logged(
        a.command(Path::new(env!("CARGO_BIN_EXE_tailrace")))
            .env("TZ", "Etc/GMT-1"),
        &a.log_path("1"),
    )?;
    // Wait (bounded) until every line was read, then stop: SIGTERM flushes windows.
    tailrace_tests::eventually(
        Duration::from_secs(30),
        "the agent to read the file",
        || async {
            let read = a.checkpoint_offsets().into_iter().max();
            Ok(read.filter(|&o| o > 0).map(|_| ()))
        },
    )
    .await
    .ok();
    guard.stop(Duration::from_secs(25))?;

    let mut got: BTreeMap<(i64, String), u64> = BTreeMap::new();
    let mut rejected = 0;
    let mut samples = Vec::new();
    for r in read_stream(&kinesis, stream).await? {
        ensure!(classify(&r.data) == RecordKind::Partial);
        let p = Partial::decode(&r.data).context("decoding a partial")?;
        rejected += p.rejected_lines;
        samples.extend(p.reject_samples.clone());
        for (client, stats) in &p.groups {
            *got.entry((p.window_start, client.to_string())).or_default() += stats.requests;
        }
    }
    ensure!(rejected == 0, "{rejected} lines rejected: {samples:?}");
    ensure!(
        got == truth,
        "per window and client:\n got {got:?}\nwant {truth:?}"
    );
    let _ = fs::remove_dir_all(&a.dir);
    Ok(())
}
