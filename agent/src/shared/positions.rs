//! What the ledger hands the checkpoint and takes back from it at a start:
//! a file's checkpointable position ([`Position`]); per flow, the files it
//! is done with ([`Shipped`], kept in [`FlowMemory`] with how far back its
//! rotations were looked at); and the positions of flows a reload or a
//! restart removed ([`Retired`]). The ledger (`crate::shared::ledger`)
//! keeps them current; the checkpoint (`crate::state::checkpoint`) stores
//! them.

use std::collections::VecDeque;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::shared::identity::{FileKey, Fingerprint};

/// One checkpointable position, as the checkpoint file stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// Flow name.
    pub flow: String,
    /// Device + inode.
    pub key: FileKey,
    /// Fingerprint of the first bytes.
    pub fingerprint: Fingerprint,
    /// Last known path.
    pub path: PathBuf,
    /// The file's own path when `path` is (or passes through) a symbolic
    /// link: where to look for it once the link points elsewhere.
    pub target: Option<PathBuf>,
    /// Resume offset.
    pub offset: u64,
    /// The bytes just before `offset` (up to 32), when the reader saw them
    /// there: a file whose bytes there differ at a restart was cut and
    /// written again while the agent was down.
    pub tail: Option<Fingerprint>,
}

/// A file a flow is done with: its first bytes and the offset through which
/// everything in it was acknowledged. A file found later with these first
/// bytes (a copy, a rename, a compressed rotation) holds nothing new before
/// `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shipped {
    /// Its first bytes.
    #[serde(flatten)]
    pub fingerprint: Fingerprint,
    /// Acknowledged through here.
    pub offset: u64,
}

/// How many [`Shipped`] files a flow remembers (the oldest are forgotten
/// first): far more than `rotate N` keeps, and small in the checkpoint
/// (about 60 bytes each).
pub const SHIPPED_KEPT: usize = 256;

/// What a flow remembers beyond its open files (see the module comment).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlowMemory {
    /// Files it is done with, oldest first.
    pub shipped: VecDeque<Shipped>,
    /// Wall-clock time (Unix ms) before which every rotated file was looked
    /// at by this flow's reader: a restart looks again only at rotations
    /// modified since. `None` until its first discovery.
    pub looked_ms: Option<u64>,
}

impl FlowMemory {
    /// Remember `s`, replacing an entry with the same first bytes.
    pub fn remember(&mut self, s: Shipped) {
        if s.fingerprint.len == 0 {
            return;
        }
        self.shipped.retain(|x| x.fingerprint != s.fingerprint);
        if self.shipped.len() >= SHIPPED_KEPT {
            self.shipped.pop_front();
        }
        self.shipped.push_back(s);
    }
}

/// A position of a flow that was removed (by a reload, or because a restart
/// found it no more in the config), kept for a flow that reads the same
/// file later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retired {
    /// The position, under the removed flow's name.
    pub position: Position,
    /// When the flow was removed (Unix ms).
    pub retired_ms: u64,
}

/// How long a retired position is kept.
pub const RETIRED_FOR: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// How many retired positions are kept at most (the newest).
const RETIRED_KEPT: usize = 4096;

/// Add `new` to `retired`: a newer position of the same (flow, file)
/// replaces an older one; the oldest go beyond [`RETIRED_KEPT`].
pub(crate) fn add_retired(retired: &mut Vec<Retired>, new: Vec<Retired>) {
    for r in new {
        retired
            .retain(|o| (&o.position.flow, o.position.key) != (&r.position.flow, r.position.key));
        retired.push(r);
    }
    if retired.len() > RETIRED_KEPT {
        retired.sort_by_key(|r| std::cmp::Reverse(r.retired_ms));
        retired.truncate(RETIRED_KEPT);
    }
}
