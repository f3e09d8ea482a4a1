//! The pure core: the current file, what EC2 says about instances, and the
//! clock in; the new file and its diff out. No I/O, so every rule below is
//! tested without AWS.
//!
//! Rules (docs/INVENTORY.md says the same for operators):
//! - **Live** instances (pending, running, stopping, stopped: a stopped VPC
//!   instance keeps its private addresses) with an owner get one row per
//!   private IPv4 and IPv6 address, rewritten from their tags on every run.
//! - **Gone** (shutting-down or terminated, or an address that left a live
//!   instance, or, on a full reconcile, an instance EC2 no longer lists):
//!   the row stays, unchanged, for the grace period, counted from when it was
//!   first seen gone, so the instance's last lines are still attributed;
//!   then it is removed.
//! - **Address reuse**: a live instance's row replaces any gone row for the
//!   same address at once (the new owner wins from its launch). Two live
//!   instances claiming one address: the later launch wins, a conflict.
//! - **Precedence over people's rows**: a hand-written row for exactly the
//!   same address or block wins and the updater's row is not written (a
//!   conflict); otherwise the longest prefix wins as always, so an
//!   instance's /32 inside a hand-written /16 names that instance.
//! - A partial observation (one event) touches only the instances it names;
//!   a complete one (reconcile) also retires rows of instances it lacks.
//! - The file is judged by the aggregator's parser ([`Validator`]) before it
//!   is written: errors in people's rows stop the update (the last good file
//!   stays); an updater row the parser refuses is dropped as a conflict.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use crate::owner::Owner;
use crate::section::{self, ManagedRow, SectionError};

/// Default termination grace: longer than the default 5-minute window plus
/// the agent's default lateness and shipping retries.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(30 * 60);

/// A complaint of the metadata parser: 1-based row, reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    /// 1-based line.
    pub row: usize,
    /// What is wrong.
    pub reason: String,
}

/// The metadata parser, as a function: the aggregator passes
/// `Metadata::parse`'s errors (see the crate doc for why it is passed in).
/// `Sync`, so an update can run on any thread of a multi-threaded runtime.
pub type Validator<'a> = &'a (dyn Fn(&str) -> Vec<FileError> + Sync);

/// What EC2 says about one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// Instance id.
    pub id: String,
    /// Private IPv4 and IPv6 addresses of all its network interfaces.
    pub addresses: Vec<IpAddr>,
    /// Its owner; `None` when nothing names one (not listed).
    pub owner: Option<Owner>,
    /// Launch time, if known (breaks ties between claims on one address).
    pub launched_at: Option<SystemTime>,
    /// Live or gone.
    pub state: State,
}

/// Whether an instance can still send traffic from its addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Pending, running, stopping or stopped.
    Live,
    /// Shutting down or terminated, since when if known.
    Gone(Option<SystemTime>),
}

/// What one run knows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observation {
    /// The instances looked up.
    pub instances: Vec<Instance>,
    /// True when `instances` is every instance in the account and region
    /// (a reconcile): rows of instances not in it are retired.
    pub complete: bool,
}

/// One row in the diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowChange {
    /// The address.
    pub address: IpAddr,
    /// The instance.
    pub instance: String,
    /// The CSV line (the new one for added and changed rows).
    pub line: String,
}

/// A row the updater did not write, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The address.
    pub address: IpAddr,
    /// The instance whose row was not written.
    pub instance: String,
    /// Why.
    pub reason: String,
}

/// What changed between the old and the new file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    /// Rows for addresses that had none.
    pub added: Vec<RowChange>,
    /// Rows removed (grace over, or displaced by a people's row).
    pub removed: Vec<RowChange>,
    /// Rows whose line or instance changed (tags edited, address reused).
    pub changed: Vec<RowChange>,
    /// Rows that entered their grace period in this run.
    pub retiring: Vec<RowChange>,
    /// Rows not written.
    pub conflicts: Vec<Conflict>,
    /// Instances not listed (no owner, or no address), for the log.
    pub unlisted: Vec<(String, String)>,
    /// Lines of the updater's section that were not understood and dropped.
    pub ignored: Vec<(usize, String)>,
}

