//! Reading CloudWatch's alarm message: the JSON an alarm's SNS action
//! carries (`AlarmName`, `NewStateValue`, `NewStateReason`,
//! `StateChangeTime`, `Trigger` with `Dimensions` or `Metrics`), inside a
//! Lambda SNS event, an SNS envelope (as an SQS subscriber receives it) or
//! bare. Pure: text in, [`AlarmChange`] out.
//!
//! The parsing is hand-written on `serde_json::Value`: `aws_lambda_events`
//! types the SNS envelope but not the alarm message, whose shape differs
//! between single-metric, metric math and multi time series alarms.

use aws_sdk_cloudwatch::primitives::{DateTime, DateTimeFormat};
use serde_json::Value;

use crate::publish::plan::DIM_APPLICATION;

use super::NotifyError;

/// Window length the per-application totals are read with when the alarm
/// does not say (the agents' default window).
pub const DEFAULT_PERIOD: u32 = 300;

/// The parts of CloudWatch's alarm message the notifier uses.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmChange {
    /// `AlarmName`.
    pub name: String,
    /// `AlarmDescription` (may be empty).
    pub description: String,
    /// `NewStateValue`: `ALARM`, `OK` or `INSUFFICIENT_DATA`.
    pub state: String,
    /// `NewStateReason`.
    pub reason: String,
    /// `StateChangeTime`, seconds since the epoch.
    pub time: i64,
    /// The watched namespace, when the message says (single-metric alarms).
    pub namespace: Option<String>,
    /// The watched metric, when the message says.
    pub metric_name: Option<String>,
    /// `Trigger.Period` (seconds; the period of the first metric for
    /// metric-math and Metrics Insights alarms).
    pub period: u32,
    /// `Trigger.EvaluationPeriods`.
    pub evaluation_periods: u32,
    /// `Trigger.Threshold`.
    pub threshold: Option<f64>,
    /// A Metrics Insights query, when the alarm has one.
    pub query: Option<String>,
    /// Applications the message itself names (a `SourceApplication`
    /// dimension, a contributor attribute, or a query's `WHERE
    /// SourceApplication = '…'`), in order, without repeats.
    pub applications: Vec<String>,
}

impl AlarmChange {
    /// Whether the alarm is about source applications.
    pub fn is_about_applications(&self) -> bool {
        !self.applications.is_empty()
            || self
                .query
                .as_deref()
                .is_some_and(|q| q.contains("GROUP BY SourceApplication"))
    }

    /// Whether its query leaves out the `unknown` application.
    pub fn excludes_unknown(&self) -> bool {
        self.query
            .as_deref()
            .is_some_and(|q| q.contains("SourceApplication != 'unknown'"))
    }
}

/// The alarm messages in a Lambda event: the `Message` of every record of
/// an SNS event (`Records[].Sns.Message`), of an SNS envelope (`Type:
/// Notification`, as an SQS subscriber receives it), or the value itself
/// when it already is an alarm message. `None` when the value is none of
/// these (a Kinesis event, say).
pub fn alarm_messages(event: &Value) -> Option<Vec<String>> {
    if let Some(records) = event.get("Records").and_then(Value::as_array) {
        let sns: Vec<String> = records
            .iter()
            .filter(|r| r.get("EventSource").and_then(Value::as_str) == Some("aws:sns"))
            .filter_map(|r| r.pointer("/Sns/Message").and_then(Value::as_str))
            .map(str::to_owned)
            .collect();
        return (!sns.is_empty() && sns.len() == records.len()).then_some(sns);
    }
    if event.get("Type").and_then(Value::as_str) == Some("Notification") {
        return event
            .get("Message")
            .and_then(Value::as_str)
            .map(|m| vec![m.to_owned()]);
    }
    if event.get("AlarmName").is_some() {
        return Some(vec![event.to_string()]);
    }
    None
}

