//! Reading: which files a flow follows through rotation, and the lines out of
//! each one.
//!
//! [`tailer`] is a flow's loop over its files; it gathers facts with I/O and
//! carries out what the pure rules of [`decision`] decide. [`watcher`] reads
//! lines out of one open file; [`crate::shared::identity`] says when two files are the same
//! one (device + inode, confirmed by a fingerprint of the first bytes);
//! [`seen`] remembers the fingerprints a flow has already read; [`compressed`]
//! reads unsent lines out of a rotation logrotate compressed; [`globs`]
//! expands the `paths` patterns; [`names`] makes one reading of a file
//! found under several names (links); [`keeper`] holds new files open
//! while the reader is blocked, so files deleted meanwhile are still read;
//! [`wake`] wakes the reader on file-system events, once per read pass.

pub mod compressed;
pub mod decision;
pub mod globs;
pub mod keeper;
pub mod names;
pub mod seen;
pub mod tailer;
pub mod wake;
pub mod watcher;
