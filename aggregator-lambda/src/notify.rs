//! The notifier: a CloudWatch alarm state change (as SNS delivers it) in,
//! the message a person reads out, published to the notification topic.
//!
//! For an alarm about source applications (`SourceApplication` in its
//! dimensions, in a contributor's attributes, or a Metrics Insights query
//! grouped by it), the message names each application, its contacts from
//! the metadata file, the 5-minute window and the window's **whole** total:
//! the `Sum` of every datapoint of that window read back from CloudWatch
//! with GetMetricData when the notification is written, after the alarm
//! fired (a window arrives as many datapoints, one per host, batch and late
//! partial; a log event of one batch holds only its share). The per-service
//! split comes with it. When the alarm names no application (an alarm-level
//! notification of a multi time series alarm), the notifier evaluates every
//! application itself over the alarm's evaluation range with the alarm's
//! threshold and names those above it.
//!
//! Top clients: CloudWatch has no per-client metric (a `Client` dimension
//! would cost one metric per address and month), so the message does not
//! rank clients; it gives the Logs Insights query over the aggregator's
//! "who do I call" events, which list each batch's top unknown addresses.
//!
//! Any other alarm (pipeline health) is passed on as a short text naming
//! the alarm, its state, the reason and its description.
//!
//! Reading the SNS message: CloudWatch's JSON (`AlarmName`, `NewStateValue`,
//! `NewStateReason`, `StateChangeTime`, `Trigger` with `Dimensions` or
//! `Metrics`), inside a Lambda SNS event, an SNS envelope (as an SQS
//! subscriber receives it) or bare. The parsing is hand-written on
//! `serde_json::Value`: `aws_lambda_events` types the SNS envelope but not
//! the alarm message, whose shape differs between single-metric, metric math
//! and multi time series alarms.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_cloudwatch::primitives::{DateTime, DateTimeFormat};
use aws_sdk_cloudwatch::types::{Dimension, DimensionFilter, Metric, MetricDataQuery, MetricStat};
use serde_json::Value;

use crate::handler::rfc3339;
use crate::metadata::UNKNOWN;
use crate::metadata_source::MetadataSource;
use crate::publish::plan::{DIM_APPLICATION, DIM_SERVICE, REQUESTS};

/// Environment variable with the notification topic's ARN (the Lambda).
pub const ENV_NOTIFY_TOPIC: &str = "TAILRACE_NOTIFY_TOPIC";

/// Environment variable naming the saved Logs Insights query over the
/// "who do I call" events, quoted in messages (the stack sets
/// `<stack>/who-do-i-call`).
pub const ENV_WHO_QUERY: &str = "TAILRACE_WHO_QUERY";

/// Window length the per-application totals are read with when the alarm
/// does not say (the agents' default window).
pub const DEFAULT_PERIOD: u32 = 300;

/// At most this many applications are named in one alarm's notifications.
pub const MAX_APPLICATIONS: usize = 20;

/// SNS subjects are at most 100 characters.
const MAX_SUBJECT: usize = 99;

/// Why a notification could not be written or sent.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The event or message is not what CloudWatch and SNS send.
    #[error("not a CloudWatch alarm notification: {0}")]
    NotAnAlarm(String),
    /// CloudWatch could not be read.
    #[error("reading {what} from CloudWatch: {message}")]
    CloudWatch {
        /// What was being read.
        what: String,
        /// The error.
        message: String,
    },
    /// The notification topic refused the message.
    #[error("publishing to {topic}: {message}")]
    Publish {
        /// The topic ARN.
        topic: String,
        /// The error.
        message: String,
    },
}

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
    /// dimension or contributor attribute), in order, without repeats.
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
    fn excludes_unknown(&self) -> bool {
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

/// One application's requests in one window, read back from CloudWatch.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowTotal {
    /// The application.
    pub application: String,
    /// Window start, seconds since the epoch.
    pub window_start: i64,
    /// Window length in seconds.
    pub window_secs: u32,
    /// The window's total: Sum over every datapoint of the window.
    pub requests: f64,
    /// The same total per `Service` (empty when only the rollup exists).
    pub per_service: BTreeMap<String, f64>,
}

