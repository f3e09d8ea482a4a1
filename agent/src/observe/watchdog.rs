//! systemd integration: readiness (`READY=1` once every flow runs, `STOPPING=1` at
//! shutdown) and the watchdog (`WATCHDOG=1` every half `WatchdogSec`, sent only while
//! the agent's own loops make progress), through the `sd-notify` crate.
//!
//! What counts as progress. Each flow has a reader thread and a shipper task; each
//! carries a [`Beat`]: a counter bumped every time the loop enters its step (a sink
//! call for the reader, a poll for the shipper) and a flag set while it is inside it.
//! - A reader that is *inside* its sink is waiting for the shipper (backpressure:
//!   Kinesis is slow or down). That is correct waiting, not a wedge. A reader outside
//!   its sink whose counter did not move for a whole check period is stuck in its own
//!   code or in file I/O: a wedge. (An idle reader still calls `tick` every poll
//!   interval, 250 ms.)
//! - A shipper waiting for Kinesis or for a backoff timer is *not* inside a poll: it
//!   returned `Pending`, and that is correct waiting, however long the outage. A
//!   shipper that stays inside one poll for a whole check period has stopped
//!   answering: a wedge.
//!
//! When a loop is wedged the pings stop, the reason goes to the log and to systemd as
//! `STATUS=`, and systemd restarts the agent after `WatchdogSec`; nothing is lost,
//! the checkpoint only covers acknowledged lines.
//!
//! A hidden test hook, `TAILRACE_TEST_WEDGE_FILE=PATH`, makes a reader stop (outside
//! its sink) while PATH exists, so a test can see the pings stop.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use sd_notify::NotifyState;

use crate::shared::sink::{LineSink, SinkClosed};

/// Progress of one loop: how often it entered its step, and whether it is inside it.
#[derive(Debug, Default)]
pub struct Beat {
    count: AtomicU64,
    inside: AtomicBool,
}

impl Beat {
    #[inline]
    fn enter(&self) {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.inside.store(true, Ordering::Relaxed);
    }
    #[inline]
    fn leave(&self) {
        self.inside.store(false, Ordering::Relaxed);
    }
    fn snapshot(&self) -> (u64, bool) {
        (
            self.count.load(Ordering::Relaxed),
            self.inside.load(Ordering::Relaxed),
        )
    }
}

/// What a loop is, for the rule that says whether it is wedged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Reader,
    Shipper,
}

