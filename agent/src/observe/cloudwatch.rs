//! Publishing the agent's own metrics to CloudWatch.
//!
//! Every `interval` (default 60 s) the publisher reads the counters of every
//! running flow (see [`crate::observe::metric_set::METRICS`]) and puts, per flow, each
//! counter's increase since the last *successful* publication and each
//! gauge's value now, with dimension `Flow`, in PutMetricData calls of at
//! most 1,000 datums. With a host (`host_dimension`), the metrics of
//! [`PER_HOST`] are put a second time with `Flow` and `Host`. It runs on its own task and
//! only reads relaxed atomics: a slow or failing CloudWatch never holds up
//! reading or shipping. A failed call is logged (rate-limited) and its
//! increases are carried into the next interval's datums, so sums over time
//! stay right; nothing is retried in between.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};

use crate::observe::metric_set::{Kind, Unit, METRICS, PER_HOST};
use crate::observe::registry::Registry;
use crate::shared::counters::now_ms;
use crate::shared::ratelog::Repeats;

/// Most datums per PutMetricData call (CloudWatch's limit).
pub const MAX_DATUMS_PER_CALL: usize = 1000;

/// Dimension naming the flow.
pub const DIM_FLOW: &str = "Flow";
/// Dimension naming the host (optional).
pub const DIM_HOST: &str = "Host";

