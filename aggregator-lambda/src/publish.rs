//! Publishing merged windows as CloudWatch metrics.
//!
//! Per (window, service, application) and per (window, application) — the
//! dimension sets `[Service, SourceApplication]` and `[SourceApplication]` —
//! the metrics `Requests` (Count), `Bytes` (Bytes), `ClientErrors` (Count,
//! 4xx), `ServerErrors` (Count, 5xx) as single values, and, when latency is
//! known, `Latency` (Microseconds) as a distribution (`Values`/`Counts`, one
//! entry per histogram bucket, split over several datums of at most 150
//! entries) so CloudWatch percentiles work. Every datum is timestamped at its
//! window start with StorageResolution 60.
//!
//! Limits kept: at most 1,000 datums and an estimated 1 MB of request body per
//! PutMetricData call. Timestamps more than two weeks old or more than two
//! hours ahead are refused by CloudWatch: such datums are not sent, but
//! counted and logged as errors. Throttling and transient errors are retried
//! with exponential backoff and jitter; a call that still fails reports the
//! records behind its datums. A call CloudWatch refuses as invalid is not
//! retried and fails nobody (retrying the records could never succeed): it is
//! logged and counted as dropped.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_cloudwatch::error::ProvideErrorMetadata;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use tailrace_wire::ClientStats;

use crate::merge::{MetricEntry, MetricKey, Window};

/// Metric: requests.
pub const REQUESTS: &str = "Requests";
/// Metric: response bytes.
pub const BYTES: &str = "Bytes";
/// Metric: 4xx responses.
pub const CLIENT_ERRORS: &str = "ClientErrors";
/// Metric: 5xx responses.
pub const SERVER_ERRORS: &str = "ServerErrors";
/// Metric: latency distribution.
pub const LATENCY: &str = "Latency";
/// Dimension: service.
pub const DIM_SERVICE: &str = "Service";
/// Dimension: source application.
pub const DIM_APPLICATION: &str = "SourceApplication";

/// At most this many datums per PutMetricData.
pub const MAX_DATUMS_PER_CALL: usize = 1000;
/// At most this many request-body bytes per PutMetricData (1 MB).
pub const MAX_BYTES_PER_CALL: usize = 1_000_000;
/// At most this many `Values`/`Counts` entries per datum.
pub const MAX_VALUES_PER_DATUM: usize = 150;
/// Storage resolution of every datum (standard resolution).
pub const STORAGE_RESOLUTION: i32 = 60;
/// Oldest timestamp CloudWatch accepts, minus a safety margin.
pub const MAX_AGE: Duration = Duration::from_secs(14 * 86_400 - 300);
/// Farthest future timestamp CloudWatch accepts, minus a safety margin.
pub const MAX_AHEAD: Duration = Duration::from_secs(2 * 3600 - 300);

/// Fixed overhead of a PutMetricData request body (action, version, namespace).
const CALL_OVERHEAD: usize = 200;

/// One datum and the records behind it.
#[derive(Debug, Clone)]
pub struct PlannedDatum {
    /// The datum.
    pub datum: MetricDatum,
    /// Batch indices of the records that contributed.
    pub contributors: Arc<BTreeSet<usize>>,
    /// Estimated size in the request body (Query protocol, URL-encoded).
    pub size: usize,
}

/// A datum that cannot be published, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpublishable {
    /// The window.
    pub window: Window,
    /// The service (`None` for the application-only rollup).
    pub service: Option<String>,
    /// The application.
    pub application: String,
    /// Why.
    pub reason: String,
}

/// The datums to send for a batch.
#[derive(Debug, Default)]
pub struct Plan {
    /// Publishable datums, grouped by key.
    pub datums: Vec<PlannedDatum>,
    /// Keys whose timestamps CloudWatch would refuse.
    pub unpublishable: Vec<Unpublishable>,
    /// Datums not built because of those.
    pub unpublishable_datums: usize,
}

