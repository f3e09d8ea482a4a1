//! `tailrace check --live`: a host's preflight, before the agent starts (or
//! beside a running one). Beyond the config file's own check it looks at
//! what the agent would meet:
//! - AWS: the credentials resolve, and `DescribeStreamSummary` answers for
//!   every stream (it exists, is usable, the credentials may see it);
//! - the state directory can be written by the service user;
//! - each glob's directories can be listed and its files read by the
//!   service user (permission bits and groups of `/etc/passwd` and
//!   `/etc/group`; ACLs and capabilities are not evaluated);
//! - which files each flow would read now and from where (offset and the
//!   rule that decided, as the agent's own start would: the same tailer,
//!   the checkpoint on disk, nothing written);
//! - flows that read the same file (each reads it whole), and globs that
//!   match one file under several names (it is read once).
//!
//! Anything that would stop shipping is a *problem* (exit status 1); the
//! rest are notes and warnings.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_credential_types::provider::ProvideCredentials;

use crate::config::{Flow, Validated};
use crate::shared::identity::FileKey;
use crate::shared::ledger::Ledger;

/// How long one AWS call of the preflight may take.
const CALL_BUDGET: Duration = Duration::from_secs(20);

/// What the preflight found.
#[derive(Debug, Default)]
pub struct Report {
    /// What was checked and how it stands, in order.
    pub lines: Vec<String>,
    /// What would stop shipping.
    pub problems: Vec<String>,
}

impl Report {
    fn say(&mut self, line: String) {
        self.lines.push(line);
    }

    fn problem(&mut self, what: String) {
        self.lines.push(format!("  PROBLEM: {what}"));
        self.problems.push(what);
    }

    /// The report for a person, ending with the verdict.
    pub fn render(&self) -> String {
        let mut out = self.lines.join("\n");
        out.push('\n');
        if self.problems.is_empty() {
            out.push_str("live check: nothing found that would stop shipping\n");
        } else {
            out.push_str(&format!(
                "live check: {} problem{} would stop shipping\n",
                self.problems.len(),
                if self.problems.len() == 1 { "" } else { "s" }
            ));
        }
        out
    }
}

/// Run the live checks of `config` as the service user `user` (by default
/// `tailrace` when it exists and this runs as root, else whoever runs it).
pub async fn live(config: &Validated, user: Option<&str>) -> Report {
    let mut r = Report::default();
    r.say("live checks:".to_string());
    aws(config, &mut r).await;
    let reader = match Reader::resolve(user) {
        Ok(reader) => reader,
        Err(e) => {
            r.problem(e);
            return r;
        }
    };
    r.say(format!(
        "  files and the state directory checked {}",
        reader.who()
    ));
    state_dir(config, &reader, &mut r);
    flows(config, &reader, &mut r);
    r
}

/// Credentials, and every stream.
async fn aws(config: &Validated, r: &mut Report) {
    let sdk = crate::runtime::aws::sdk_config(&config.aws).await;
    match sdk.credentials_provider() {
        None => r.problem("AWS credentials: no credentials provider is configured".to_string()),
        Some(provider) => {
            match tokio::time::timeout(CALL_BUDGET, provider.provide_credentials()).await {
                Ok(Ok(creds)) => {
                    let id: Vec<char> = creds.access_key_id().chars().collect();
                    let tail: String = id[id.len().saturating_sub(4)..].iter().collect();
                    r.say(format!("  AWS credentials: found (access key …{tail})"));
                }
                Ok(Err(e)) => r.problem(format!(
                    "AWS credentials: {}",
                    aws_sdk_kinesis::error::DisplayErrorContext(&e)
                )),
                Err(_) => r.problem(format!(
                    "AWS credentials: not resolved within {}s",
                    CALL_BUDGET.as_secs()
                )),
            }
        }
    }
    let client = aws_sdk_kinesis::Client::new(&sdk);
    let mut streams: Vec<&str> = config
        .flows
        .iter()
        .map(|f| f.config.stream.as_str())
        .collect();
    streams.sort_unstable();
    streams.dedup();
    for stream in streams {
        let call = client.describe_stream_summary();
        let call = if stream.starts_with("arn:") {
            call.stream_arn(stream)
        } else {
            call.stream_name(stream)
        };
        match tokio::time::timeout(CALL_BUDGET, call.send()).await {
            Ok(Ok(out)) => match out.stream_description_summary() {
                Some(s) => {
                    let status = s.stream_status().as_str();
                    let line = format!(
                        "stream {stream}: {status}, {} open shard{}",
                        s.open_shard_count(),
                        if s.open_shard_count() == 1 { "" } else { "s" }
                    );
                    if matches!(status, "ACTIVE" | "UPDATING") {
                        r.say(format!("  {line}"));
                    } else {
                        r.problem(format!("{line}: records cannot be put on it now"));
                    }
                }
                None => r.problem(format!("stream {stream}: Kinesis described nothing")),
            },
            Ok(Err(e)) => r.problem(format!(
                "stream {stream}: DescribeStreamSummary failed: {}",
                aws_sdk_kinesis::error::DisplayErrorContext(&e)
            )),
            Err(_) => r.problem(format!(
                "stream {stream}: DescribeStreamSummary did not answer within {}s",
                CALL_BUDGET.as_secs()
            )),
        }
    }
}

