//! Reading an application's window totals back from CloudWatch, without
//! depending on metric discovery.
//!
//! CloudWatch documents that a new metric can take up to fifteen minutes to
//! appear in `ListMetrics`, and the first flood of an application that never
//! published before is the one most likely to be news. So totals are read
//! with `GetMetricData` from the dimension sets the aggregator publishes
//! (the metric model, `TAILRACE_DIMENSIONS`), which need no listing:
//!
//! - the `[SourceApplication=app]` rollup, when the model publishes it: the
//!   window's total;
//! - `[Service=s, SourceApplication=app]` for every service `s` known from
//!   the window's client tallies (written by the aggregator as it
//!   published, read back from S3 with strong consistency) and from
//!   `ListMetrics` (best effort: blind for new metrics): the per-service
//!   split, and the total when the model has no rollup.
//!
//! Every metric is asked for by its full dimension set, so an emulator that
//! matches dimensions as a subset (moto's GetMetricStatistics) cannot count
//! a datum twice.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, DimensionFilter, Metric, MetricDataQuery, MetricStat};

use crate::publish::model::{DimensionSet, MetricModel};
use crate::publish::plan::{DIM_APPLICATION, DIM_SERVICE, REQUESTS};

use super::window::WindowTotal;
use super::NotifyError;

/// One metric to read: its service (`None` for the rollup) and its
/// dimensions.
type DimensionQuery<'a> = (Option<&'a str>, Vec<(&'a str, &'a str)>);

/// Queries per GetMetricData call (CloudWatch's limit is 500).
const QUERIES_PER_CALL: usize = 500;

/// Reads `Requests` sums of one namespace.
pub struct Totals<'a> {
    /// The client.
    pub cloudwatch: &'a aws_sdk_cloudwatch::Client,
    /// The aggregator's namespace.
    pub namespace: &'a str,
    /// What the aggregator publishes.
    pub model: &'a MetricModel,
}

impl Totals<'_> {
    /// Per window starting in `[start, end)`, the application's total and
    /// its split over `services`.
    pub async fn window_totals(
        &self,
        application: &str,
        services: &BTreeSet<String>,
        start: i64,
        end: i64,
        period: u32,
    ) -> Result<Vec<WindowTotal>, NotifyError> {
        let rollup = self.model.has_set(DimensionSet::Application);
        let pairs = self.model.has_set(DimensionSet::ServiceApplication);
        let mut sets: Vec<DimensionQuery<'_>> = Vec::new();
        if rollup {
            sets.push((None, vec![(DIM_APPLICATION, application)]));
        }
        if pairs {
            for s in services {
                sets.push((
                    Some(s.as_str()),
                    vec![(DIM_SERVICE, s.as_str()), (DIM_APPLICATION, application)],
                ));
            }
        }
        let mut windows: BTreeMap<i64, WindowTotal> = BTreeMap::new();
        let mut rollup_seen: BTreeSet<i64> = BTreeSet::new();
        for chunk in sets.chunks(QUERIES_PER_CALL) {
            let sums = self.sums(chunk, start, end, period).await?;
            for (i, points) in sums.into_iter().enumerate() {
                let service = chunk[i].0;
                for (ts, value) in points {
                    let w = windows.entry(ts).or_insert_with(|| WindowTotal {
                        application: application.to_owned(),
                        window_start: ts,
                        window_secs: period,
                        requests: 0.0,
                        per_service: BTreeMap::new(),
                    });
                    match service {
                        None => {
                            w.requests = value;
                            rollup_seen.insert(ts);
                        }
                        Some(s) => {
                            *w.per_service.entry(s.to_owned()).or_default() += value;
                        }
                    }
                }
            }
        }
        for (ts, w) in &mut windows {
            if !rollup_seen.contains(ts) {
                w.requests = w.per_service.values().sum();
            }
        }
        Ok(windows.into_values().collect())
    }

    /// `(period start, Sum)` of `Requests` for each dimension set, in order.
    async fn sums(
        &self,
        sets: &[DimensionQuery<'_>],
        start: i64,
        end: i64,
        period: u32,
    ) -> Result<Vec<Vec<(i64, f64)>>, NotifyError> {
        let err = |e: String| NotifyError::CloudWatch {
            what: format!("{REQUESTS} of {} dimension sets", sets.len()),
            message: e,
        };
        let queries: Vec<MetricDataQuery> = sets
            .iter()
            .enumerate()
            .map(|(i, (_, dims))| {
                let metric = Metric::builder()
                    .namespace(self.namespace)
                    .metric_name(REQUESTS)
                    .set_dimensions(Some(
                        dims.iter()
                            .map(|(k, v)| Dimension::builder().name(*k).value(*v).build())
                            .collect(),
                    ))
                    .build();
                let stat = MetricStat::builder()
                    .metric(metric)
                    .period(period as i32)
                    .stat("Sum")
                    .build();
                MetricDataQuery::builder()
                    .id(format!("m{i}"))
                    .metric_stat(stat)
                    .return_data(true)
                    .build()
            })
            .collect();
        let mut out: Vec<Vec<(i64, f64)>> = vec![Vec::new(); sets.len()];
        if queries.is_empty() {
            return Ok(out);
        }
        let mut token: Option<String> = None;
        loop {
            let page = self
                .cloudwatch
                .get_metric_data()
                .set_metric_data_queries(Some(queries.clone()))
                .start_time(DateTime::from_secs(start))
                .end_time(DateTime::from_secs(end))
                .set_next_token(token.clone())
                .send()
                .await
                .map_err(|e| err(aws_sdk_cloudwatch::error::DisplayErrorContext(e).to_string()))?;
            for r in page.metric_data_results() {
                let Some(i) = r
                    .id()
                    .and_then(|id| id.strip_prefix('m'))
                    .and_then(|n| n.parse::<usize>().ok())
                else {
                    continue;
                };
                if let Some(points) = out.get_mut(i) {
                    for (t, v) in r.timestamps().iter().zip(r.values()) {
                        points.push((t.secs(), *v));
                    }
                }
            }
            token = page.next_token().map(str::to_owned);
            if token.is_none() {
                return Ok(out);
            }
        }
    }

    /// The services `ListMetrics` lists for the application (best effort:
    /// a new metric can be missing for up to 15 minutes).
    pub async fn listed_services(
        &self,
        application: &str,
    ) -> Result<BTreeSet<String>, NotifyError> {
        let sets = self.listed(Some(application)).await?;
        Ok(sets
            .into_iter()
            .filter_map(|s| s.get(DIM_SERVICE).cloned())
            .collect())
    }

    /// The applications `ListMetrics` lists (best effort, as above).
    pub async fn listed_applications(&self) -> Result<BTreeSet<String>, NotifyError> {
        let sets = self.listed(None).await?;
        Ok(sets
            .into_iter()
            .filter_map(|s| s.get(DIM_APPLICATION).cloned())
            .collect())
    }

    /// The distinct dimension sets `ListMetrics` lists for `Requests`,
    /// optionally only those of one application.
    async fn listed(
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
            .namespace(self.namespace)
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
                return Ok(sets);
            }
        }
    }
}
