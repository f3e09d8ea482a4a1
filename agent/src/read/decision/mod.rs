//! The tailer's decisions, as pure functions: facts in, decisions out.
//!
//! The tailer ([`crate::read::tailer`]) gathers facts with I/O (stat, the first
//! bytes of a file, its checkpoint, the readings it holds, how long something
//! has been quiet) and carries decisions out (open a reading at an offset,
//! wait, close a reading, read a rotated copy). Everything in between lives
//! here, without I/O and without a clock, so each rule of
//! `docs/ARCHITECTURE.md` ("How the tailer decides where a file starts") is
//! one row of a table test.
//!
//! The decisions:
//! - [`start`]: where a file found by discovery starts reading, or why it
//!   must wait (and whether it is a `copytruncate` copy of a reading);
//! - [`may_close`]: when a reading whose path no longer leads to it may
//!   close, and what becomes of a partial last line;
//! - [`displaced`]: whether a rotated file (plain or compressed) holds the
//!   unsent end of a *displaced* reading (a checkpoint whose inode now holds
//!   other bytes, or a reading truncated while the agent ran), and from
//!   which offset to read it;
//! - [`leftover`]: what to do with a rotated file that no glob matches:
//!   leave it, or read a generation the reader never saw at its path
//!   (created and rotated away while the agent was down, or between two
//!   looks while it ran), or the unsent end of a file the flow shipped;
//! - [`name_for`]: which of the names of one file (hard links, symbolic
//!   links) a reading goes by: one inode is one reading;
//! - [`after_truncation`]: what a file found truncated (to any size) is:
//!   a new generation whose predecessor may have a copy, or the same file
//!   cut short.
//!
//! Each decision is a module of its own, with its facts, its answer and its
//! table test; they are re-exported here, so the tailer names them
//! `decision::start`, `decision::Displaced`, and so on.

mod close;
mod displaced;
mod leftover;
mod naming;
mod start;
mod truncation;

pub use close::{may_close, Close, CloseTimes, Reading, DEFAULT_QUIET, DEFAULT_RENAMED_QUIET};
pub use displaced::{displaced, Candidate, Displaced};
pub use leftover::{leftover, Leftover, LeftoverAction};
pub use naming::{name_for, Name};
pub use start::{
    start, CheckpointFit, FoundFile, Offset, Resemblance, Start, Wait, Waiting, COPY_WAIT_CAP,
};
pub use truncation::{after_truncation, Truncated, Truncation};