/// The state directory: writable (or creatable) by the service user.
fn state_dir(config: &Validated, reader: &Reader, r: &mut Report) {
    let dir = &config.state_dir;
    let (target, what) = if dir.is_dir() {
        (dir.clone(), "writable")
    } else {
        let parent = dir
            .ancestors()
            .skip(1)
            .find(|p| p.is_dir())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("/"));
        (parent, "can be created")
    };
    match reader.can_write_dir(&target) {
        Ok(()) => r.say(format!("  state directory {}: {what}", dir.display())),
        Err(e) => r.problem(format!(
            "state directory {}: {} cannot write {}: {e}",
            dir.display(),
            reader.name(),
            target.display()
        )),
    }
}

/// Per flow: globs, readable files, where each file would be read from;
/// then the files several flows read, and files with several names.
fn flows(config: &Validated, reader: &Reader, r: &mut Report) {
    let state = crate::state::checkpoint::peek(&config.state_dir)
        .ok()
        .flatten()
        .unwrap_or_default();
    let down_since = std::fs::metadata(config.state_dir.join("checkpoints.json"))
        .and_then(|m| m.modified())
        .ok();
    let ledger = Ledger::new();
    crate::runtime::flows::restore(&ledger, &state, config);
    let mut readers: BTreeMap<FileKey, (PathBuf, Vec<String>)> = BTreeMap::new();
    for flow in &config.flows {
        r.say(format!("  flow {}:", flow.name()));
        for problem in globs_problems(flow) {
            r.problem(format!("flow {}: {problem}", flow.name()));
        }
        let (checkpoints, ran_before) = state.of_flow(flow.name());
        let mut tailer =
            crate::runtime::flows::flow_tailer(flow, &ledger, checkpoints, ran_before, down_since);
        tailer.discover();
        let planned = tailer.planned();
        if planned.is_empty() {
            r.say("    no file matches its globs now".to_string());
        }
        for (path, offset, why) in planned {
            match offset {
                Some(o) => r.say(format!("    {}: from {o} ({why})", path.display())),
                None => r.say(format!("    {}: waits ({why})", path.display())),
            }
            if let Err(e) = reader.can_read(&path) {
                r.problem(format!(
                    "flow {}: {}: {} cannot read it: {e}",
                    flow.name(),
                    path.display(),
                    reader.name()
                ));
            }
            if let Ok(m) = std::fs::metadata(&path) {
                let key = FileKey {
                    dev: m.dev(),
                    ino: m.ino(),
                };
                readers
                    .entry(key)
                    .or_insert_with(|| (path.clone(), Vec::new()))
                    .1
                    .push(flow.name().to_string());
            }
        }
        for names in several_names(flow) {
            let shown: Vec<String> = names.iter().map(|p| p.display().to_string()).collect();
            let chosen = crate::read::names::choose(&names, None);
            r.say(format!(
                "    note: same file under {} names: {}; read once, as {}",
                names.len(),
                shown.join(" and "),
                chosen.display()
            ));
        }
    }
    for (path, flows) in readers.values() {
        if flows.len() > 1 {
            r.say(format!(
                "  warning: flows {} {} read {} (each reads it whole and ships its lines: intended?)",
                flows.join(" and "),
                if flows.len() == 2 { "both" } else { "all" },
                path.display()
            ));
        }
    }
}

/// Directories a flow's globs cannot list.
fn globs_problems(flow: &Flow) -> Vec<String> {
    let mut out = Vec::new();
    for pattern in &flow.config.paths.value {
        for problem in crate::read::globs::probe(pattern) {
            out.push(format!("`{pattern}` cannot be expanded: {problem}"));
        }
    }
    out
}

/// The files a flow's globs match under more than one name (links).
fn several_names(flow: &Flow) -> Vec<Vec<PathBuf>> {
    let mut found = Vec::new();
    for pattern in &flow.config.paths.value {
        crate::read::globs::expand(pattern, &mut found);
    }
    let exclude: Vec<glob::Pattern> = flow
        .config
        .exclude
        .iter()
        .filter_map(|p| glob::Pattern::new(p).ok())
        .collect();
    found.retain(|p| {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        !exclude.iter().any(|e| e.matches(&name))
    });
    found.sort();
    found.dedup();
    crate::read::names::group(&found)
        .into_iter()
        .filter(|f| f.names.len() > 1)
        .map(|f| f.names)
        .collect()
}

/// Who the checks are made for.
#[derive(Debug)]
enum Reader {
    /// Whoever runs the check: files are opened.
    Myself,
    /// A user by its ids: permission bits are evaluated.
    User {
        name: String,
        uid: u32,
        gids: Vec<u32>,
    },
}