/// Build the datums for merged entries, as of `now`.
pub fn plan(entries: &[(&MetricKey, &MetricEntry)], now: SystemTime) -> Plan {
    let mut plan = Plan::default();
    // Rollup per (window, application) over services.
    let mut rollup: BTreeMap<(Window, Arc<str>), (ClientStats, BTreeSet<usize>)> = BTreeMap::new();
    for (key, entry) in entries {
        let slot = rollup
            .entry((key.window, key.application.clone()))
            .or_default();
        slot.0.merge(&entry.stats);
        slot.1.extend(entry.contributors.iter().copied());
    }
    for (key, entry) in entries {
        let dims = vec![
            dimension(DIM_SERVICE, &key.service),
            dimension(DIM_APPLICATION, &key.application),
        ];
        let contributors = Arc::new(entry.contributors.clone());
        if let Err(reason) = check_timestamp(key.window.start, now) {
            plan.unpublishable_datums += datums_for(&entry.stats, &dims, 0, &contributors).len();
            plan.unpublishable.push(Unpublishable {
                window: key.window,
                service: Some(key.service.to_string()),
                application: key.application.to_string(),
                reason,
            });
            continue;
        }
        plan.datums.extend(datums_for(
            &entry.stats,
            &dims,
            key.window.start,
            &contributors,
        ));
    }
    for ((window, application), (stats, contributors)) in rollup {
        let dims = vec![dimension(DIM_APPLICATION, &application)];
        let contributors = Arc::new(contributors);
        if let Err(reason) = check_timestamp(window.start, now) {
            plan.unpublishable_datums += datums_for(&stats, &dims, 0, &contributors).len();
            plan.unpublishable.push(Unpublishable {
                window,
                service: None,
                application: application.to_string(),
                reason,
            });
            continue;
        }
        plan.datums
            .extend(datums_for(&stats, &dims, window.start, &contributors));
    }
    plan
}

fn dimension(name: &str, value: &str) -> Dimension {
    Dimension::builder().name(name).value(value).build()
}

/// Whether CloudWatch accepts a datum timestamped `secs` at `now`.
pub fn check_timestamp(secs: i64, now: SystemTime) -> Result<(), String> {
    let now_secs = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    if secs < now_secs - MAX_AGE.as_secs() as i64 {
        return Err(format!(
            "window starts {} s ago; CloudWatch refuses data older than two weeks",
            now_secs - secs
        ));
    }
    if secs > now_secs + MAX_AHEAD.as_secs() as i64 {
        return Err(format!(
            "window starts {} s in the future; CloudWatch refuses data more than two hours ahead",
            secs - now_secs
        ));
    }
    Ok(())
}

/// The datums of one set of statistics under `dims`.
fn datums_for(
    stats: &ClientStats,
    dims: &[Dimension],
    window_start: i64,
    contributors: &Arc<BTreeSet<usize>>,
) -> Vec<PlannedDatum> {
    let ts = DateTime::from_secs(window_start);
    let base = |name: &str, unit: StandardUnit| {
        MetricDatum::builder()
            .metric_name(name)
            .set_dimensions(Some(dims.to_vec()))
            .timestamp(ts)
            .unit(unit)
            .storage_resolution(STORAGE_RESOLUTION)
    };
    let mut out = Vec::new();
    let mut push = |datum: MetricDatum| {
        let size = estimate_size(&datum);
        out.push(PlannedDatum {
            datum,
            contributors: contributors.clone(),
            size,
        });
    };
    push(
        base(REQUESTS, StandardUnit::Count)
            .value(stats.requests as f64)
            .build(),
    );
    push(
        base(BYTES, StandardUnit::Bytes)
            .value(stats.bytes as f64)
            .build(),
    );
    push(
        base(CLIENT_ERRORS, StandardUnit::Count)
            .value(stats.client_errors() as f64)
            .build(),
    );
    push(
        base(SERVER_ERRORS, StandardUnit::Count)
            .value(stats.server_errors() as f64)
            .build(),
    );
    if !stats.latency.is_empty() {
        let buckets: Vec<(f64, u64)> = stats.latency.buckets().collect();
        for chunk in buckets.chunks(MAX_VALUES_PER_DATUM) {
            push(
                base(LATENCY, StandardUnit::Microseconds)
                    .set_values(Some(chunk.iter().map(|&(v, _)| v).collect()))
                    .set_counts(Some(chunk.iter().map(|&(_, c)| c as f64).collect()))
                    .build(),
            );
        }
    }
    out
}

/// A generous estimate of a datum's size in a Query-protocol request body:
/// every parameter is `MetricData.member.NNNN.<path>=<value>&`, strings may
/// triple when URL-encoded.
pub fn estimate_size(datum: &MetricDatum) -> usize {
    const PARAM: usize = 48; // "MetricData.member.1000." + the longest field path + "=&"
    const NUMBER: usize = 26; // an f64 in scientific notation
    let mut size = PARAM + 3 * datum.metric_name().map_or(0, str::len);
    size += PARAM + 30; // Timestamp
    size += PARAM + 20; // Unit
    size += PARAM + 4; // StorageResolution
    if datum.value().is_some() {
        size += PARAM + NUMBER;
    }
    for d in datum.dimensions() {
        size +=
            2 * (PARAM + 20) + 3 * (d.name().map_or(0, str::len) + d.value().map_or(0, str::len));
    }
    size += (datum.values().len() + datum.counts().len()) * (PARAM + NUMBER);
    size
}

