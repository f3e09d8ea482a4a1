//! Per-flow record sequence numbers: the one piece of a flow's durable state
//! besides its file offsets, saved in the checkpoint as
//! [`FlowState::next_sequence`].

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use super::checkpoint::FlowState;

/// Per-flow record sequence numbers, shared with the checkpointer.
///
/// The checkpoint stores, per flow, the lowest sequence number not yet
/// acknowledged, so partials rebuilt after a crash reuse the numbers of the
/// ones they replace.
#[derive(Clone, Default)]
pub struct Sequences {
    inner: Arc<Mutex<SeqInner>>,
}

#[derive(Default)]
struct SeqInner {
    flows: HashMap<String, SeqFlow>,
    version: u64,
}

#[derive(Default)]
struct SeqFlow {
    next: u64,
    in_flight: BTreeMap<u64, ()>,
}

impl Sequences {
    /// Start from the checkpointed per-flow state.
    pub fn new(state: &BTreeMap<String, FlowState>) -> Sequences {
        let s = Sequences::default();
        {
            let mut inner = s.lock();
            for (flow, st) in state {
                inner.flows.insert(
                    flow.clone(),
                    SeqFlow {
                        next: st.next_sequence.max(1),
                        in_flight: BTreeMap::new(),
                    },
                );
            }
        }
        s
    }

    fn lock(&self) -> MutexGuard<'_, SeqInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Make sure `flow` has an entry; returns its next sequence number.
    pub fn register(&self, flow: &str) -> u64 {
        let mut inner = self.lock();
        let f = inner.flows.entry(flow.to_string()).or_insert(SeqFlow {
            next: 1,
            in_flight: BTreeMap::new(),
        });
        f.next
    }

    /// Sequence numbers `from..to` were put in flight.
    pub fn sent(&self, flow: &str, from: u64, to: u64) {
        let mut inner = self.lock();
        if let Some(f) = inner.flows.get_mut(flow) {
            for s in from..to {
                f.in_flight.insert(s, ());
            }
            f.next = f.next.max(to);
        }
        inner.version += 1;
    }

    /// Sequence number `seq` was acknowledged.
    pub fn acked(&self, flow: &str, seq: u64) {
        let mut inner = self.lock();
        if let Some(f) = inner.flows.get_mut(flow) {
            f.in_flight.remove(&seq);
        }
        inner.version += 1;
    }

    /// Change counter.
    pub fn version(&self) -> u64 {
        self.lock().version
    }

    /// What to checkpoint per flow.
    pub fn snapshot(&self) -> BTreeMap<String, FlowState> {
        self.lock()
            .flows
            .iter()
            .map(|(name, f)| {
                let next = f.in_flight.keys().next().copied().unwrap_or(f.next);
                (
                    name.clone(),
                    FlowState {
                        next_sequence: next,
                        ..FlowState::default()
                    },
                )
            })
            .collect()
    }
}
