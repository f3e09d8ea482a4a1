//! The status file, `<state_dir>/status.json`: what the running agent last
//! saw of its flows and files, for `tailrace status` (which reads it without
//! locking, from another process). Rewritten every two seconds by the monitor
//! ([`crate::observe::registry::run`]), atomically but without fsync: it only
//! informs, and the next write replaces it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{write_atomic, Durability, StoreError};

/// Name of the status file in the state directory.
pub const FILE_NAME: &str = "status.json";

/// One file as the sampler last saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileView {
    /// Flow reading it.
    pub flow: String,
    /// Last known path.
    pub path: PathBuf,
    /// Device number.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Acknowledged offset (what the next checkpoint holds).
    pub acknowledged: u64,
    /// Size now; `None` when the path no longer leads to this file.
    pub size: Option<u64>,
    /// When the acknowledged offset last moved (Unix ms), since the agent started.
    pub last_ack_ms: Option<u64>,
}

/// One flow in the status file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowView {
    /// Flow name.
    pub name: String,
    /// Its stream.
    pub stream: String,
    /// Lines read.
    pub lines_read: u64,
    /// Records acknowledged.
    pub records_sent: u64,
    /// When Kinesis last acknowledged a record (Unix ms).
    pub last_ack_ms: Option<u64>,
    /// Since when every call fails (Unix ms).
    pub failing_since_ms: Option<u64>,
    /// PutRecords calls answered with an error.
    pub service_errors: u64,
    /// PutRecords calls without an answer.
    pub transport_errors: u64,
    /// Records refused as throttled.
    pub records_throttled: u64,
    /// Records refused for another reason.
    pub records_failed: u64,
    /// Lines that did not match the format.
    pub parse_rejects: u64,
    /// The last Kinesis error and when (Unix ms).
    pub last_error: Option<(u64, String)>,
    /// Bytes waiting past the checkpoints.
    pub backlog_bytes: u64,
    /// Age of the oldest unacknowledged line, seconds.
    pub oldest_unacked_secs: u64,
    /// Bytes lost since the agent started (files deleted or cut short
    /// before they could be read).
    #[serde(default)]
    pub bytes_lost: u64,
    /// When bytes were last lost (Unix ms).
    #[serde(default)]
    pub last_loss_ms: Option<u64>,
}

/// The status file's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusFile {
    /// When it was written (Unix ms).
    pub written_ms: u64,
    /// The agent's process id.
    pub pid: u32,
    /// Health problems at that time (empty: healthy).
    pub problems: Vec<String>,
    /// Per flow.
    pub flows: Vec<FlowView>,
    /// Per file.
    pub files: Vec<FileView>,
}

/// Read the status file of `state_dir`, if there is a readable one.
pub fn read(state_dir: &Path) -> Option<StatusFile> {
    let bytes = std::fs::read(state_dir.join(FILE_NAME)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Write the status file atomically (no fsync: see the module comment).
pub fn write(state_dir: &Path, status: &StatusFile) -> Result<(), StoreError> {
    let path = state_dir.join(FILE_NAME);
    let body = serde_json::to_vec_pretty(status)
        .map_err(|e| StoreError::io(&path, std::io::Error::other(e)))?;
    write_atomic(state_dir, FILE_NAME, &body, None, Durability::Unsynced)
}
