//! The PutMetricData calls of a plan ([`super::plan`]), with their retries.
//!
//! Datums with timestamps CloudWatch would refuse are not sent, but counted
//! and logged as errors. Throttling and transient errors are retried
//! with exponential backoff and jitter; a call that still fails reports the
//! records behind its datums. Every attempt is bounded by
//! [`RetryPolicy::attempt_timeout`], and the SDK's own retries are turned off
//! for this client (`clients`), so [`RetryPolicy::max_attempts`] is the whole
//! bound.
//!
//! A call CloudWatch refuses as invalid (`InvalidParameterValue`: one datum
//! with a dimension value CloudWatch will not take fails the whole call) is
//! never retried as is: it is split in two, at a unit boundary when it holds
//! several units, and each half is sent again, until the refused datum is
//! alone. Only that datum is dropped, logged with its metric, dimensions
//! and timestamp, and counted in `DroppedDatums`; it fails no record
//! (retrying the record could never succeed). A publish spends at most
//! [`MAX_BISECTION_CALLS`] splits. When a unit's own datums are split apart
//! and one half then fails for good, a retry of its records publishes the
//! half that was stored again: an over-count that needs a refused call and a
//! failed call in the same unit.

use std::collections::{BTreeSet, VecDeque};
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_cloudwatch::error::ProvideErrorMetadata;
use aws_sdk_cloudwatch::types::MetricDatum;

use super::packing::{batches, split_range, MAX_BYTES_PER_CALL, MAX_DATUMS_PER_CALL};
use super::plan::{estimate_size, health_datum, plan_model, Plan, PlannedDatum, DROPPED_DATUMS};
use crate::join::merge::{MetricEntry, MetricKey};
use crate::publish::model::MetricModel;

/// Retry rules for PutMetricData.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in total (first try included).
    pub max_attempts: u32,
    /// Backoff before the second attempt; doubles each time.
    pub base_delay: Duration,
    /// Cap on one backoff.
    pub max_delay: Duration,
    /// How long one attempt may take before it counts as failed (retryable).
    pub attempt_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
            attempt_timeout: crate::config::DEFAULT_PUT_TIMEOUT,
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
    /// Datums CloudWatch refused as invalid, each isolated by bisection (not
    /// retried, failing no record), plus the plan's datums with timestamps
    /// CloudWatch would refuse: what [`DROPPED_DATUMS`] reports.
    pub dropped_datums: usize,
    /// Calls CloudWatch refused as invalid, each split in two and sent again.
    pub bisections: usize,
    /// Calls that failed after their last attempt (their records fail).
    pub failed_calls: usize,
    /// Batch indices of records behind calls that failed after retries.
    pub failed_records: BTreeSet<usize>,
    /// Indices (in [`Plan::units`]) of units with a datum in a failed call.
    pub failed_units: BTreeSet<usize>,
    /// Units split over calls because they exceed a call's limits on their own.
    pub split_units: usize,
    /// The errors of failed calls.
    pub errors: Vec<String>,
}

/// Sends datums to CloudWatch.
#[derive(Debug, Clone)]
pub struct Publisher {
    client: aws_sdk_cloudwatch::Client,
    namespace: String,
    retry: RetryPolicy,
    model: MetricModel,
}

enum CallError {
    Retryable(String),
    Invalid(String),
    Fatal(String),
}

/// How one call (with its retries) ended.
enum Sent {
    /// Stored, or failed for good (recorded in the outcome).
    Done,
    /// Refused as invalid: the error.
    Invalid(String),
}

/// At most this many calls a publish spends on isolating refused datums.
/// With `k` bad datums among `n`, bisection needs about `2k·log2(n/k)`
/// calls; past the budget a refused call is dropped whole (and said so).
pub const MAX_BISECTION_CALLS: usize = 128;

impl Publisher {
    /// A publisher into `namespace`, with the default metric model.
    pub fn new(client: aws_sdk_cloudwatch::Client, namespace: impl Into<String>) -> Publisher {
        Publisher {
            client,
            namespace: namespace.into(),
            retry: RetryPolicy::default(),
            model: MetricModel::default(),
        }
    }

