//! The systemd watchdog, with this test in systemd's place: it binds the
//! `NOTIFY_SOCKET` datagram socket, sets `WATCHDOG_USEC` (2 s) as systemd
//! does for `Type=notify` + `WatchdogSec=2s`, and reads what the agent
//! sends. (The CI container runs no systemd manager, so `systemd-run`
//! cannot host the agent; the protocol is the same datagrams.)
//!
//! - `READY=1` arrives once the flow runs, then `WATCHDOG=1` about every
//!   second, and keeps arriving through a Kinesis outage (backpressure is
//!   waiting, not a wedge).
//! - A reader wedged outside its sink (the test hook
//!   `TAILRACE_TEST_WEDGE_FILE`) stops the pings while its file grows, and
//!   says why in `STATUS=`. systemd would kill the agent after
//!   `WatchdogSec` without a ping: the test does (SIGABRT, systemd's
//!   `WatchdogSignal`) and starts it again, and every line written,
//!   before, during and after the wedge, is on the stream.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use tailrace_tests::fault_proxy::{FaultProxy, Faults};
use tailrace_tests::loggen::{id_of, numbered_lines};
use tailrace_tests::{has_every_id, raw_lines, spawn_logged, until_stream, ChildGuard, Moto};

const WATCHDOG: Duration = Duration::from_secs(2);

/// systemd's side of the notify socket.
struct Manager {
    socket: UnixDatagram,
}

impl Manager {
    fn bind(path: &Path) -> Result<Manager> {
        let _ = fs::remove_file(path);
        let socket = UnixDatagram::bind(path).context("binding the notify socket")?;
        socket.set_read_timeout(Some(Duration::from_millis(200)))?;
        Ok(Manager { socket })
    }

    /// Every datagram's `KEY=VALUE` lines received within `within`.
    fn receive(&self, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = self.socket.recv(&mut buf) {
                out.extend(
                    String::from_utf8_lossy(&buf[..n])
                        .lines()
                        .map(str::to_string),
                );
            }
        }
        out
    }

    /// Wait up to `within` for a message equal to `want`.
    fn expect(&self, want: &str, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self
                .receive(Duration::from_millis(200))
                .iter()
                .any(|m| m == want)
            {
                return Ok(());
            }
        }
        bail!("no {want} from the agent within {within:?}")
    }
}

fn start(config: &Path, socket: &Path, wedge: &Path, log: &Path) -> Result<ChildGuard> {
    // systemd sets WATCHDOG_PID to the main process: a shell that execs
    // the agent gives it its own pid.
    spawn_logged(
        Command::new("sh")
            .args(["-c", "WATCHDOG_PID=$$ exec \"$0\" run --config \"$1\""])
            .arg(env!("CARGO_BIN_EXE_tailrace"))
            .arg(config)
            .envs(tailrace_tests::child_env())
            .env("NOTIFY_SOCKET", socket)
            .env("WATCHDOG_USEC", WATCHDOG.as_micros().to_string())
            .env("TAILRACE_TEST_WEDGE_FILE", wedge),
        log,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wedged_agent_stops_pinging_and_a_restart_loses_nothing() -> Result<()> {
    let (moto, kinesis) = Moto::with_stream("watchdog", 1).await?;
    let proxy = FaultProxy::start(&moto.endpoint(), Faults::none())?;
    let a = tailrace_tests::AgentDir::new(
        "watchdog",
        "watchdog",
        &proxy.endpoint(),
        "    format: combined\n    start_at: beginning\n    stream: watchdog\n    mode: raw\n    linger: 100ms\n",
    )?;
    let socket = a.dir.join("notify.sock");
    let wedge = a.dir.join("wedge");
    let manager = Manager::bind(&socket)?;
    let mut log = OpenOptions::new().create(true).append(true).open(&a.log)?;
    let mut next = 0usize;
    let mut write = |n: usize| -> Result<()> {
        log.write_all(numbered_lines(next..next + n).as_bytes())?;
        next += n;
        Ok(())
    };
    write(100)?;
    let mut agent = start(&a.config, &socket, &wedge, &a.dir.join("agent-1.log"))?;
    manager.expect("READY=1", Duration::from_secs(10))?;
    manager.expect("WATCHDOG=1", WATCHDOG)?;

    // Kinesis down: the reader waits in its sink; pings go on.
    proxy.set_faults(Faults {
        p_5xx: 1.0,
        ..Faults::none()
    });
    write(200)?;
    let during_outage = manager.receive(WATCHDOG * 2);
    let pings = during_outage.iter().filter(|m| *m == "WATCHDOG=1").count();
    ensure!(
        pings >= 2,
        "{pings} pings in {:?} of Kinesis outage; want one per {:?}: {during_outage:?}",
        WATCHDOG * 2,
        WATCHDOG / 2
    );
    proxy.set_faults(Faults::none());

    // Wedged outside its sink while the file grows: no pings, and why.
    fs::write(&wedge, b"")?;
    write(150)?;
    // The loop is seen stuck after one check period; then silence.
    let _ = manager.receive(WATCHDOG);
    let wedged = manager.receive(WATCHDOG * 2);
    ensure!(
        !wedged.iter().any(|m| m == "WATCHDOG=1"),
        "the agent pinged while wedged: {wedged:?}"
    );
    ensure!(
        wedged
            .iter()
            .any(|m| m.starts_with("STATUS=wedged: flow web reader")),
        "no STATUS naming the wedged loop: {wedged:?}"
    );
    // systemd: no ping for WatchdogSec, so WatchdogSignal (SIGABRT), then
    // Restart=on-failure. The bug that wedged it is gone after a restart.
    agent.signal("ABRT")?;
    agent.wait_timeout(Duration::from_secs(10))?;
    fs::remove_file(&wedge)?;
    write(50)?;
    let _agent = start(&a.config, &socket, &wedge, &a.dir.join("agent-2.log"))?;
    manager.expect("READY=1", Duration::from_secs(10))?;
    manager.expect("WATCHDOG=1", WATCHDOG)?;

    let total = next;
    until_stream(
        &kinesis,
        "watchdog",
        Duration::from_secs(45),
        "every line shipped after the restart",
        |records| {
            for l in raw_lines(&records) {
                id_of(l).context("a line nobody wrote")?;
            }
            Ok(has_every_id(&records, total, id_of).then_some(()))
        },
    )
    .await?;
    Ok(())
}
