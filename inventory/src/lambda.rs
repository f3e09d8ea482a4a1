//! The Lambda handler: one EventBridge event (an Auto Scaling or EC2 state
//! change, or the schedule) → one update of the file, its diff logged line by
//! line and published as metrics in CloudWatch's embedded metric format (a
//! JSON line on stdout: no API call, no extra permission).
//!
//! A malformed event or a file a person must fix is logged and answered
//! with success (retrying would not help; the last good file stays). S3, EC2
//! or Auto Scaling failing is an error, so Lambda retries the event.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::ec2::{Ec2Error, Fleet};
use crate::event::{self, Trigger};
use crate::plan::{Diff, Instance, Observation, State, Validator};
use crate::store::Location;
use crate::sync::{self, Options, Outcome, SyncError};

/// Default CloudWatch namespace of the updater's metrics.
pub const DEFAULT_NAMESPACE: &str = "Tailrace";

/// Everything the handler needs, built once per Lambda environment.
#[derive(Debug, Clone)]
pub struct Updater {
    /// S3 client.
    pub s3: aws_sdk_s3::Client,
    /// EC2 and Auto Scaling.
    pub fleet: Fleet,
    /// The file.
    pub location: Location,
    /// Grace, backoff.
    pub options: Options,
    /// Namespace of the embedded metrics.
    pub namespace: String,
}

/// The handler failed in a way a retry may fix.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// EC2 or Auto Scaling.
    #[error(transparent)]
    Fleet(#[from] Ec2Error),
    /// S3, or every write lost its race.
    #[error(transparent)]
    Sync(SyncError),
}

/// What EC2 says for one trigger.
pub async fn observe(fleet: &Fleet, trigger: &Trigger) -> Result<Observation, Ec2Error> {
    let (ids, complete): (Vec<String>, bool) = match trigger {
        Trigger::Reconcile => (vec![], true),
        Trigger::Lookup { instance } => (vec![instance.clone()], false),
        Trigger::Gone { instance, at } => {
            return Ok(Observation {
                instances: vec![Instance {
                    id: instance.clone(),
                    addresses: vec![],
                    owner: None,
                    launched_at: None,
                    state: State::Gone(*at),
                }],
                complete: false,
            })
        }
    };
    let read = fleet.instances(&ids).await?;
    for r in &read {
        if r.sanitized {
            if let Some(o) = &r.instance.owner {
                tracing::warn!(instance = %r.instance.id, application = %o.application,
                    "the application tag is not a valid CloudWatch dimension value; written sanitized");
            }
        }
    }
    Ok(Observation {
        instances: read.into_iter().map(|r| r.instance).collect(),
        complete,
    })
}