/// The message for one application.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// The alarm.
    pub alarm: String,
    /// Its new state.
    pub state: String,
    /// The application (`None` for alarms about the pipeline itself).
    pub application: Option<String>,
    /// Contacts from the metadata file, joined with "; " (empty if none).
    pub contact: String,
    /// The window and its total, when the application has data.
    pub total: Option<WindowTotal>,
    /// SNS subject (at most 99 characters, one line).
    pub subject: String,
    /// The text a person reads.
    pub body: String,
}

/// Reads totals and contacts, writes and publishes notifications.
pub struct Notifier {
    cloudwatch: aws_sdk_cloudwatch::Client,
    sns: aws_sdk_sns::Client,
    metadata: MetadataSource,
    namespace: String,
    topic_arn: String,
    who_query: Option<String>,
}

impl Notifier {
    /// A notifier reading metrics from `namespace` and publishing to
    /// `topic_arn`.
    pub fn new(
        cloudwatch: aws_sdk_cloudwatch::Client,
        sns: aws_sdk_sns::Client,
        metadata: MetadataSource,
        namespace: impl Into<String>,
        topic_arn: impl Into<String>,
    ) -> Notifier {
        Notifier {
            cloudwatch,
            sns,
            metadata,
            namespace: namespace.into(),
            topic_arn: topic_arn.into(),
            who_query: None,
        }
    }

    /// Name the saved Logs Insights query that lists each batch's top
    /// clients (the stack's `<stack>/who-do-i-call`), quoted in messages.
    pub fn with_who_query(mut self, name: impl Into<String>) -> Notifier {
        self.who_query = Some(name.into());
        self
    }