/// Publishes the registry's flows to one namespace.
pub struct Publisher {
    client: aws_sdk_cloudwatch::Client,
    namespace: String,
    host: Option<String>,
    registry: Arc<Registry>,
    /// Counter values at the last successful publication, per (flow, metric).
    published: HashMap<(String, &'static str), u64>,
    errors: Repeats,
}

/// A datum and, for a counter, the value it brings the published total to.
type Planned = (MetricDatum, Option<((String, &'static str), u64)>);

impl Publisher {
    /// A publisher; `host` adds the `Host` dimension to [`PER_HOST`]'s metrics.
    pub fn new(
        client: aws_sdk_cloudwatch::Client,
        namespace: String,
        host: Option<String>,
        registry: Arc<Registry>,
    ) -> Publisher {
        Publisher {
            client,
            namespace,
            host,
            registry,
            published: HashMap::new(),
            errors: Repeats::default(),
        }
    }

    fn plan(&self) -> Vec<Planned> {
        let at = DateTime::from_millis(now_ms() as i64);
        let mut datums = Vec::new();
        for (flow, entry) in self.registry.flows() {
            let dims = vec![Dimension::builder().name(DIM_FLOW).value(&flow).build()];
            let host_dims = self.host.as_ref().map(|host| {
                let mut d = dims.clone();
                d.push(Dimension::builder().name(DIM_HOST).value(host).build());
                d
            });
            for m in METRICS {
                let now = (m.get)(&entry.stats);
                let (value, covers) = match m.kind {
                    Kind::Gauge => (now, None),
                    Kind::Counter => {
                        let key = (flow.clone(), m.cloudwatch);
                        let before = self.published.get(&key).copied().unwrap_or(0);
                        // A flow removed and added again starts from zero.
                        let delta = if now >= before { now - before } else { now };
                        (delta, Some((key, now)))
                    }
                };
                let unit = match m.unit {
                    Unit::Count => StandardUnit::Count,
                    Unit::Bytes => StandardUnit::Bytes,
                    Unit::Seconds => StandardUnit::Seconds,
                };
                let datum = |dims: &Vec<Dimension>| {
                    MetricDatum::builder()
                        .metric_name(m.cloudwatch)
                        .set_dimensions(Some(dims.clone()))
                        .timestamp(at)
                        .value(value as f64)
                        .unit(unit.clone())
                        .storage_resolution(60)
                        .build()
                };
                if let Some(host_dims) = host_dims
                    .as_ref()
                    .filter(|_| PER_HOST.contains(&m.cloudwatch))
                {
                    datums.push((datum(host_dims), None));
                }
                datums.push((datum(&dims), covers));
            }
        }
        datums
    }

    /// Publish once; returns the number of datums put.
    pub async fn publish_once(&mut self) -> Result<usize, String> {
        let planned = self.plan();
        let total = planned.len();
        for chunk in planned.chunks(MAX_DATUMS_PER_CALL) {
            let datums = chunk.iter().map(|(d, _)| d.clone()).collect();
            self.client
                .put_metric_data()
                .namespace(&self.namespace)
                .set_metric_data(Some(datums))
                .send()
                .await
                .map_err(|e| aws_sdk_cloudwatch::error::DisplayErrorContext(&e).to_string())?;
            // Only now do this call's increases count as published: a
            // failure carries them into the next interval.
            self.published
                .extend(chunk.iter().filter_map(|(_, c)| c.clone()));
        }
        Ok(total)
    }

    /// Publish every `interval`; when `done` turns true, publish a last
    /// time and return.
    pub async fn run(mut self, interval: Duration, mut done: tokio::sync::watch::Receiver<bool>) {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            let last = tokio::select! {
                _ = ticks.tick() => false,
                _ = done.wait_for(|d| *d) => true,
            };
            match self.publish_once().await {
                Ok(n) => {
                    if failing {
                        tracing::info!(namespace = %self.namespace, datums = n, "self-metrics published again");
                    }
                    failing = false;
                }
                Err(e) => {
                    failing = true;
                    if let Some(more) = self.errors.check() {
                        tracing::warn!(namespace = %self.namespace, error = %e, "cannot publish self-metrics to CloudWatch; retrying next interval{more}");
                    }
                }
            }
            if last {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{units::Toggle, Validated};
    use std::path::Path;
    use std::time::Duration;

    const FLOWS: &str =
        "flows:\n  - name: web\n    paths: [\"/l/a.log\"]\n    format: common\n    stream: s\n";

    #[test]
    fn monitoring_section_defaults_and_errors() {
        let v = Validated::parse(Path::new("t.yaml"), FLOWS).expect("valid");
        let m = &v.monitoring;
        assert_eq!(m.cloudwatch.enabled, Toggle::Auto);
        assert_eq!(m.cloudwatch.namespace, "Tailrace/Agent");
        assert_eq!(m.cloudwatch.interval, Duration::from_secs(60));
        assert!(!m.http.enabled);
        assert_eq!(m.http.listen, "127.0.0.1:9877");

        let text = format!(
            "monitoring:\n  cloudwatch:\n    enabled: false\n    interval: 10s\n  http:\n    enabled: true\n    listen: 0.0.0.0:9100\n{FLOWS}"
        );
        let v = Validated::parse(Path::new("t.yaml"), &text).expect("valid");
        assert_eq!(v.monitoring.cloudwatch.enabled, Toggle::Off);
        assert_eq!(v.monitoring.cloudwatch.interval, Duration::from_secs(10));
        assert_eq!(v.monitoring.http.listen, "0.0.0.0:9100");

        let text = format!(
            "monitoring:\n  cloudwatch:\n    namespace: AWS/Mine\n    interval: 0s\n  http:\n    listen: localhost\n{FLOWS}"
        );
        let err = Validated::parse(Path::new("t.yaml"), &text)
            .expect_err("invalid")
            .to_string();
        for key in [
            "monitoring.cloudwatch.namespace",
            "monitoring.cloudwatch.interval",
            "monitoring.http.listen",
        ] {
            assert!(err.contains(key), "{key} in {err}");
        }
        let text = format!("monitoring:\n  cloudwatch:\n    enabled: sometimes\n{FLOWS}");
        let err = Validated::parse(Path::new("t.yaml"), &text)
            .expect_err("invalid")
            .to_string();
        assert!(err.contains("expected `true`, `false` or `auto`"), "{err}");
    }
}
