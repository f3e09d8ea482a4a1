//! `tailrace status`: where every file stands, from the checkpoint on disk.
//!
//! It reads the state directory without locking it, so it works while the
//! agent runs (or after it died): per flow and file, the identity, the last
//! path, the checkpointed offset (everything before it was acknowledged by
//! Kinesis), the file's size now and the lag between them; files the globs
//! match that have no checkpoint yet; and whether an agent holds the state
//! directory. Readable by a person, `--json` for scripts.
//!
//! What only the running agent knows — when Kinesis last acknowledged a
//! flow's records and a file's lines, the flow's errors and its last error —
//! comes from the status file the agent rewrites every 2 s next to the
//! checkpoint ([`crate::state::status_file`]). A file, not the HTTP
//! endpoint: it works with the endpoint off (the default) and still tells
//! what the agent last saw after it stopped or died; its age is shown.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use serde::Serialize;

use crate::config::Validated;
use crate::shared::counters::now_ms;
use crate::state::checkpoint;
use crate::state::lock;
use crate::state::status_file::{self, FlowView};
use crate::state::StoreError;

/// A Unix time in ms as RFC 3339 (seconds).
fn rfc3339(ms: u64) -> String {
    tailrace_logformat::rfc3339_utc((ms / 1000) as i64)
}

/// One file's standing.
#[derive(Debug, Serialize)]
pub struct FileStatus {
    /// Flow name.
    pub flow: String,
    /// Last known path (or the path the glob found).
    pub path: PathBuf,
    /// Device number, when checkpointed.
    pub dev: Option<u64>,
    /// Inode number, when checkpointed.
    pub ino: Option<u64>,
    /// Checkpointed offset: every byte before it is acknowledged.
    pub acknowledged: Option<u64>,
    /// Size of the file now (None when it is gone).
    pub size: Option<u64>,
    /// Bytes not yet acknowledged (size − acknowledged).
    pub lag: Option<u64>,
    /// `ok`, `no checkpoint yet`, `gone`, `path now holds another file`.
    pub state: &'static str,
    /// When its acknowledged offset last moved (RFC 3339), from the status file.
    pub last_acknowledged_at: Option<String>,
}

/// One flow's standing, from the agent's status file.
#[derive(Debug, Serialize)]
pub struct FlowStatus {
    /// Flow name.
    pub name: String,
    /// Its stream.
    pub stream: String,
    /// When Kinesis last acknowledged one of its records (RFC 3339).
    pub last_acknowledged_at: Option<String>,
    /// Since when every call fails (RFC 3339).
    pub failing_since: Option<String>,
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
    /// The last Kinesis error.
    pub last_error: Option<String>,
    /// When it happened (RFC 3339).
    pub last_error_at: Option<String>,
    /// Bytes waiting past the checkpoints.
    pub backlog_bytes: u64,
    /// Age of the oldest unacknowledged line, seconds.
    pub oldest_unacknowledged_secs: u64,
    /// Bytes lost since the agent started: files deleted or cut short
    /// before they could be read (the agent's log names each).
    pub bytes_lost: u64,
    /// When bytes were last lost (RFC 3339).
    pub last_loss_at: Option<String>,
}

impl From<FlowView> for FlowStatus {
    fn from(f: FlowView) -> Self {
        FlowStatus {
            name: f.name,
            stream: f.stream,
            last_acknowledged_at: f.last_ack_ms.map(rfc3339),
            failing_since: f.failing_since_ms.map(rfc3339),
            service_errors: f.service_errors,
            transport_errors: f.transport_errors,
            records_throttled: f.records_throttled,
            records_failed: f.records_failed,
            parse_rejects: f.parse_rejects,
            last_error_at: f.last_error.as_ref().map(|(t, _)| rfc3339(*t)),
            last_error: f.last_error.map(|(_, e)| e),
            backlog_bytes: f.backlog_bytes,
            oldest_unacknowledged_secs: f.oldest_unacked_secs,
            bytes_lost: f.bytes_lost,
            last_loss_at: f.last_loss_ms.map(rfc3339),
        }
    }
}

/// The whole report.
#[derive(Debug, Serialize)]
pub struct Status {
    /// The state directory read.
    pub state_dir: PathBuf,
    /// Whether an agent holds it now.
    pub agent_running: bool,
    /// Seconds since the agent last wrote its status file (None: no file).
    pub status_file_age_secs: Option<u64>,
    /// Health problems the agent saw when it last wrote the status file.
    pub problems: Vec<String>,
    /// Per flow, from the status file.
    pub flows: Vec<FlowStatus>,
    /// Per file.
    pub files: Vec<FileStatus>,
}