    /// Replace the retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Publisher {
        self.retry = retry;
        self
    }

    /// Replace the metric model.
    pub fn with_model(mut self, model: MetricModel) -> Publisher {
        self.model = model;
        self
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The metric model.
    pub fn model(&self) -> &MetricModel {
        &self.model
    }

    /// The datums for merged entries under this publisher's model.
    pub fn plan(&self, entries: &[(&MetricKey, &MetricEntry)], now: SystemTime) -> Plan {
        plan_model(entries, &self.model, now)
    }

    /// Send every datum of `plan`.
    pub async fn publish(&self, plan: &Plan) -> PublishOutcome {
        self.publish_until(plan, None).await
    }

    /// Send every datum of `plan`, finishing before `deadline` (the Lambda
    /// invocation's, less [`DEADLINE_MARGIN`]): an attempt is cut to the time
    /// left, and a call for which no attempt or retry fits any more fails
    /// its records now, so the handler can still report them and keep what
    /// it knows of the calls that succeeded (a timed-out invocation would
    /// lose that and fail the whole batch).
    ///
    /// A call CloudWatch refuses as invalid is split in two (at a unit
    /// boundary when it holds several units) and each half sent again, until
    /// the refused datum is alone: only it is dropped, logged with its
    /// metric, dimensions and timestamp. Dropped datums (and those the plan
    /// found unpublishable) are then published as [`DROPPED_DATUMS`].
    pub async fn publish_until(&self, plan: &Plan, deadline: Option<Instant>) -> PublishOutcome {
        let mut outcome = PublishOutcome::default();
        let ranges = batches(&plan.datums, MAX_DATUMS_PER_CALL, MAX_BYTES_PER_CALL);
        let mut split = BTreeSet::new();
        for pair in ranges.windows(2) {
            let (a, b) = (&plan.datums[pair[0].end - 1], &plan.datums[pair[1].start]);
            if a.unit == b.unit {
                split.insert(a.unit);
            }
        }
        outcome.split_units = split.len();
        for unit in &split {
            tracing::warn!(
                unit = ?plan.units.get(*unit).map(|u| &u.key),
                "a unit exceeds one PutMetricData call and is split: if only some of its calls fail, a retry publishes the others again"
            );
        }
        let mut queue: VecDeque<Range<usize>> = ranges.into();
        while let Some(range) = queue.pop_front() {
            let chunk = &plan.datums[range.clone()];
            let Sent::Invalid(error) = self.send(chunk, deadline, &mut outcome).await else {
                continue;
            };
            if range.len() > 1 && outcome.bisections < MAX_BISECTION_CALLS {
                tracing::warn!(
                    datums = range.len(),
                    error = %error,
                    "CloudWatch refused PutMetricData as invalid: splitting the call to isolate the bad datum"
                );
                outcome.bisections += 1;
                let (a, b) = split_range(&plan.datums, range);
                queue.push_front(b);
                queue.push_front(a);
                continue;
            }
            for d in chunk {
                tracing::error!(
                    metric = d.datum.metric_name().unwrap_or(""),
                    dimensions = %describe_dimensions(&d.datum),
                    timestamp = d.datum.timestamp().map_or(0, |t| t.secs()),
                    error = %error,
                    "CloudWatch refused this datum as invalid: dropped (not retried)"
                );
            }
            if chunk.len() > 1 {
                tracing::error!(
                    datums = chunk.len(),
                    bisections = outcome.bisections,
                    "bisection budget spent: a refused call was dropped whole"
                );
            }
            outcome.dropped_datums += chunk.len();
            outcome.errors.push(error);
        }
        let dropped = outcome.dropped_datums + plan.unpublishable_datums;
        if dropped > 0 {
            let datum = health_datum(DROPPED_DATUMS, dropped as f64, SystemTime::now());
            let size = estimate_size(&datum);
            let planned = [PlannedDatum {
                datum,
                contributors: Arc::new(BTreeSet::new()),
                size,
                unit: usize::MAX,
            }];
            if let Sent::Invalid(e) = self.send(&planned, deadline, &mut outcome).await {
                tracing::error!(error = %e, "CloudWatch refused the DroppedDatums health metric");
                outcome.errors.push(e);
            }
            outcome.dropped_datums = dropped;
        }
        outcome
    }

    /// One call with its retries. Stored, or failed for good (its records
    /// and units fail, in `outcome`), or refused as invalid.
    async fn send(
        &self,
        chunk: &[PlannedDatum],
        deadline: Option<Instant>,
        outcome: &mut PublishOutcome,
    ) -> Sent {
        let data: Vec<MetricDatum> = chunk.iter().map(|d| d.datum.clone()).collect();
        let mut attempt = 1;
        loop {
            let timeout = match time_left(deadline) {
                Some(left) if left < MIN_ATTEMPT => {
                    fail_chunk(
                        outcome,
                        chunk,
                        attempt - 1,
                        "not attempted: the invocation's deadline is near".into(),
                    );
                    return Sent::Done;
                }
                Some(left) => self.retry.attempt_timeout.min(left),
                None => self.retry.attempt_timeout,
            };
            match self.call(data.clone(), timeout).await {
                Ok(()) => {
                    outcome.calls += 1;
                    outcome.datums += chunk.len();
                    return Sent::Done;
                }
                Err(CallError::Retryable(e)) if attempt < self.retry.max_attempts => {
                    let delay = backoff(&self.retry, attempt);
                    if time_left(deadline).is_some_and(|left| left < delay + MIN_ATTEMPT) {
                        fail_chunk(
                            outcome,
                            chunk,
                            attempt,
                            format!("{e}; no time left to retry before the invocation's deadline"),
                        );
                        return Sent::Done;
                    }
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
                Err(CallError::Invalid(e)) => return Sent::Invalid(e),
                Err(CallError::Retryable(e)) | Err(CallError::Fatal(e)) => {
                    fail_chunk(outcome, chunk, attempt, e);
                    return Sent::Done;
                }
            }
        }
    }

    async fn call(&self, data: Vec<MetricDatum>, timeout: Duration) -> Result<(), CallError> {
        let send = self
            .client
            .put_metric_data()
            .namespace(&self.namespace)
            .set_metric_data(Some(data))
            .send();
        let err = match tokio::time::timeout(timeout, send).await {
            Err(_) => {
                return Err(CallError::Retryable(format!(
                    "no answer within {timeout:?}"
                )))
            }
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => e,
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

/// `Name=value` pairs of a datum's dimensions, values quoted and escaped.
fn describe_dimensions(datum: &MetricDatum) -> String {
    datum
        .dimensions()
        .iter()
        .map(|d| format!("{}={:?}", d.name().unwrap_or(""), d.value().unwrap_or("")))
        .collect::<Vec<_>>()
        .join(",")
}

/// Time kept in hand before an invocation's deadline.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(1);
/// The shortest attempt worth starting.
pub const MIN_ATTEMPT: Duration = Duration::from_millis(500);

fn time_left(deadline: Option<Instant>) -> Option<Duration> {
    deadline.map(|d| {
        d.saturating_duration_since(Instant::now())
            .saturating_sub(DEADLINE_MARGIN)
    })
}

/// A call failed for good after `attempts`: its records and units fail.
fn fail_chunk(outcome: &mut PublishOutcome, chunk: &[PlannedDatum], attempts: u32, error: String) {
    tracing::error!(
        datums = chunk.len(),
        attempts,
        error = %error,
        "PutMetricData failed: the records behind these datums fail"
    );
    outcome.failed_calls += 1;
    for d in chunk {
        outcome
            .failed_records
            .extend(d.contributors.iter().copied());
        outcome.failed_units.insert(d.unit);
    }
    outcome.errors.push(error);
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

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy::default();
        assert!(backoff(&p, 1) <= Duration::from_millis(200));
        assert!(backoff(&p, 1) >= Duration::from_millis(100));
        assert!(backoff(&p, 10) <= Duration::from_secs(5));
        assert!(backoff(&p, 10) >= Duration::from_millis(2500));
    }
}