    /// Handle every alarm message of an invocation; the first error fails
    /// the invocation (SNS retries it), after every message was tried.
    pub async fn handle(&self, messages: &[String]) -> Result<Vec<Notification>, NotifyError> {
        let mut sent = Vec::new();
        let mut first_error = None;
        for m in messages {
            let result = match parse_alarm(m) {
                Ok(change) => self.notify(&change).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(mut n) => sent.append(&mut n),
                Err(e) => {
                    tracing::error!(error = %e, "alarm notification not sent");
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(sent),
        }
    }

    /// Write and publish the notifications for one alarm state change.
    pub async fn notify(&self, change: &AlarmChange) -> Result<Vec<Notification>, NotifyError> {
        let notes = self.compose(change).await?;
        for n in &notes {
            self.publish(n).await?;
            tracing::info!(
                alarm = %n.alarm,
                state = %n.state,
                application = n.application.as_deref().unwrap_or(""),
                contact = %n.contact,
                window_start = n.total.as_ref().map_or(0, |t| t.window_start),
                window_time = %n.total.as_ref().map(|t| rfc3339(t.window_start)).unwrap_or_default(),
                requests = n.total.as_ref().map_or(0.0, |t| t.requests),
                threshold = change.threshold.unwrap_or(0.0),
                "notification sent"
            );
        }
        Ok(notes)
    }

    /// The notifications for one alarm state change, not yet published.
    pub async fn compose(&self, change: &AlarmChange) -> Result<Vec<Notification>, NotifyError> {
        if !change.is_about_applications() {
            return Ok(vec![pipeline_notification(change)]);
        }
        let (start, end) = evaluation_range(change);
        let mut applications = change.applications.clone();
        if applications.is_empty() {
            applications = self.applications().await?;
            if change.excludes_unknown() {
                applications.retain(|a| a != UNKNOWN);
            }
        }
        let metadata = match self.metadata.current().await {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::warn!(error = %e, "metadata unreadable: notifications without contacts");
                None
            }
        };
        let mut notes = Vec::new();
        for application in applications {
            let windows = self
                .window_totals(&application, start, end, change.period)
                .await?;
            let Some(total) = pick_window(windows, change) else {
                continue;
            };
            let contact = metadata
                .as_ref()
                .map(|m| m.contacts_of(&application).join("; "))
                .unwrap_or_default();
            notes.push(self.application_notification(change, application, contact, total));
            if notes.len() == MAX_APPLICATIONS {
                break;
            }
        }
        if notes.is_empty() {
            // The alarm fired but no application's window is over the
            // threshold any more (or there is no data yet): say so.
            let mut n = pipeline_notification(change);
            n.body.push_str(&format!(
                "\nNo source application has a window above the threshold between {} and {} \
                 in CloudWatch now.\n",
                rfc3339(start),
                rfc3339(end)
            ));
            notes.push(n);
        }
        Ok(notes)
    }

    fn application_notification(
        &self,
        change: &AlarmChange,
        application: String,
        contact: String,
        total: WindowTotal,
    ) -> Notification {
        let window_end = total.window_start + i64::from(total.window_secs);
        let over = change
            .threshold
            .map(|t| format!(" (threshold {})", fmt_count(t)))
            .unwrap_or_default();
        let subject = one_line(
            &format!(
                "{}: {} sent {} requests in the {} UTC window",
                change.state,
                application,
                fmt_count(total.requests),
                rfc3339(total.window_start).get(11..16).unwrap_or("?")
            ),
            MAX_SUBJECT,
        );
        let who = if application == UNKNOWN {
            "nobody: these clients are in no row of the metadata file".to_owned()
        } else if contact.is_empty() {
            "none in the metadata file".to_owned()
        } else {
            contact.clone()
        };
        let mut body = String::new();
        body.push_str(&format!(
            "tailrace: alarm {} is {}.\n\n",
            change.name, change.state
        ));
        body.push_str(&format!("Application:  {application}\n"));
        body.push_str(&format!("Contact:      {who}\n"));
        body.push_str(&format!(
            "Window:       {} to {} ({} min)\n",
            rfc3339(total.window_start),
            rfc3339(window_end),
            total.window_secs / 60
        ));
        body.push_str(&format!(
            "Requests:     {} in the whole window{over}: the Sum of every datapoint of the \
             window in CloudWatch ({}), read at {}\n",
            fmt_count(total.requests),
            self.namespace,
            rfc3339(now_secs())
        ));
        if !total.per_service.is_empty() {
            let split: Vec<String> = total
                .per_service
                .iter()
                .map(|(s, n)| format!("{s} {}", fmt_count(*n)))
                .collect();
            body.push_str(&format!("Per service:  {}\n", split.join(", ")));
        }
        let query = self.who_query.as_deref().unwrap_or("who-do-i-call");
        body.push_str(&format!(
            "Top clients:  not kept in CloudWatch (no per-client metric); each batch's top unknown \
             addresses are in the aggregator's \"who do I call\" log events (Logs Insights query \
             \"{query}\", window_time {})\n",
            rfc3339(total.window_start)
        ));
        if !change.reason.is_empty() {
            body.push_str(&format!("Why:          {}\n", change.reason));
        }
        if !change.description.is_empty() {
            body.push_str(&format!("\n{}\n", change.description));
        }
        Notification {
            alarm: change.name.clone(),
            state: change.state.clone(),
            application: Some(application),
            contact,
            total: Some(total),
            subject,
            body,
        }
    }

    /// Every application with a `Requests` metric in the namespace.
    async fn applications(&self) -> Result<Vec<String>, NotifyError> {
        let sets = self.dimension_sets(None).await?;
        let apps: BTreeSet<String> = sets
            .into_iter()
            .filter_map(|s| s.get(DIM_APPLICATION).cloned())
            .collect();
        Ok(apps.into_iter().collect())
    }

    /// The distinct dimension sets of `Requests`, optionally only those of
    /// one application.
    async fn dimension_sets(
        &self,
        application: Option<&str>,
    ) -> Result<BTreeSet<BTreeMap<String, String>>, NotifyError> {
        let err = |e: String| NotifyError::CloudWatch {
            what: format!("the {REQUESTS} metrics of {}", self.namespace),
            message: e,
        };
        let mut req = self
            .cloudwatch
            .list_metrics()
            .namespace(&self.namespace)
            .metric_name(REQUESTS);
        if let Some(app) = application {
            let filter = DimensionFilter::builder()
                .name(DIM_APPLICATION)
                .value(app)
                .build();
            req = req.dimensions(filter);
        }
        let mut sets = BTreeSet::new();
        let mut token: Option<String> = None;
        loop {
            let page = req
                .clone()
                .set_next_token(token.clone())
                .send()
                .await
                .map_err(|e| err(aws_sdk_cloudwatch::error::DisplayErrorContext(e).to_string()))?;
            for m in page.metrics() {
                let set: BTreeMap<String, String> = m
                    .dimensions()
                    .iter()
                    .filter_map(|d| Some((d.name()?.to_owned(), d.value()?.to_owned())))
                    .collect();
                sets.insert(set);
            }
            token = page.next_token().map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
        Ok(sets)
    }

    /// The application's `Requests` Sum per window in `[start, end)`.
    ///
    /// Read per `[Service, SourceApplication]` and added up when those
    /// exist, else from the `[SourceApplication]` rollup: each metric is
    /// asked for by its full dimension set, so an emulator that matches
    /// dimensions as a subset (moto) cannot count a datum twice.
    pub async fn window_totals(
        &self,
        application: &str,
        start: i64,
        end: i64,
        period: u32,
    ) -> Result<Vec<WindowTotal>, NotifyError> {
        let sets = self.dimension_sets(Some(application)).await?;
        let per_service: Vec<&BTreeMap<String, String>> = sets
            .iter()
            .filter(|s| s.len() == 2 && s.contains_key(DIM_SERVICE))
            .collect();
        let chosen: Vec<&BTreeMap<String, String>> = if per_service.is_empty() {
            sets.iter().filter(|s| s.len() == 1).collect()
        } else {
            per_service
        };
        let mut windows: BTreeMap<i64, WindowTotal> = BTreeMap::new();
        for (i, set) in chosen.iter().enumerate() {
            let service = set.get(DIM_SERVICE).cloned();
            for (ts, value) in self.sums(set, start, end, period, i).await? {
                let w = windows.entry(ts).or_insert_with(|| WindowTotal {
                    application: application.to_owned(),
                    window_start: ts,
                    window_secs: period,
                    requests: 0.0,
                    per_service: BTreeMap::new(),
                });
                w.requests += value;
                if let Some(s) = &service {
                    *w.per_service.entry(s.clone()).or_default() += value;
                }
            }
        }
        Ok(windows.into_values().collect())
    }

    /// `(period start, Sum)` of `Requests` with exactly these dimensions.
    async fn sums(
        &self,
        dims: &BTreeMap<String, String>,
        start: i64,
        end: i64,
        period: u32,
        index: usize,
    ) -> Result<Vec<(i64, f64)>, NotifyError> {
        let what = format!("{REQUESTS} {dims:?}");
        let err = |e: String| NotifyError::CloudWatch {
            what: what.clone(),
            message: e,
        };
        let metric = Metric::builder()
            .namespace(&self.namespace)
            .metric_name(REQUESTS)
            .set_dimensions(Some(
                dims.iter()
                    .map(|(k, v)| Dimension::builder().name(k).value(v).build())
                    .collect(),
            ))
            .build();
        let stat = MetricStat::builder()
            .metric(metric)
            .period(period as i32)
            .stat("Sum")
            .build();
        let query = MetricDataQuery::builder()
            .id(format!("m{index}"))
            .metric_stat(stat)
            .return_data(true)
            .build();
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .cloudwatch
                .get_metric_data()
                .metric_data_queries(query.clone())
                .start_time(DateTime::from_secs(start))
                .end_time(DateTime::from_secs(end))
                .set_next_token(token.clone())
                .send()
                .await
                .map_err(|e| err(aws_sdk_cloudwatch::error::DisplayErrorContext(e).to_string()))?;
            for r in page.metric_data_results() {
                for (t, v) in r.timestamps().iter().zip(r.values()) {
                    out.push((t.secs(), *v));
                }
            }
            token = page.next_token().map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
        Ok(out)
    }

    async fn publish(&self, n: &Notification) -> Result<(), NotifyError> {
        let err = |e: String| NotifyError::Publish {
            topic: self.topic_arn.clone(),
            message: e,
        };
        let mut req = self
            .sns
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(&n.subject)
            .message(&n.body);
        if let Some(app) = &n.application {
            let attr = aws_sdk_sns::types::MessageAttributeValue::builder()
                .data_type("String")
                .string_value(app)
                .build()
                .map_err(|e| err(e.to_string()))?;
            req = req.message_attributes("application", attr);
        }
        req.send()
            .await
            .map_err(|e| err(aws_sdk_sns::error::DisplayErrorContext(e).to_string()))?;
        Ok(())
    }
}

/// The windows an alarm change is about: `EvaluationPeriods + 1` periods
/// before the state change (windows arrive after they close) up to the
/// period that holds it.
pub fn evaluation_range(change: &AlarmChange) -> (i64, i64) {
    let p = i64::from(change.period.max(60));
    let end = (change.time.div_euclid(p) + 1) * p;
    let start = end - p * (i64::from(change.evaluation_periods) + 2);
    (start, end)
}

/// The window to report: for `ALARM`, the largest window above the
/// threshold (the largest window when there is no threshold); otherwise
/// the latest window. `None` when the application has no data, or in
/// `ALARM` none of its windows is above the threshold (another application
/// fired it).
pub fn pick_window(windows: Vec<WindowTotal>, change: &AlarmChange) -> Option<WindowTotal> {
    if change.state == "ALARM" {
        let threshold = change.threshold.unwrap_or(f64::NEG_INFINITY);
        windows
            .into_iter()
            .filter(|w| w.requests > threshold)
            .max_by(|a, b| {
                a.requests
                    .total_cmp(&b.requests)
                    .then(a.window_start.cmp(&b.window_start))
            })
    } else {
        windows.into_iter().max_by_key(|w| w.window_start)
    }
}

/// The message for an alarm about the pipeline itself.
pub fn pipeline_notification(change: &AlarmChange) -> Notification {
    let subject = one_line(&format!("{}: {}", change.state, change.name), MAX_SUBJECT);
    let mut body = format!(
        "tailrace: alarm {} is {} since {}.\n",
        change.name,
        change.state,
        rfc3339(change.time)
    );
    if let (Some(ns), Some(m)) = (&change.namespace, &change.metric_name) {
        body.push_str(&format!("Metric:       {ns} {m}\n"));
    }
    if !change.reason.is_empty() {
        body.push_str(&format!("Why:          {}\n", change.reason));
    }
    if !change.description.is_empty() {
        body.push_str(&format!("\n{}\n", change.description));
    }
    Notification {
        alarm: change.name.clone(),
        state: change.state.clone(),
        application: None,
        contact: String::new(),
        total: None,
        subject,
        body,
    }
}

/// A count without a fraction when it has none.
fn fmt_count(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.2}")
    }
}