/// Group datums into calls within the count and size limits, keeping order.
/// Returns index ranges into `datums`.
pub fn batches(
    datums: &[PlannedDatum],
    max_datums: usize,
    max_bytes: usize,
) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = CALL_OVERHEAD;
    for (i, d) in datums.iter().enumerate() {
        let full = i - start >= max_datums || (i > start && bytes + d.size > max_bytes);
        if full {
            out.push(start..i);
            start = i;
            bytes = CALL_OVERHEAD;
        }
        bytes += d.size;
    }
    if start < datums.len() {
        out.push(start..datums.len());
    }
    out
}

/// Retry rules for PutMetricData.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in total (first try included).
    pub max_attempts: u32,
    /// Backoff before the second attempt; doubles each time.
    pub base_delay: Duration,
    /// Cap on one backoff.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
        }
    }
}

/// What publishing a plan did.
#[derive(Debug, Default, Clone)]
pub struct PublishOutcome {
    /// PutMetricData calls that succeeded.
    pub calls: usize,
    /// Datums accepted.
    pub datums: usize,
    /// Retries made (all calls).
    pub retries: usize,
    /// Datums in calls CloudWatch refused as invalid (not retried).
    pub dropped_datums: usize,
    /// Batch indices of records behind calls that failed after retries.
    pub failed_records: BTreeSet<usize>,
    /// The errors of failed calls.
    pub errors: Vec<String>,
}

/// Sends datums to CloudWatch.
#[derive(Debug, Clone)]
pub struct Publisher {
    client: aws_sdk_cloudwatch::Client,
    namespace: String,
    retry: RetryPolicy,
}

enum CallError {
    Retryable(String),
    Invalid(String),
    Fatal(String),
}

impl Publisher {
    /// A publisher into `namespace`.
    pub fn new(client: aws_sdk_cloudwatch::Client, namespace: impl Into<String>) -> Publisher {
        Publisher {
            client,
            namespace: namespace.into(),
            retry: RetryPolicy::default(),
        }
    }

    /// Replace the retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Publisher {
        self.retry = retry;
        self
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Send every datum of `plan`.
    pub async fn publish(&self, plan: &Plan) -> PublishOutcome {
        let mut outcome = PublishOutcome::default();
        for range in batches(&plan.datums, MAX_DATUMS_PER_CALL, MAX_BYTES_PER_CALL) {
            let chunk = &plan.datums[range];
            let data: Vec<MetricDatum> = chunk.iter().map(|d| d.datum.clone()).collect();
            let mut attempt = 1;
            loop {
                match self.call(data.clone()).await {
                    Ok(()) => {
                        outcome.calls += 1;
                        outcome.datums += chunk.len();
                        break;
                    }
                    Err(CallError::Retryable(e)) if attempt < self.retry.max_attempts => {
                        let delay = backoff(&self.retry, attempt);
                        tracing::warn!(
                            attempt,
                            delay_ms = delay.as_millis() as u64,
                            error = %e,
                            "PutMetricData failed, retrying"
                        );
                        outcome.retries += 1;
                        attempt += 1;
                        tokio::time::sleep(delay).await;
                    }
                    Err(CallError::Invalid(e)) => {
                        tracing::error!(
                            datums = chunk.len(),
                            error = %e,
                            "CloudWatch refused PutMetricData as invalid: datums dropped (not retried)"
                        );
                        outcome.dropped_datums += chunk.len();
                        outcome.errors.push(e);
                        break;
                    }
                    Err(CallError::Retryable(e)) | Err(CallError::Fatal(e)) => {
                        tracing::error!(
                            datums = chunk.len(),
                            attempts = attempt,
                            error = %e,
                            "PutMetricData failed: the records behind these datums fail"
                        );
                        for d in chunk {
                            outcome
                                .failed_records
                                .extend(d.contributors.iter().copied());
                        }
                        outcome.errors.push(e);
                        break;
                    }
                }
            }
        }
        outcome
    }