impl Reader {
    /// `user`, or `tailrace` (the unit's `User=`) when it exists and this
    /// runs as root, else whoever runs this.
    fn resolve(user: Option<&str>) -> Result<Reader, String> {
        let name = match user {
            Some(u) => u.to_string(),
            None if euid() == Some(0) && lookup("tailrace").is_some() => "tailrace".to_string(),
            None => return Ok(Reader::Myself),
        };
        let (uid, gids) = lookup(&name).ok_or_else(|| {
            format!("user {name}: not in /etc/passwd (give the service user with --user)")
        })?;
        Ok(Reader::User { name, uid, gids })
    }

    fn name(&self) -> String {
        match self {
            Reader::Myself => "this user".to_string(),
            Reader::User { name, .. } => format!("user {name}"),
        }
    }

    fn who(&self) -> String {
        match self {
            Reader::Myself => {
                "as the user running this check (run it as the service user, or as root with --user)".to_string()
            }
            Reader::User { name, .. } => format!(
                "for user {name} (permission bits and groups; ACLs and capabilities not evaluated)"
            ),
        }
    }

    fn can_read(&self, path: &Path) -> Result<(), String> {
        match self {
            Reader::Myself => std::fs::File::open(path)
                .map(drop)
                .map_err(|e| e.to_string()),
            Reader::User { .. } => self.may(path, 4),
        }
    }

    fn can_write_dir(&self, dir: &Path) -> Result<(), String> {
        match self {
            Reader::Myself => {
                let probe = dir.join(format!(".tailrace-check-{}", std::process::id()));
                std::fs::File::create(&probe).map_err(|e| e.to_string())?;
                std::fs::remove_file(&probe).map_err(|e| e.to_string())
            }
            Reader::User { .. } => self.may(dir, 3),
        }
    }

    /// The user may reach `path` and has the permission bits `want` on it.
    fn may(&self, path: &Path, want: u32) -> Result<(), String> {
        let Reader::User { uid, gids, .. } = self else {
            return Ok(());
        };
        self.can_reach(path)?;
        let m = std::fs::metadata(path).map_err(|e| e.to_string())?;
        allowed(&m, *uid, gids, want).then_some(()).ok_or_else(|| {
            format!(
                "mode {:o}, owner {}:{}",
                m.mode() & 0o7777,
                m.uid(),
                m.gid()
            )
        })
    }

    /// Every directory above `path` can be searched.
    fn can_reach(&self, path: &Path) -> Result<(), String> {
        let Reader::User { uid, gids, .. } = self else {
            return Ok(());
        };
        let real = std::fs::canonicalize(path).map_err(|e| e.to_string())?;
        for dir in real.ancestors().skip(1) {
            let m = std::fs::metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            if !allowed(&m, *uid, gids, 1) {
                return Err(format!(
                    "cannot enter {} (mode {:o}, owner {}:{})",
                    dir.display(),
                    m.mode() & 0o7777,
                    m.uid(),
                    m.gid()
                ));
            }
        }
        Ok(())
    }
}

/// Whether the permission bits of `m` give `uid` (with groups `gids`) all
/// of `want` (4 read, 2 write, 1 search/execute). Root may do anything but
/// execute a file no one may.
fn allowed(m: &std::fs::Metadata, uid: u32, gids: &[u32], want: u32) -> bool {
    if uid == 0 {
        return true;
    }
    let mode = m.mode();
    let bits = if m.uid() == uid {
        (mode >> 6) & 7
    } else if gids.contains(&m.gid()) {
        (mode >> 3) & 7
    } else {
        mode & 7
    };
    bits & want == want
}

/// The effective user id of this process.
fn euid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// `name`'s uid and groups (its primary group and those that list it),
/// from `/etc/passwd` and `/etc/group`.
fn lookup(name: &str) -> Option<(u32, Vec<u32>)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let fields: Vec<&str> = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&name))?;
    let uid = fields.get(2)?.parse().ok()?;
    let gid: u32 = fields.get(3)?.parse().ok()?;
    let mut gids = vec![gid];
    if let Ok(groups) = std::fs::read_to_string("/etc/group") {
        for l in groups.lines() {
            let f: Vec<&str> = l.split(':').collect();
            if f.get(3).is_some_and(|m| m.split(',').any(|u| u == name)) {
                if let Some(g) = f.get(2).and_then(|g| g.parse().ok()) {
                    gids.push(g);
                }
            }
        }
    }
    Some((uid, gids))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_bits_for_another_user() -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("tailrace-preflight-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let f = dir.join("a.log");
        std::fs::write(&f, b"x\n")?;
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640))?;
        let m = std::fs::metadata(&f)?;
        let (owner, group) = (m.uid(), m.gid());
        assert!(allowed(&m, owner, &[], 4), "the owner reads");
        assert!(!allowed(&m, owner + 1, &[], 4), "others do not");
        assert!(allowed(&m, owner + 1, &[group], 4), "the group reads");
        assert!(
            !allowed(&m, owner + 1, &[group], 2),
            "the group does not write"
        );
        assert!(allowed(&m, 0, &[], 6), "root does");
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }

    #[test]
    fn users_and_their_groups_come_from_etc() {
        let (uid, gids) = lookup("root").unwrap_or((u32::MAX, Vec::new()));
        assert_eq!(uid, 0);
        assert!(gids.contains(&0));
        assert!(lookup("no-such-user-here").is_none());
    }
}