impl Diff {
    /// True when the file's rows do not change.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.changed.is_empty()
            && self.retiring.is_empty()
    }
}

impl std::fmt::Display for Diff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for c in &self.added {
            writeln!(f, "+ {}    # {}", c.line, c.instance)?;
        }
        for c in &self.changed {
            writeln!(f, "~ {}    # {}", c.line, c.instance)?;
        }
        for c in &self.retiring {
            writeln!(
                f,
                "… {}    # {} gone, kept for the grace period",
                c.line, c.instance
            )?;
        }
        for c in &self.removed {
            writeln!(f, "- {}    # {}", c.line, c.instance)?;
        }
        for c in &self.conflicts {
            writeln!(f, "! {} ({}): {}", c.address, c.instance, c.reason)?;
        }
        for (id, why) in &self.unlisted {
            writeln!(f, "? {id}: {why}")?;
        }
        for (line, why) in &self.ignored {
            writeln!(f, "? section line {line} dropped: {why}")?;
        }
        write!(
            f,
            "{} added, {} changed, {} retiring, {} removed, {} conflicts",
            self.added.len(),
            self.changed.len(),
            self.retiring.len(),
            self.removed.len(),
            self.conflicts.len()
        )
    }
}

/// The new file and how it differs from the old.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The whole new file.
    pub text: String,
    /// The diff of the updater's rows.
    pub diff: Diff,
    /// True when `text` differs from the current file (a write is needed).
    pub write: bool,
}

/// Why no new file can be made: the current one must be fixed by a person.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The section markers are broken.
    #[error("the metadata file's inventory section: {0}")]
    Section(#[from] SectionError),
    /// People's rows have errors: the aggregator would refuse the file.
    #[error("the metadata file has {} wrong row(s) outside the inventory section; fix them, the file is left as it is: {}", .0.len(), .0.iter().map(|e| format!("row {}: {}", e.row, e.reason)).collect::<Vec<_>>().join("; "))]
    InvalidFile(Vec<FileError>),
}