/// One printable ASCII line of at most `max` characters (SNS subjects).
fn one_line(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    if out.len() > max {
        out.truncate(max - 3);
        out.push_str("...");
    }
    out
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As CloudWatch writes it for a single-metric alarm (the `unknown`
    /// sources alarm): `Trigger.Dimensions` names the application.
    const SINGLE: &str = r#"{"AlarmName":"tailrace-unknown-sources","AlarmDescription":"Requests from unknown","AWSAccountId":"123456789012","NewStateValue":"ALARM","NewStateReason":"Threshold Crossed: 1 out of the last 3 datapoints [1234.0 (01/12/26 07:05:00)] was greater than the threshold (1000.0)","StateChangeTime":"2026-12-01T07:12:03.456+0000","Region":"US East (N. Virginia)","AlarmArn":"arn:aws:cloudwatch:us-east-1:123456789012:alarm:tailrace-unknown-sources","OldStateValue":"OK","Trigger":{"MetricName":"Requests","Namespace":"Tailrace","StatisticType":"Statistic","Statistic":"SUM","Unit":null,"Dimensions":[{"value":"unknown","name":"SourceApplication"}],"Period":300,"EvaluationPeriods":3,"DatapointsToAlarm":1,"ComparisonOperator":"GreaterThanThreshold","Threshold":1000.0,"TreatMissingData":"notBreaching","EvaluateLowSampleCountPercentile":""}}"#;

    /// A Metrics Insights alarm: `Trigger.Metrics` carries the query.
    const INSIGHTS: &str = r#"{"AlarmName":"tailrace-source-application-requests","AlarmDescription":"A source application sent more","NewStateValue":"ALARM","NewStateReason":"Threshold Crossed","StateChangeTime":"2026-12-01T07:12:03.456+0000","OldStateValue":"OK","Trigger":{"Period":300,"EvaluationPeriods":3,"ComparisonOperator":"GreaterThanThreshold","Threshold":100000.0,"TreatMissingData":"notBreaching","Metrics":[{"Id":"perapp","Label":"Requests per source application","Period":300,"ReturnData":true,"Expression":"SELECT SUM(Requests) FROM SCHEMA(\"Tailrace\", SourceApplication) WHERE SourceApplication != 'unknown' GROUP BY SourceApplication ORDER BY SUM() DESC"}]}}"#;

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
    fn operational_alarm_is_passed_on() {
        let msg = SINGLE
            .replace(r#"[{"value":"unknown","name":"SourceApplication"}]"#, "[]")
            .replace(
                r#""MetricName":"Requests""#,
                r#""MetricName":"PoisonRecords""#,
            );
        let c = parse_alarm(&msg).expect("parses");
        assert!(!c.is_about_applications());
        let n = pipeline_notification(&c);
        assert_eq!(n.subject, "ALARM: tailrace-unknown-sources");
        assert!(n.body.contains("Tailrace PoisonRecords"), "{}", n.body);
        assert!(n.application.is_none());
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

    #[test]
    fn range_covers_the_evaluated_windows() {
        let c = parse_alarm(SINGLE).expect("parses");
        let (start, end) = evaluation_range(&c);
        // 07:12:03 -> up to 07:15, five periods back.
        assert_eq!(end, 1_796_109_300);
        assert_eq!(start, end - 5 * 300);
    }

    #[test]
    fn the_reported_window_is_the_largest_above_the_threshold() {
        let c = parse_alarm(SINGLE).expect("parses");
        let w = |start: i64, requests: f64| WindowTotal {
            application: "unknown".into(),
            window_start: start,
            window_secs: 300,
            requests,
            per_service: BTreeMap::new(),
        };
        let picked = pick_window(vec![w(0, 900.0), w(300, 1500.0), w(600, 1200.0)], &c);
        assert_eq!(picked.map(|p| p.window_start), Some(300));
        assert_eq!(pick_window(vec![w(0, 900.0)], &c), None);
        let mut ok = c.clone();
        ok.state = "OK".into();
        assert_eq!(
            pick_window(vec![w(0, 900.0), w(300, 10.0)], &ok).map(|p| p.window_start),
            Some(300)
        );
    }

    #[test]
    fn subjects_are_one_short_line() {
        let s = one_line(&format!("ALARM: {}\nx", "a".repeat(200)), MAX_SUBJECT);
        assert_eq!(s.len(), MAX_SUBJECT);
        assert!(!s.contains('\n'));
        assert_eq!(fmt_count(1234.0), "1234");
        assert_eq!(fmt_count(0.5), "0.50");
    }

    #[test]
    fn contacts_come_from_the_metadata_file() {
        let parsed = crate::metadata::Metadata::parse(
            "ip_or_cidr,application,contact\n10.0.0.1,billing,a@example.com\n10.0.0.2,billing,b@example.com\n10.0.0.3,billing,a@example.com\n10.0.0.4,search,\n",
        );
        assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
        let m = parsed.metadata;
        assert_eq!(
            m.contacts_of("billing"),
            vec!["a@example.com", "b@example.com"]
        );
        assert!(m.contacts_of("search").is_empty());
        assert!(m.contacts_of("nobody").is_empty());
    }
}
