//! The periodic checkpoint writer and how it stops.
//!
//! Every interval, when the ledger changed, the state is snapshotted and saved on a
//! blocking thread, unless it equals the state saved last: the reader moves the
//! ledger on every pass, but in aggregate mode the acknowledged positions move once
//! a window, and an identical file written and fsync'ed every second was most of
//! what the checkpoint cost a busy host. Stopping must never leave a torn or a stale
//! checkpoint: a save already running when the agent stops is let finish (the loop
//! is told to stop and is awaited, never aborted: aborting the task would not stop
//! the blocking save it started, which could then land *after* the final save and
//! put an older state back). Only then does the caller write the final checkpoint.
//! If the running save does not finish within the budget (a hung disk), [`stop`]
//! says so and the caller skips the final save: the last complete checkpoint stands
//! and the lines after it are read again on the next start (none lost).
//!
//! [`stop`]: Checkpointer::stop

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::checkpoint::State;
use super::sequences::Sequences;
use crate::shared::ledger::Ledger;

/// What the loop needs: whether anything changed, the state to save, and saving it.
pub trait Source: Send + Sync + 'static {
    /// The state to save.
    type State: PartialEq + Send + 'static;
    /// A value that changes whenever the state does.
    fn version(&self) -> (u64, u64);
    /// A snapshot of the state.
    fn snapshot(&self) -> Self::State;
    /// Write `state` durably (blocking).
    fn save(&self, state: &Self::State) -> Result<(), String>;
    /// Whether what was saved is gone (the state directory was deleted):
    /// the state is saved again even when it did not change.
    fn lost(&self) -> bool {
        false
    }
    /// What a restart would do while saves fail, for the error message.
    fn advice(&self) -> String {
        "lines keep flowing".to_string()
    }
    /// The outcome of a periodic save (for health).
    fn report(&self, error: Option<String>);
}

/// The running checkpoint loop.
pub struct Checkpointer {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Checkpointer {
    /// Start saving `source` every `interval_ms` (re-read each time: a reload may
    /// change it).
    pub fn spawn<S: Source>(source: Arc<S>, interval_ms: Arc<AtomicU64>) -> Checkpointer {
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run(source, interval_ms, stop_rx));
        Checkpointer { stop, task }
    }

    /// Stop the loop; a save in progress completes first. `true` when the loop ended
    /// within `budget` (so no save of it can land later), `false` when a save still
    /// hangs: the caller must not write the final checkpoint then.
    pub async fn stop(self, budget: Duration) -> bool {
        let _ = self.stop.send(true);
        matches!(tokio::time::timeout(budget, self.task).await, Ok(Ok(())))
    }
}

async fn run<S: Source>(
    source: Arc<S>,
    interval_ms: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
) {
    let mut last = (u64::MAX, u64::MAX);
    let mut saved: Option<S::State> = None;
    let mut failing = false;
    loop {
        let wait = Duration::from_millis(interval_ms.load(Ordering::Relaxed));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        let version = source.version();
        let lost = saved.is_some() && source.lost();
        if version == last && !lost {
            continue;
        }
        let state = source.snapshot();
        if saved.as_ref() == Some(&state) && !lost {
            last = version;
            continue;
        }
        let s = source.clone();
        // Awaited to the end even when a stop arrives meanwhile.
        match tokio::task::spawn_blocking(move || (s.save(&state), state)).await {
            Ok((Ok(()), state)) => {
                if failing {
                    tracing::info!("checkpoint written again");
                }
                failing = false;
                last = version;
                saved = Some(state);
                source.report(None);
            }
            Ok((Err(e), _)) => {
                if !failing {
                    tracing::error!(error = %e, "cannot write checkpoint; {}", source.advice());
                }
                failing = true;
                source.report(Some(e));
            }
            Err(e) => tracing::error!(error = %e, "checkpoint task failed"),
        }
    }
}

