//! The ground floor: types every layer of the data path shares, importing no
//! layer themselves (`scripts/module_cycles.py` refuses a module here that
//! names `read`, `pack`, `ship`, `state`, `observe`, `config` or above).
//!
//! - [`ledger`]: which byte offsets Kinesis has acknowledged everything
//!   before (`Ledger`, `Hold`, `SourceId`);
//! - [`positions`]: what the ledger hands the checkpoint: `Position`, and
//!   what outlives a reading (`Shipped`, `FlowMemory`, `Retired`).
//! - [`identity`]: what makes a file the same file (`FileKey`: device +
//!   inode; `Fingerprint`: a hash of its first bytes).
//! - [`sink`]: where a reader's lines go (`LineSink`, `SinkClosed`).
//! - [`counters`]: the relaxed atomics the data path bumps (`FlowStats`).
//! - [`ratelog`]: a repeating error logged once per window (`Repeats`).

pub mod counters;
pub mod identity;
pub mod ledger;
pub mod positions;
pub mod ratelog;
pub mod sink;
