//! EventBridge events → what the updater must look up.
//!
//! | source | detail-type | action |
//! |---|---|---|
//! | `aws.autoscaling` | `EC2 Instance Launch Successful`, `EC2 Instance-launch Lifecycle Action` | look the instance up (listed from launch) |
//! | `aws.autoscaling` | `EC2 Instance Terminate Successful` | the instance is gone since the event's time |
//! | `aws.autoscaling` | `EC2 Instance-terminate Lifecycle Action` | look it up: it still serves while the hook holds it |
//! | `aws.ec2` | `EC2 Instance State-change Notification` | `shutting-down`/`terminated`: gone since the event's time; otherwise look it up |
//! | `aws.events` | `Scheduled Event` | full reconcile |
//!
//! Anything else is refused with a reason naming the field (the handler logs
//! it and does nothing else).

use std::time::SystemTime;

use serde_json::Value;

/// What an event asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// Rebuild from every instance.
    Reconcile,
    /// Look this instance up in EC2.
    Lookup {
        /// Instance id.
        instance: String,
    },
    /// This instance is gone (no lookup: EC2 may lag behind the event).
    Gone {
        /// Instance id.
        instance: String,
        /// The event's time, if it had a readable one.
        at: Option<SystemTime>,
    },
}

/// Why an event was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event not understood: {0}")]
pub struct EventError(pub String);

/// Read one EventBridge event.
pub fn parse(event: &Value) -> Result<Trigger, EventError> {
    let field = |name: &str| -> Result<&str, EventError> {
        event
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| EventError(format!("expected a string field `{name}`")))
    };
    let source = field("source")?;
    let detail_type = field("detail-type")?;
    let at = event
        .get("time")
        .and_then(Value::as_str)
        .and_then(|t| humantime::parse_rfc3339_weak(t.trim_end_matches('Z')).ok());
    let detail = event.get("detail").filter(|d| d.is_object());
    let detail_str = |name: &str| -> Result<String, EventError> {
        let v = detail
            .and_then(|d| d.get(name))
            .and_then(Value::as_str)
            .ok_or_else(|| {
                EventError(format!(
                    "{source} `{detail_type}`: expected a string field `detail.{name}`"
                ))
            })?;
        let is_id = v.starts_with("i-")
            && v.len() <= 32
            && v[2..].bytes().all(|b| b.is_ascii_alphanumeric());
        if name == "state" || is_id {
            Ok(v.to_string())
        } else {
            Err(EventError(format!(
                "{source} `{detail_type}`: `detail.{name}` = {v:?} is not an instance id"
            )))
        }
    };
    match (source, detail_type) {
        ("aws.events", "Scheduled Event") => Ok(Trigger::Reconcile),
        (
            "aws.autoscaling",
            "EC2 Instance Launch Successful"
            | "EC2 Instance-launch Lifecycle Action"
            | "EC2 Instance-terminate Lifecycle Action",
        ) => Ok(Trigger::Lookup {
            instance: detail_str("EC2InstanceId")?,
        }),
        ("aws.autoscaling", "EC2 Instance Terminate Successful") => Ok(Trigger::Gone {
            instance: detail_str("EC2InstanceId")?,
            at,
        }),
        ("aws.ec2", "EC2 Instance State-change Notification") => {
            let instance = detail_str("instance-id")?;
            match detail_str("state")?.as_str() {
                "shutting-down" | "terminated" => Ok(Trigger::Gone { instance, at }),
                _ => Ok(Trigger::Lookup { instance }),
            }
        }
        _ => Err(EventError(format!(
            "no rule for source `{source}`, detail-type `{detail_type}`"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn real_event_shapes() {
        let launch = json!({
            "version": "0", "id": "12345678-1234-1234-1234-123456789012",
            "detail-type": "EC2 Instance Launch Successful", "source": "aws.autoscaling",
            "account": "123456789012", "time": "2026-12-01T07:00:00Z", "region": "us-east-1",
            "resources": [], "detail": {"StatusCode": "InProgress", "AutoScalingGroupName": "web",
            "EC2InstanceId": "i-0123456789abcdef0", "Cause": "..."}
        });
        assert_eq!(
            parse(&launch),
            Ok(Trigger::Lookup {
                instance: "i-0123456789abcdef0".into()
            })
        );
        let state = json!({
            "source": "aws.ec2", "detail-type": "EC2 Instance State-change Notification",
            "time": "2026-12-01T07:00:00Z",
            "detail": {"instance-id": "i-0abc", "state": "terminated"}
        });
        match parse(&state) {
            Ok(Trigger::Gone {
                instance,
                at: Some(t),
            }) => {
                assert_eq!(instance, "i-0abc");
                assert_eq!(
                    humantime::format_rfc3339_seconds(t).to_string(),
                    "2026-12-01T07:00:00Z"
                );
            }
            other => panic!("{other:?}"),
        }
        let running = json!({"source": "aws.ec2", "detail-type": "EC2 Instance State-change Notification",
            "detail": {"instance-id": "i-0abc", "state": "running"}});
        assert_eq!(
            parse(&running),
            Ok(Trigger::Lookup {
                instance: "i-0abc".into()
            })
        );
        let sched = json!({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}});
        assert_eq!(parse(&sched), Ok(Trigger::Reconcile));
    }

    #[test]
    fn malformed_events_say_what_is_missing() {
        for (event, needle) in [
            (json!(null), "`source`"),
            (json!({"source": "aws.ec2"}), "`detail-type`"),
            (
                json!({"source": "aws.ec2", "detail-type": "EC2 Instance State-change Notification"}),
                "detail.instance-id",
            ),
            (
                json!({"source": "aws.autoscaling", "detail-type": "EC2 Instance Launch Successful", "detail": {"EC2InstanceId": "../etc"}}),
                "not an instance id",
            ),
            (
                json!({"source": "aws.s3", "detail-type": "Object Created"}),
                "no rule",
            ),
        ] {
            let err = parse(&event).expect_err("malformed");
            assert!(err.0.contains(needle), "{err} should mention {needle}");
        }
    }
}