/// What the next checkpoint holds: every file's acknowledged position,
/// every flow's next sequence number and what it remembers, and the
/// positions of flows no longer configured.
pub fn snapshot(ledger: &Ledger, sequences: &Sequences) -> State {
    let files = ledger.positions().into_iter().map(Into::into).collect();
    let mut flows = sequences.snapshot();
    for (name, memory) in ledger.memories() {
        let flow = flows.entry(name).or_default();
        flow.shipped = memory.shipped.into_iter().collect();
        flow.looked_ms = memory.looked_ms;
    }
    State {
        files,
        flows,
        retired: ledger
            .retired(crate::shared::counters::now_ms())
            .into_iter()
            .map(Into::into)
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::checkpoint::{FileCheckpoint, State, Store};
    use std::sync::Mutex;

    /// A source whose first save blocks until the test opens the gate.
    struct Slow {
        store: Store,
        state: Mutex<State>,
        version: AtomicU64,
        entered: Mutex<Option<std::sync::mpsc::Sender<()>>>,
        gate: Mutex<std::sync::mpsc::Receiver<()>>,
    }

    impl Source for Slow {
        type State = State;
        fn version(&self) -> (u64, u64) {
            (self.version.load(Ordering::SeqCst), 0)
        }
        fn snapshot(&self) -> State {
            self.state.lock().unwrap().clone()
        }
        fn save(&self, state: &State) -> Result<(), String> {
            if let Some(tx) = self.entered.lock().unwrap().take() {
                let _ = tx.send(());
                let _ = self.gate.lock().unwrap().recv();
            }
            self.store.save(state).map_err(|e| e.to_string())
        }
        fn report(&self, _: Option<String>) {}
    }

    fn state(offset: u64) -> State {
        State {
            files: vec![FileCheckpoint {
                flow: "web".into(),
                path: "/var/log/a.log".into(),
                key: crate::shared::identity::FileKey { dev: 1, ino: 2 },
                fingerprint: crate::shared::identity::Fingerprint { len: 4, hash: 5 },
                target: None,
                offset,
                tail: None,
            }],
            ..State::default()
        }
    }

    /// The periodic save of an old state is still running when the agent stops;
    /// the final checkpoint (newer) must be what is on disk afterwards.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_save_running_at_shutdown_completes_before_the_final_one() {
        let dir = tempdir();
        let (entered_tx, entered_rx) = std::sync::mpsc::channel();
        let (gate_tx, gate_rx) = std::sync::mpsc::channel();
        let source = Arc::new(Slow {
            store: Store::open(&dir).unwrap(),
            state: Mutex::new(state(100)),
            version: AtomicU64::new(1),
            entered: Mutex::new(Some(entered_tx)),
            gate: Mutex::new(gate_rx),
        });
        let cp = Checkpointer::spawn(source.clone(), Arc::new(AtomicU64::new(10)));
        // The periodic save of offset 100 has started and is held.
        tokio::task::spawn_blocking(move || entered_rx.recv().unwrap())
            .await
            .unwrap();
        // Meanwhile more was acknowledged: the final state is offset 200.
        *source.state.lock().unwrap() = state(200);
        source.version.store(2, Ordering::SeqCst);
        let stopping = tokio::spawn(cp.stop(Duration::from_secs(30)));
        tokio::task::yield_now().await;
        gate_tx.send(()).unwrap();
        assert!(stopping.await.unwrap(), "the loop ended after its save");
        let s = source.clone();
        tokio::task::spawn_blocking(move || s.save(&s.snapshot()))
            .await
            .unwrap()
            .unwrap();
        // The loop ended with its save: nothing of it can land after this point.
        let on_disk = source.store.load().unwrap();
        assert_eq!(on_disk.files[0].offset, 200);
    }

    /// A save that hangs past the budget: `stop` says so (the final save is skipped).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hung_save_is_reported() {
        let dir = tempdir();
        let (entered_tx, entered_rx) = std::sync::mpsc::channel();
        let (gate_tx, gate_rx) = std::sync::mpsc::channel();
        let source = Arc::new(Slow {
            store: Store::open(&dir).unwrap(),
            state: Mutex::new(state(100)),
            version: AtomicU64::new(1),
            entered: Mutex::new(Some(entered_tx)),
            gate: Mutex::new(gate_rx),
        });
        let cp = Checkpointer::spawn(source.clone(), Arc::new(AtomicU64::new(10)));
        tokio::task::spawn_blocking(move || entered_rx.recv().unwrap())
            .await
            .unwrap();
        assert!(!cp.stop(Duration::from_millis(50)).await);
        gate_tx.send(()).unwrap();
    }

    /// Counts saves; the state is what the test sets.
    struct Counting {
        state: Mutex<State>,
        version: AtomicU64,
        saves: AtomicU64,
    }

    impl Source for Counting {
        type State = State;
        fn version(&self) -> (u64, u64) {
            (self.version.load(Ordering::SeqCst), 0)
        }
        fn snapshot(&self) -> State {
            self.state.lock().unwrap().clone()
        }
        fn save(&self, _: &State) -> Result<(), String> {
            self.saves.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        fn report(&self, _: Option<String>) {}
    }

    /// The ledger moving without the positions moving (the reader's passes
    /// in aggregate mode) writes nothing; a new position is written.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unchanged_state_is_not_written_again() {
        let source = Arc::new(Counting {
            state: Mutex::new(state(100)),
            version: AtomicU64::new(1),
            saves: AtomicU64::new(0),
        });
        let cp = Checkpointer::spawn(source.clone(), Arc::new(AtomicU64::new(5)));
        let saves_become = |n: u64| {
            let source = source.clone();
            async move {
                for _ in 0..400 {
                    if source.saves.load(Ordering::SeqCst) >= n {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                panic!("fewer than {n} saves");
            }
        };
        saves_become(1).await;
        for v in 2..20 {
            source.version.store(v, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            source.saves.load(Ordering::SeqCst),
            1,
            "same state, written again"
        );
        *source.state.lock().unwrap() = state(200);
        source.version.store(20, Ordering::SeqCst);
        saves_become(2).await;
        assert!(cp.stop(Duration::from_secs(5)).await);
    }

    fn tempdir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "tailrace-checkpointer-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
