//! `tailrace status`: where every file stands, from the checkpoint on disk.
//!
//! It reads the state directory without locking it, so it works while the
//! agent runs (or after it died): per flow and file, the identity, the last
//! path, the checkpointed offset (everything before it was acknowledged by
//! Kinesis), the file's size now and the lag between them; files the globs
//! match that have no checkpoint yet; and whether an agent holds the state
//! directory. Readable by a person, `--json` for scripts.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use serde::Serialize;

use crate::checkpoint::{self, StoreError};
use crate::config::Validated;

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
}

/// The whole report.
#[derive(Debug, Serialize)]
pub struct Status {
    /// The state directory read.
    pub state_dir: PathBuf,
    /// Whether an agent holds it now.
    pub agent_running: bool,
    /// Per file.
    pub files: Vec<FileStatus>,
}

/// Build the report for `config`.
pub fn collect(config: &Validated) -> Result<Status, StoreError> {
    let state = checkpoint::peek(&config.state_dir)?.unwrap_or_default();
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
                });
            }
        }
    }
    files.sort_by(|a, b| (&a.flow, &a.path).cmp(&(&b.flow, &b.path)));
    Ok(Status {
        state_dir: config.state_dir.clone(),
        agent_running: checkpoint::is_locked(&config.state_dir),
        files,
    })
}

/// Render for a person.
pub fn render(status: &Status) -> String {
    let mut out = format!(
        "state directory {} ({})\n",
        status.state_dir.display(),
        if status.agent_running {
            "an agent is running"
        } else {
            "no agent running"
        }
    );
    out.push_str(&format!(
        "{:<12} {:>14} {:>14} {:>12}  {:<28} {}\n",
        "flow", "acknowledged", "size", "lag", "state", "path"
    ));
    let num = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |n| n.to_string());
    for f in &status.files {
        out.push_str(&format!(
            "{:<12} {:>14} {:>14} {:>12}  {:<28} {}\n",
            f.flow,
            num(f.acknowledged),
            num(f.size),
            num(f.lag),
            f.state,
            f.path.display()
        ));
    }
    out
}