/// A loop: its flow and which loop of the flow it is.
type LoopKey = (String, &'static str);

/// The loops of the running flows, by flow name.
#[derive(Debug, Default)]
pub struct Heartbeats {
    loops: Mutex<BTreeMap<LoopKey, (Role, Arc<Beat>)>>,
}

impl Heartbeats {
    /// A registry with no loops.
    pub fn new() -> Heartbeats {
        Heartbeats::default()
    }

    /// The beats for `flow`'s reader and shipper (replacing older ones).
    pub fn register(&self, flow: &str) -> (Arc<Beat>, Arc<Beat>) {
        let reader = Arc::new(Beat::default());
        let shipper = Arc::new(Beat::default());
        if let Ok(mut l) = self.loops.lock() {
            l.insert((flow.to_string(), "reader"), (Role::Reader, reader.clone()));
            l.insert(
                (flow.to_string(), "shipper"),
                (Role::Shipper, shipper.clone()),
            );
        }
        (reader, shipper)
    }

    /// Forget `flow`'s loops (the flow stopped).
    pub fn remove(&self, flow: &str) {
        if let Ok(mut l) = self.loops.lock() {
            l.retain(|(f, _), _| f != flow);
        }
    }

    /// The loops wedged since `last` (the previous snapshot, updated here).
    fn wedged(&self, last: &mut BTreeMap<LoopKey, (u64, bool)>) -> Vec<String> {
        let Ok(loops) = self.loops.lock() else {
            return vec!["the loop registry (poisoned lock)".into()];
        };
        let mut out = Vec::new();
        let mut next = BTreeMap::new();
        for (key, (role, beat)) in loops.iter() {
            let (count, inside) = beat.snapshot();
            // Stuck: the same state at both looks and no step entered between them.
            let stuck = match last.get(key) {
                Some(&(c, was_inside)) if c == count && was_inside == inside => match role {
                    Role::Reader => !inside,
                    Role::Shipper => inside,
                },
                _ => false,
            };
            if stuck {
                out.push(format!("flow {} {}", key.0, key.1));
            }
            next.insert(key.clone(), (count, inside));
        }
        *last = next;
        out
    }
}

/// A sink that beats for its reader on every call, then forwards it.
pub struct BeatSink {
    inner: Box<dyn LineSink + Send>,
    beat: Arc<Beat>,
    wedge: Option<PathBuf>,
}

impl BeatSink {
    /// Wrap `inner`, beating `beat`.
    pub fn wrap(inner: Box<dyn LineSink + Send>, beat: Arc<Beat>) -> Box<dyn LineSink + Send> {
        let wedge = std::env::var_os("TAILRACE_TEST_WEDGE_FILE").map(PathBuf::from);
        Box::new(BeatSink { inner, beat, wedge })
    }
}

impl LineSink for BeatSink {
    fn line(
        &mut self,
        source: crate::shared::ledger::SourceId,
        start: u64,
        line: &[u8],
        truncated: bool,
    ) -> Result<(), SinkClosed> {
        self.beat.enter();
        let r = self.inner.line(source, start, line, truncated);
        self.beat.leave();
        r
    }

    fn tick(&mut self) -> Result<(), SinkClosed> {
        if let Some(w) = &self.wedge {
            while w.exists() {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        self.beat.enter();
        let r = self.inner.tick();
        self.beat.leave();
        r
    }

    fn flush(&mut self) -> Result<(), SinkClosed> {
        self.beat.enter();
        let r = self.inner.flush();
        self.beat.leave();
        r
    }
}

/// A future that beats on every poll (the shipper's task).
pub struct Beating<F> {
    inner: Pin<Box<F>>,
    beat: Arc<Beat>,
}

impl<F: Future> Beating<F> {
    /// Wrap `inner`, beating `beat`.
    pub fn new(inner: F, beat: Arc<Beat>) -> Beating<F> {
        Beating {
            inner: Box::pin(inner),
            beat,
        }
    }
}

impl<F: Future> Future for Beating<F> {
    type Output = F::Output;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        this.beat.enter();
        let r = this.inner.as_mut().poll(cx);
        this.beat.leave();
        r
    }
}

/// Tell systemd the agent is ready (a no-op outside systemd).
pub fn ready(flows: usize) {
    let status = format!("running {flows} flow(s)");
    if let Err(e) = sd_notify::notify(false, &[NotifyState::Ready, NotifyState::Status(&status)]) {
        tracing::warn!(error = %e, "cannot tell systemd the agent is ready");
    }
}

/// Tell systemd the agent is stopping.
pub fn stopping() {
    let _ = sd_notify::notify(false, &[NotifyState::Stopping]);
}

/// The watchdog period systemd asked for (`WATCHDOG_USEC`), if any.
pub fn period() -> Option<Duration> {
    let mut usec = 0u64;
    sd_notify::watchdog_enabled(false, &mut usec).then(|| Duration::from_micros(usec))
}

/// Ping systemd every half period while every loop makes progress, until `done`.
pub async fn run(beats: Arc<Heartbeats>, mut done: tokio::sync::watch::Receiver<bool>) {
    let Some(period) = period() else {
        return;
    };
    let every = (period / 2).max(Duration::from_millis(100));
    tracing::info!(watchdog = ?period, "systemd watchdog enabled");
    let mut last = BTreeMap::new();
    let mut was_wedged = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = done.changed() => return,
        }
        let wedged = beats.wedged(&mut last);
        if wedged.is_empty() {
            if was_wedged {
                tracing::info!("watchdog: every loop makes progress again");
                let _ = sd_notify::notify(false, &[NotifyState::Status("running")]);
            }
            was_wedged = false;
            if let Err(e) = sd_notify::notify(false, &[NotifyState::Watchdog]) {
                tracing::warn!(error = %e, "cannot ping the systemd watchdog");
            }
        } else {
            let what = wedged.join(", ");
            if !was_wedged {
                tracing::error!(loops = %what, "watchdog: no progress for {every:?}; not pinging systemd, which restarts the agent after WatchdogSec");
            }
            was_wedged = true;
            let status = format!("wedged: {what}");
            let _ = sd_notify::notify(false, &[NotifyState::Status(&status)]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_outside_its_sink_that_stopped_is_wedged_a_waiting_one_is_not() {
        let hb = Heartbeats::new();
        let (reader, shipper) = hb.register("web");
        let mut last = BTreeMap::new();
        assert!(hb.wedged(&mut last).is_empty(), "first look only records");
        // Idle but alive: both moved.
        reader.enter();
        reader.leave();
        shipper.enter();
        shipper.leave();
        assert!(hb.wedged(&mut last).is_empty());
        // The shipper waits for Kinesis (not inside a poll), the reader is blocked
        // in its sink (backpressure): waiting, not wedged.
        reader.enter();
        assert!(hb.wedged(&mut last).is_empty());
        assert!(hb.wedged(&mut last).is_empty());
        // The reader left its sink and never came back.
        reader.leave();
        assert!(hb.wedged(&mut last).is_empty(), "left during this period");
        assert_eq!(hb.wedged(&mut last), vec!["flow web reader".to_string()]);
        // A shipper stuck inside one poll.
        reader.enter();
        reader.leave();
        shipper.enter();
        assert!(hb.wedged(&mut last).is_empty());
        let w = hb.wedged(&mut last);
        assert!(w.contains(&"flow web shipper".to_string()), "{w:?}");
        hb.remove("web");
        assert!(hb.wedged(&mut last).is_empty());
    }
}