/// Parse CloudWatch's alarm message (the JSON text SNS carries).
pub fn parse_alarm(message: &str) -> Result<AlarmChange, NotifyError> {
    let v: Value = serde_json::from_str(message)
        .map_err(|e| NotifyError::NotAnAlarm(format!("the message is not JSON: {e}")))?;
    let text = |key: &str| v.get(key).and_then(Value::as_str).map(str::to_owned);
    let name = text("AlarmName")
        .ok_or_else(|| NotifyError::NotAnAlarm("no AlarmName in the message".into()))?;
    let state = text("NewStateValue")
        .ok_or_else(|| NotifyError::NotAnAlarm(format!("alarm {name}: no NewStateValue")))?;
    let time_text = text("StateChangeTime")
        .ok_or_else(|| NotifyError::NotAnAlarm(format!("alarm {name}: no StateChangeTime")))?;
    let time = parse_time(&time_text).ok_or_else(|| {
        NotifyError::NotAnAlarm(format!(
            "alarm {name}: StateChangeTime {time_text:?} is not a date like 2026-12-01T07:12:00.000+0000"
        ))
    })?;
    let trigger = v.get("Trigger").cloned().unwrap_or(Value::Null);
    let num = |t: &Value, key: &str| t.get(key).and_then(Value::as_f64);
    let metrics = trigger.get("Metrics").and_then(Value::as_array);
    let first_stat = metrics.and_then(|ms| ms.iter().find_map(|m| m.get("MetricStat")));
    let period = num(&trigger, "Period")
        .or_else(|| metrics.and_then(|ms| ms.iter().find_map(|m| num(m, "Period"))))
        .or_else(|| first_stat.and_then(|s| num(s, "Period")))
        .map_or(DEFAULT_PERIOD, |p| p as u32)
        .max(60);
    let query = metrics.and_then(|ms| {
        ms.iter()
            .filter_map(|m| m.get("Expression").and_then(Value::as_str))
            .find(|e| e.trim_start().to_ascii_uppercase().starts_with("SELECT"))
            .map(|e| e.split_whitespace().collect::<Vec<_>>().join(" "))
    });
    let mut applications = Vec::new();
    collect_applications(&v, &mut applications);
    if let Some(app) = query.as_deref().and_then(application_of_query) {
        push_unique(&mut applications, &app);
    }
    Ok(AlarmChange {
        description: text("AlarmDescription").unwrap_or_default(),
        reason: text("NewStateReason").unwrap_or_default(),
        namespace: trigger
            .get("Namespace")
            .and_then(Value::as_str)
            .map(str::to_owned),
        metric_name: trigger
            .get("MetricName")
            .and_then(Value::as_str)
            .map(str::to_owned),
        period,
        evaluation_periods: num(&trigger, "EvaluationPeriods").map_or(1, |n| n.max(1.0) as u32),
        threshold: num(&trigger, "Threshold"),
        query,
        applications,
        name,
        state,
        time,
    })
}

/// The application a Metrics Insights query is about when its `WHERE`
/// names one with `=` (the unknown-sources alarm over the per-service
/// schema: `… WHERE SourceApplication = 'unknown'`).
fn application_of_query(query: &str) -> Option<String> {
    let at = query.find("SourceApplication = '")? + "SourceApplication = '".len();
    let rest = &query[at..];
    let end = rest.find('\'')?;
    Some(rest[..end].to_owned()).filter(|a| !a.is_empty())
}

/// Every `SourceApplication` the message names: `{"name":
/// "SourceApplication", "value": X}` dimension entries (any letter case) and
/// `"SourceApplication": X` entries of attribute maps (contributors).
fn collect_applications(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            let name = map
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("name"))
                .and_then(|(_, v)| v.as_str());
            if name == Some(DIM_APPLICATION) {
                if let Some(value) = map
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("value"))
                    .and_then(|(_, v)| v.as_str())
                {
                    push_unique(out, value);
                }
            }
            for (k, child) in map {
                match (k.as_str(), child.as_str()) {
                    (DIM_APPLICATION, Some(value)) => push_unique(out, value),
                    _ => collect_applications(child, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_applications(i, out)),
        _ => {}
    }
}

fn push_unique(out: &mut Vec<String>, value: &str) {
    if !value.is_empty() && !out.iter().any(|a| a == value) {
        out.push(value.to_owned());
    }
}