/// Build the report for `config`.
pub fn collect(config: &Validated) -> Result<Status, StoreError> {
    let state = checkpoint::peek(&config.state_dir)?.unwrap_or_default();
    let live = status_file::read(&config.state_dir);
    let last_ack = |flow: &str, dev: u64, ino: u64| {
        live.as_ref().and_then(|l| {
            l.files
                .iter()
                .find(|f| f.flow == flow && f.dev == dev && f.ino == ino)
                .and_then(|f| f.last_ack_ms)
                .map(rfc3339)
        })
    };
    let mut files = Vec::new();
    let mut known: HashSet<(String, PathBuf)> = HashSet::new();
    for ck in &state.files {
        let meta = std::fs::metadata(&ck.path).ok();
        let same = meta
            .as_ref()
            .is_some_and(|m| m.dev() == ck.key.dev && m.ino() == ck.key.ino);
        let size = meta.as_ref().filter(|_| same).map(|m| m.len());
        let state = match (&meta, same) {
            (None, _) => "gone",
            (Some(_), false) => "path now holds another file",
            (Some(_), true) => "ok",
        };
        known.insert((ck.flow.clone(), ck.path.clone()));
        files.push(FileStatus {
            flow: ck.flow.clone(),
            path: ck.path.clone(),
            dev: Some(ck.key.dev),
            ino: Some(ck.key.ino),
            acknowledged: Some(ck.offset),
            size,
            lag: size.map(|s| s.saturating_sub(ck.offset)),
            state,
            last_acknowledged_at: last_ack(&ck.flow, ck.key.dev, ck.key.ino),
        });
    }
    for flow in &config.flows {
        for pattern in &flow.config.paths.value {
            let Ok(paths) = glob::glob(pattern) else {
                continue;
            };
            for path in paths.filter_map(Result::ok) {
                if known.contains(&(flow.name().to_string(), path.clone())) || !path.is_file() {
                    continue;
                }
                let size = std::fs::metadata(&path).ok().map(|m| m.len());
                files.push(FileStatus {
                    flow: flow.name().to_string(),
                    path,
                    dev: None,
                    ino: None,
                    acknowledged: None,
                    size,
                    lag: None,
                    state: "no checkpoint yet",
                    last_acknowledged_at: None,
                });
            }
        }
    }
    files.sort_by(|a, b| (&a.flow, &a.path).cmp(&(&b.flow, &b.path)));
    let (status_file_age_secs, problems, flows) = match live {
        Some(l) => (
            Some(now_ms().saturating_sub(l.written_ms) / 1000),
            l.problems,
            l.flows.into_iter().map(FlowStatus::from).collect(),
        ),
        None => (None, Vec::new(), Vec::new()),
    };
    Ok(Status {
        state_dir: config.state_dir.clone(),
        agent_running: lock::is_locked(&config.state_dir),
        status_file_age_secs,
        problems,
        flows,
        files,
    })
}

/// Render for a person.
pub fn render(status: &Status) -> String {
    let mut out = format!(
        "state directory {} ({}; {})\n",
        status.state_dir.display(),
        if status.agent_running {
            "an agent is running"
        } else {
            "no agent running"
        },
        match status.status_file_age_secs {
            Some(age) => format!("status file written {age}s ago"),
            None => "no status file".to_string(),
        }
    );
    for p in &status.problems {
        out.push_str(&format!("UNHEALTHY: {p}\n"));
    }
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    for f in &status.flows {
        out.push_str(&format!(
            "flow {} → {}: last acknowledged {}, backlog {} bytes, oldest unacknowledged {}s; errors: service {}, transport {}, throttled {}, failed {}; parse rejects {}\n",
            f.name,
            f.stream,
            dash(&f.last_acknowledged_at),
            f.backlog_bytes,
            f.oldest_unacknowledged_secs,
            f.service_errors,
            f.transport_errors,
            f.records_throttled,
            f.records_failed,
            f.parse_rejects,
        ));
        if f.bytes_lost > 0 {
            out.push_str(&format!(
                "  LOST {} bytes (files deleted or cut short before they could be read; see the log), the last at {}\n",
                f.bytes_lost,
                dash(&f.last_loss_at)
            ));
        }
        if let Some(since) = &f.failing_since {
            out.push_str(&format!("  failing since {since}\n"));
        }
        if let (Some(at), Some(e)) = (&f.last_error_at, &f.last_error) {
            out.push_str(&format!("  last error at {at}: {e}\n"));
        }
    }
    out.push_str(&format!(
        "{:<12} {:>16} {:>14} {:>14} {:>12}  {:<20}  {:<28} {}\n",
        "flow", "identity", "acknowledged", "size", "lag", "last acknowledged", "state", "path"
    ));
    let num = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |n| n.to_string());
    for f in &status.files {
        let identity = match (f.dev, f.ino) {
            (Some(d), Some(i)) => format!("{d}:{i}"),
            _ => "-".into(),
        };
        out.push_str(&format!(
            "{:<12} {:>16} {:>14} {:>14} {:>12}  {:<20}  {:<28} {}\n",
            f.flow,
            identity,
            num(f.acknowledged),
            num(f.size),
            num(f.lag),
            dash(&f.last_acknowledged_at),
            f.state,
            f.path.display()
        ));
    }
    out
}