    async fn call(&self, data: Vec<MetricDatum>) -> Result<(), CallError> {
        let result = self
            .client
            .put_metric_data()
            .namespace(&self.namespace)
            .set_metric_data(Some(data))
            .send()
            .await;
        let err = match result {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        let status = err.raw_response().map(|r| r.status().as_u16());
        let code = err.code().unwrap_or("").to_string();
        let text = format!(
            "{}{}",
            if code.is_empty() {
                String::new()
            } else {
                format!("{code}: ")
            },
            aws_sdk_cloudwatch::error::DisplayErrorContext(&err)
        );
        const THROTTLING: [&str; 5] = [
            "Throttling",
            "ThrottlingException",
            "ThrottledException",
            "RequestLimitExceeded",
            "TooManyRequestsException",
        ];
        const INVALID: [&str; 4] = [
            "InvalidParameterValue",
            "InvalidParameterCombination",
            "MissingParameter",
            "InvalidParameterValueException",
        ];
        if THROTTLING.contains(&code.as_str()) {
            return Err(CallError::Retryable(text));
        }
        if INVALID.contains(&code.as_str()) {
            return Err(CallError::Invalid(text));
        }
        match status {
            // No response at all (timeout, connection refused) or a server error.
            None => Err(CallError::Retryable(text)),
            Some(s) if s == 429 || s >= 500 => Err(CallError::Retryable(text)),
            Some(_) => Err(CallError::Fatal(text)),
        }
    }
}

/// Exponential backoff with full jitter before attempt `attempt + 1`.
pub fn backoff(policy: &RetryPolicy, attempt: u32) -> Duration {
    let exp = policy
        .base_delay
        .saturating_mul(1u32 << (attempt.saturating_sub(1)).min(16))
        .min(policy.max_delay);
    // Jitter from the clock's nanoseconds: good enough to spread retries.
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let fraction = 0.5 + f64::from(nanos % 1000) / 2000.0;
    exp.mul_f64(fraction)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merge::Window;

    fn entry(
        requests: u64,
        latency_spread: u64,
        contributors: &[usize],
    ) -> (MetricKey, MetricEntry) {
        let mut stats = ClientStats::default();
        for i in 0..requests {
            let latency = (latency_spread > 0).then(|| 1 + (i % latency_spread) * 10_000);
            stats.record(Some(if i % 10 == 0 { 503 } else { 200 }), 100, latency);
        }
        (
            MetricKey {
                window: Window {
                    start: 1_700_000_100,
                    secs: 300,
                },
                service: "web".into(),
                application: "shop".into(),
            },
            MetricEntry {
                stats,
                contributors: contributors.iter().copied().collect(),
            },
        )
    }

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_400)
    }

    #[test]
    fn datums_per_metric_and_dimension_set() {
        let (k, e) = entry(20, 3, &[0, 2]);
        let plan = plan(&[(&k, &e)], now());
        // 5 metrics × 2 dimension sets.
        assert_eq!(plan.datums.len(), 10);
        let find = |name: &str, dims: usize| {
            plan.datums
                .iter()
                .find(|d| d.datum.metric_name() == Some(name) && d.datum.dimensions().len() == dims)
                .expect("datum")
        };
        assert_eq!(find(REQUESTS, 2).datum.value(), Some(20.0));
        assert_eq!(find(BYTES, 1).datum.value(), Some(2000.0));
        assert_eq!(find(SERVER_ERRORS, 2).datum.value(), Some(2.0));
        assert_eq!(find(CLIENT_ERRORS, 2).datum.value(), Some(0.0));
        let lat = find(LATENCY, 2);
        assert_eq!(lat.datum.unit(), Some(&StandardUnit::Microseconds));
        assert_eq!(lat.datum.counts().iter().sum::<f64>(), 20.0);
        assert_eq!(lat.datum.values().len(), 3);
        assert_eq!(lat.datum.storage_resolution(), Some(60));
        assert_eq!(lat.datum.timestamp().map(|t| t.secs()), Some(1_700_000_100));
        assert_eq!(*lat.contributors, BTreeSet::from([0, 2]));
        let dims: Vec<_> = find(REQUESTS, 2)
            .datum
            .dimensions()
            .iter()
            .map(|d| (d.name().unwrap_or(""), d.value().unwrap_or("")))
            .collect();
        assert_eq!(
            dims,
            vec![("Service", "web"), ("SourceApplication", "shop")]
        );
    }

    #[test]
    fn no_latency_datum_without_latency() {
        let (k, e) = entry(5, 0, &[0]);
        let plan = plan(&[(&k, &e)], now());
        assert_eq!(plan.datums.len(), 8);
        assert!(plan
            .datums
            .iter()
            .all(|d| d.datum.metric_name() != Some(LATENCY)));
    }

    #[test]
    fn a_wide_histogram_is_split_at_150_values() {
        let (k, mut e) = entry(1000, 0, &[0]);
        for i in 0..1000 {
            e.stats
                .latency
                .record((10.0 * 1.05f64.powi(i % 400)) as u64);
        }
        let buckets = e.stats.latency.buckets().count();
        assert!(buckets > 300, "{buckets}");
        let plan = plan(&[(&k, &e)], now());
        let lat: Vec<_> = plan
            .datums
            .iter()
            .filter(|d| d.datum.metric_name() == Some(LATENCY) && d.datum.dimensions().len() == 2)
            .collect();
        assert_eq!(lat.len(), buckets.div_ceil(150));
        assert!(lat.iter().all(|d| d.datum.values().len() <= 150));
        assert_eq!(
            lat.iter()
                .map(|d| d.datum.counts().iter().sum::<f64>())
                .sum::<f64>(),
            1000.0
        );
    }

    #[test]
    fn rollup_over_services() {
        let (k1, e1) = entry(3, 0, &[0]);
        let (mut k2, e2) = entry(4, 0, &[1]);
        k2.service = "api".into();
        let plan = plan(&[(&k1, &e1), (&k2, &e2)], now());
        let app_only: Vec<_> = plan
            .datums
            .iter()
            .filter(|d| d.datum.metric_name() == Some(REQUESTS) && d.datum.dimensions().len() == 1)
            .collect();
        assert_eq!(app_only.len(), 1);
        assert_eq!(app_only[0].datum.value(), Some(7.0));
        assert_eq!(*app_only[0].contributors, BTreeSet::from([0, 1]));
    }

    #[test]
    fn old_and_future_windows_are_unpublishable() {
        let (mut k, e) = entry(3, 2, &[0]);
        k.window.start = 1_700_000_100 - 15 * 86_400;
        let p = plan(&[(&k, &e)], now());
        assert!(p.datums.is_empty());
        assert_eq!(p.unpublishable.len(), 2);
        assert_eq!(p.unpublishable_datums, 10);
        assert!(p.unpublishable[0].reason.contains("two weeks"));
        k.window.start = 1_700_000_100 + 3 * 3600;
        let p = plan(&[(&k, &e)], now());
        assert!(p.unpublishable[0].reason.contains("two hours"));
        assert!(check_timestamp(1_700_000_100 - 13 * 86_400, now()).is_ok());
    }

    #[test]
    fn batches_respect_count_and_size() {
        let (k, e) = entry(2000, 600, &[0]);
        let mut entries = Vec::new();
        let keys: Vec<MetricKey> = (0..300)
            .map(|i| MetricKey {
                application: format!("app-{i}").into(),
                ..k.clone()
            })
            .collect();
        for key in &keys {
            entries.push((key, &e));
        }
        let p = plan(&entries, now());
        let ranges = batches(&p.datums, MAX_DATUMS_PER_CALL, MAX_BYTES_PER_CALL);
        let mut covered = 0;
        for r in &ranges {
            assert_eq!(r.start, covered);
            covered = r.end;
            assert!(r.len() <= MAX_DATUMS_PER_CALL);
            let bytes: usize =
                CALL_OVERHEAD + p.datums[r.clone()].iter().map(|d| d.size).sum::<usize>();
            assert!(bytes <= MAX_BYTES_PER_CALL, "{bytes}");
        }
        assert_eq!(covered, p.datums.len());
        assert!(
            ranges.len() > p.datums.len() / MAX_DATUMS_PER_CALL + 1,
            "size limit was binding"
        );

        // Count limit alone.
        let small: Vec<PlannedDatum> = plan(&[(&k, &entry(1, 0, &[0]).1)], now()).datums;
        let many: Vec<PlannedDatum> = small.iter().cycle().take(2500).cloned().collect();
        let r = batches(&many, 1000, usize::MAX);
        assert_eq!(r, vec![0..1000, 1000..2000, 2000..2500]);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy::default();
        assert!(backoff(&p, 1) <= Duration::from_millis(200));
        assert!(backoff(&p, 1) >= Duration::from_millis(100));
        assert!(backoff(&p, 10) <= Duration::from_secs(5));
        assert!(backoff(&p, 10) >= Duration::from_millis(2500));
    }
}