/// Handle one event.
pub async fn handle(
    updater: &Updater,
    event: &Value,
    validate: Validator<'_>,
) -> Result<Value, HandlerError> {
    let trigger = match event::parse(event) {
        Ok(t) => t,
        Err(e) => {
            let mut shown = event.to_string();
            if shown.len() > 2048 {
                let mut cut = 2048;
                while !shown.is_char_boundary(cut) {
                    cut -= 1;
                }
                shown.truncate(cut);
            }
            tracing::error!(error = %e, event = %shown, "ignoring an event");
            return Ok(json!({ "ignored": e.to_string() }));
        }
    };
    let kind = match trigger {
        Trigger::Reconcile => "reconcile",
        _ => "event",
    };
    let obs = observe(&updater.fleet, &trigger).await?;
    match sync::apply(
        &updater.s3,
        &updater.location,
        &obs,
        &updater.options,
        validate,
    )
    .await
    {
        Ok(outcome) => {
            log_outcome(&updater.location, &outcome);
            println!(
                "{}",
                emf(
                    &updater.namespace,
                    kind,
                    &outcome.diff,
                    outcome.lost_races,
                    0,
                    now_ms()
                )
            );
            Ok(summary(&outcome))
        }
        Err(e @ SyncError::Plan { .. }) => {
            tracing::error!(error = %e, "the metadata file was not updated");
            println!(
                "{}",
                emf(&updater.namespace, kind, &Diff::default(), 0, 1, now_ms())
            );
            Ok(json!({ "invalidFile": e.to_string() }))
        }
        Err(e) => Err(HandlerError::Sync(e)),
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Log every line of the diff.
pub fn log_outcome(at: &Location, outcome: &Outcome) {
    let d = &outcome.diff;
    for c in &d.added {
        tracing::info!(%at, instance = %c.instance, row = %c.line, "row added");
    }
    for c in &d.changed {
        tracing::info!(%at, instance = %c.instance, row = %c.line, "row changed");
    }
    for c in &d.retiring {
        tracing::info!(%at, instance = %c.instance, row = %c.line, "instance gone: row kept for the grace period");
    }
    for c in &d.removed {
        tracing::info!(%at, instance = %c.instance, row = %c.line, "row removed");
    }
    for c in &d.conflicts {
        tracing::warn!(%at, instance = %c.instance, address = %c.address, reason = %c.reason, "row not written");
    }
    for (id, why) in &d.unlisted {
        tracing::warn!(%at, instance = %id, reason = %why, "instance not listed");
    }
    for (line, why) in &d.ignored {
        tracing::warn!(%at, line, reason = %why, "line of the inventory section dropped");
    }
    tracing::info!(%at, written = outcome.written, lost_races = outcome.lost_races,
        added = d.added.len(), changed = d.changed.len(), retiring = d.retiring.len(),
        removed = d.removed.len(), conflicts = d.conflicts.len(), "inventory updated");
}

/// The handler's answer.
pub fn summary(outcome: &Outcome) -> Value {
    let d = &outcome.diff;
    json!({
        "written": outcome.written,
        "lostRaces": outcome.lost_races,
        "added": d.added.len(),
        "changed": d.changed.len(),
        "retiring": d.retiring.len(),
        "removed": d.removed.len(),
        "conflicts": d.conflicts.len(),
    })
}

/// One embedded-metric-format line with the diff's counts, dimension
/// `Trigger` (`event` or `reconcile`).
pub fn emf(
    namespace: &str,
    trigger: &str,
    d: &Diff,
    lost_races: u32,
    invalid_file: u32,
    ts_ms: u64,
) -> Value {
    let names = [
        "InventoryRowsAdded",
        "InventoryRowsChanged",
        "InventoryRowsRemoved",
        "InventoryConflicts",
        "InventoryLostRaces",
        "InventoryInvalidFile",
    ];
    let values = [
        d.added.len() as u64,
        d.changed.len() as u64,
        d.removed.len() as u64,
        d.conflicts.len() as u64,
        u64::from(lost_races),
        u64::from(invalid_file),
    ];
    let mut doc = json!({
        "_aws": {
            "Timestamp": ts_ms,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [["Trigger"]],
                "Metrics": names.iter().map(|n| json!({"Name": n, "Unit": "Count"})).collect::<Vec<_>>(),
            }]
        },
        "Trigger": trigger,
    });
    for (n, v) in names.iter().zip(values) {
        doc[*n] = json!(v);
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::RowChange;

    #[test]
    fn emf_carries_the_counts() {
        let row = RowChange {
            address: "10.0.0.1".parse().expect("ip"),
            instance: "i-1".into(),
            line: "10.0.0.1,a,".into(),
        };
        let d = Diff {
            added: vec![row.clone(), row.clone()],
            removed: vec![row],
            ..Diff::default()
        };
        let v = emf("Tailrace", "reconcile", &d, 3, 0, 1_000);
        assert_eq!(v["InventoryRowsAdded"], 2);
        assert_eq!(v["InventoryRowsRemoved"], 1);
        assert_eq!(v["InventoryLostRaces"], 3);
        assert_eq!(v["Trigger"], "reconcile");
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Namespace"], "Tailrace");
        let metrics = v["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .expect("metrics");
        for m in metrics {
            let name = m["Name"].as_str().expect("name");
            assert!(v[name].is_u64(), "{name} has a value");
        }
    }
}