/// Make the new file. `current` is `None` when there is no file yet.
pub fn plan(
    current: Option<&str>,
    obs: &Observation,
    now: SystemTime,
    grace: Duration,
    validate: Validator<'_>,
) -> Result<Plan, PlanError> {
    let parts = section::split(current.unwrap_or(section::NEW_FILE_HEAD))?;
    if let Some(text) = current {
        let in_section = |row: usize| parts.lines.is_some_and(|(a, b)| row >= a && row <= b);
        let bad: Vec<FileError> = validate(text)
            .into_iter()
            .filter(|e| !in_section(e.row))
            .collect();
        if !bad.is_empty() {
            return Err(PlanError::InvalidFile(bad));
        }
    }
    let mut diff = Diff {
        ignored: parts.ignored.clone(),
        ..Diff::default()
    };

    // Claims of live instances, by address; the later launch wins.
    let mut live: BTreeMap<IpAddr, (&Instance, &Owner)> = BTreeMap::new();
    let mut live_ids: HashSet<&str> = HashSet::new();
    let mut gone: HashMap<&str, Option<SystemTime>> = HashMap::new();
    for inst in &obs.instances {
        match inst.state {
            State::Gone(at) => {
                gone.insert(&inst.id, at);
                continue;
            }
            State::Live => {
                live_ids.insert(&inst.id);
            }
        }
        let Some(owner) = &inst.owner else {
            diff.unlisted.push((
                inst.id.clone(),
                "no application tag and no Auto Scaling group".into(),
            ));
            continue;
        };
        if inst.addresses.is_empty() {
            diff.unlisted
                .push((inst.id.clone(), "no private address".into()));
            continue;
        }
        for &addr in &inst.addresses {
            match live.get(&addr) {
                Some((other, _))
                    if (other.launched_at, &other.id) >= (inst.launched_at, &inst.id) =>
                {
                    diff.conflicts.push(Conflict {
                        address: addr,
                        instance: inst.id.clone(),
                        reason: format!("{} claims the same address and launched later", other.id),
                    });
                }
                Some((other, _)) => {
                    diff.conflicts.push(Conflict {
                        address: addr,
                        instance: other.id.clone(),
                        reason: format!("{} claims the same address and launched later", inst.id),
                    });
                    live.insert(addr, (inst, owner));
                }
                None => {
                    live.insert(addr, (inst, owner));
                }
            }
        }
    }

    // The old rows by address (the first one wins if a person duplicated one).
    let mut old: BTreeMap<IpAddr, &ManagedRow> = BTreeMap::new();
    for r in &parts.rows {
        old.entry(r.address).or_insert(r);
    }

    let mut rows: BTreeMap<IpAddr, ManagedRow> = BTreeMap::new();
    for (&addr, r) in &old {
        if live.contains_key(&addr) {
            continue; // replaced below
        }
        let seen_gone = if let Some(at) = gone.get(r.instance.as_str()) {
            Some(at.unwrap_or(now))
        } else if live_ids.contains(r.instance.as_str()) || obs.complete {
            // The address left a live instance (or its tags did), or a
            // reconcile no longer finds the instance.
            Some(now)
        } else {
            None
        };
        let gone_since = r.gone_since.or(seen_gone);
        let change = RowChange {
            address: addr,
            instance: r.instance.clone(),
            line: r.line.clone(),
        };
        match gone_since {
            Some(t) if now.duration_since(t).unwrap_or_default() >= grace => {
                diff.removed.push(change);
            }
            _ => {
                if r.gone_since.is_none() && gone_since.is_some() {
                    diff.retiring.push(change);
                }
                rows.insert(
                    addr,
                    ManagedRow {
                        gone_since,
                        ..(*r).clone()
                    },
                );
            }
        }
    }
    for (&addr, (inst, owner)) in &live {
        let line = section::csv_row(addr, &owner.application, &owner.contact);
        let change = RowChange {
            address: addr,
            instance: inst.id.clone(),
            line: line.clone(),
        };
        match old.get(&addr) {
            None => diff.added.push(change),
            Some(o) if o.line != line || o.instance != inst.id || o.gone_since.is_some() => {
                diff.changed.push(change)
            }
            Some(_) => {}
        }
        rows.insert(
            addr,
            ManagedRow {
                instance: inst.id.clone(),
                address: addr,
                gone_since: None,
                line,
            },
        );
    }

    // The aggregator's parser judges the result; rows it refuses go.
    let mut rows: Vec<ManagedRow> = rows.into_values().collect();
    loop {
        let (text, row_lines) = section::render(&parts.before, &rows, &parts.after);
        let errors = validate(&text);
        if errors.is_empty() {
            let write = current != Some(text.as_str());
            return Ok(Plan { text, diff, write });
        }
        let refused: HashMap<usize, String> =
            errors.into_iter().map(|e| (e.row, e.reason)).collect();
        let before = rows.len();
        let mut kept = Vec::with_capacity(rows.len());
        for (r, line) in rows.into_iter().zip(row_lines) {
            match refused.get(&line) {
                Some(reason) => {
                    let was = |c: &RowChange| c.address != r.address;
                    let existed = old.contains_key(&r.address);
                    diff.added.retain(was);
                    diff.changed.retain(was);
                    diff.retiring.retain(was);
                    if existed {
                        diff.removed.push(RowChange {
                            address: r.address,
                            instance: r.instance.clone(),
                            line: r.line.clone(),
                        });
                    }
                    diff.conflicts.push(Conflict {
                        address: r.address,
                        instance: r.instance,
                        reason: reason.clone(),
                    });
                }
                None => kept.push(r),
            }
        }
        if kept.len() == before {
            // The parser complains about something that is not our row:
            // people's text that was fine alone (cannot happen with a
            // line-based parser, but never write a file it refuses).
            let (text, _) = section::render(&parts.before, &kept, &parts.after);
            return Err(PlanError::InvalidFile(validate(&text)));
        }
        rows = kept;
    }
}