/// CloudWatch's `StateChangeTime` (`2026-12-01T07:12:00.123+0000`) or any
/// RFC 3339 time, as seconds since the epoch.
pub fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim();
    let normalized = match s.strip_suffix("+0000") {
        Some(head) => format!("{head}Z"),
        None => s.to_owned(),
    };
    DateTime::from_str(&normalized, DateTimeFormat::DateTime)
        .ok()
        .map(|d| d.secs())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// As CloudWatch writes it for a single-metric alarm (the `unknown`
    /// sources alarm): `Trigger.Dimensions` names the application.
    pub(crate) const SINGLE: &str = r#"{"AlarmName":"tailrace-unknown-sources","AlarmDescription":"Requests from unknown","AWSAccountId":"123456789012","NewStateValue":"ALARM","NewStateReason":"Threshold Crossed: 1 out of the last 3 datapoints [1234.0 (01/12/26 07:05:00)] was greater than the threshold (1000.0)","StateChangeTime":"2026-12-01T07:12:03.456+0000","Region":"US East (N. Virginia)","AlarmArn":"arn:aws:cloudwatch:us-east-1:123456789012:alarm:tailrace-unknown-sources","OldStateValue":"OK","Trigger":{"MetricName":"Requests","Namespace":"Tailrace","StatisticType":"Statistic","Statistic":"SUM","Unit":null,"Dimensions":[{"value":"unknown","name":"SourceApplication"}],"Period":300,"EvaluationPeriods":3,"DatapointsToAlarm":1,"ComparisonOperator":"GreaterThanThreshold","Threshold":1000.0,"TreatMissingData":"notBreaching","EvaluateLowSampleCountPercentile":""}}"#;

    /// A Metrics Insights alarm: `Trigger.Metrics` carries the query.
    pub(crate) const INSIGHTS: &str = r#"{"AlarmName":"tailrace-source-application-requests","AlarmDescription":"A source application sent more","NewStateValue":"ALARM","NewStateReason":"Threshold Crossed","StateChangeTime":"2026-12-01T07:12:03.456+0000","OldStateValue":"OK","Trigger":{"Period":300,"EvaluationPeriods":3,"ComparisonOperator":"GreaterThanThreshold","Threshold":100000.0,"TreatMissingData":"notBreaching","Metrics":[{"Id":"perapp","Label":"Requests per source application","Period":300,"ReturnData":true,"Expression":"SELECT SUM(Requests) FROM SCHEMA(\"Tailrace\", SourceApplication) WHERE SourceApplication != 'unknown' GROUP BY SourceApplication ORDER BY SUM() DESC"}]}}"#;

    #[test]
    fn single_metric_alarm_names_its_application() {
        let c = parse_alarm(SINGLE).expect("parses");
        assert_eq!(c.name, "tailrace-unknown-sources");
        assert_eq!(c.state, "ALARM");
        assert_eq!(c.time, 1_796_109_123);
        assert_eq!(c.period, 300);
        assert_eq!(c.evaluation_periods, 3);
        assert_eq!(c.threshold, Some(1000.0));
        assert_eq!(c.applications, vec!["unknown".to_string()]);
        assert_eq!(c.namespace.as_deref(), Some("Tailrace"));
        assert!(c.is_about_applications());
    }

    #[test]
    fn insights_alarm_is_about_every_application() {
        let c = parse_alarm(INSIGHTS).expect("parses");
        assert!(c.applications.is_empty());
        assert!(c.is_about_applications());
        assert!(c.excludes_unknown());
        assert_eq!(c.threshold, Some(100_000.0));
        // A contributor's attributes name its application.
        let with_contributor = INSIGHTS.replacen(
            r#""OldStateValue""#,
            r#""AlarmContributor":{"ContributorId":"abc","ContributorAttributes":{"SourceApplication":"billing"}},"OldStateValue""#,
            1,
        );
        let c = parse_alarm(&with_contributor).expect("parses");
        assert_eq!(c.applications, vec!["billing".to_string()]);
    }

    #[test]
    fn a_query_over_the_per_service_schema_names_its_application() {
        // The unknown-sources alarm when only Service+SourceApplication is
        // published (packaging/cloudformation/tailrace.yaml).
        let msg = INSIGHTS.replace(
            r#"SCHEMA(\"Tailrace\", SourceApplication) WHERE SourceApplication != 'unknown' GROUP BY SourceApplication ORDER BY SUM() DESC"#,
            r#"SCHEMA(\"Tailrace\", Service, SourceApplication) WHERE SourceApplication = 'unknown'"#,
        );
        let c = parse_alarm(&msg).expect("parses");
        assert_eq!(c.applications, vec!["unknown".to_string()]);
        assert!(c.is_about_applications());
    }

    #[test]
    fn wrong_messages_say_what_is_missing() {
        for (msg, want) in [
            ("not json", "not JSON"),
            ("{}", "no AlarmName"),
            (r#"{"AlarmName":"a"}"#, "no NewStateValue"),
            (
                r#"{"AlarmName":"a","NewStateValue":"OK","StateChangeTime":"yesterday"}"#,
                "StateChangeTime \"yesterday\"",
            ),
        ] {
            let e = parse_alarm(msg).expect_err(msg).to_string();
            assert!(e.contains(want), "{msg}: {e}");
        }
    }

    #[test]
    fn messages_from_lambda_sns_events_envelopes_and_bare() {
        let message = Value::String(SINGLE.into());
        let lambda = serde_json::json!({"Records":[{"EventSource":"aws:sns","EventVersion":"1.0",
            "Sns":{"Type":"Notification","MessageId":"m","TopicArn":"arn:aws:sns:us-east-1:1:t",
                   "Subject":"ALARM","Message":message,"Timestamp":"2026-12-01T07:12:04.000Z"}}]});
        assert_eq!(alarm_messages(&lambda), Some(vec![SINGLE.to_string()]));
        let envelope = serde_json::json!({"Type":"Notification","Message":message});
        assert_eq!(alarm_messages(&envelope), Some(vec![SINGLE.to_string()]));
        let bare: Value = serde_json::from_str(SINGLE).expect("json");
        assert_eq!(alarm_messages(&bare).map(|v| v.len()), Some(1));
        let kinesis = serde_json::json!({"Records":[{"eventSource":"aws:kinesis","kinesis":{}}]});
        assert_eq!(alarm_messages(&kinesis), None);
    }
}
