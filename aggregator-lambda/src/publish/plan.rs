//! The pure plan of a publish: the datums of the merged windows, grouped in
//! units. Packing them into calls, and splitting a refused call, is
//! [`super::packing`]; no I/O: the calls are [`super::calls`].
//!
//! Datums are planned in *units*, one per (window, source application): the
//! datums of that application in every selected set. A unit is never
//! split over two PutMetricData calls unless it alone exceeds a call's limits
//! (then it is split and said so in the log), so a call that fails leaves
//! every unit either wholly published or wholly not; the handler remembers
//! which units of a partial were published so a retry publishes only the
//! rest (see `merge::SeenPartials`).
//!
//! Health metrics, without dimensions and timestamped at the batch's
//! minute, are added when not zero: `PoisonRecords` (records skipped as
//! undecodable), `RejectedLines` (raw or JSON lines that did not parse, here
//! or on the agents), `MetadataStale` (1 per batch handled with a metadata
//! table that is not the current file's, because S3 could not be read or
//! the file has wrong rows) and `DroppedDatums` (datums that will never
//! reach CloudWatch: refused as invalid, or with a timestamp CloudWatch
//! refuses). Their failure fails no record.
//!
//! Limits kept: at most 1,000 datums and an estimated 1 MB of request body per
//! PutMetricData call. Timestamps more than two weeks old or more than two
//! hours ahead are refused by CloudWatch: such datums are not planned, but
//! counted as unpublishable.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use tailrace_wire::ClientStats;

use crate::join::merge::{MetricEntry, MetricKey, Window};
use crate::publish::model::{DimensionSet, Metric, MetricModel};

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
/// Health metric: records skipped as undecodable in a batch.
pub const POISON_RECORDS: &str = "PoisonRecords";
/// Health metric: lines that did not parse in a batch.
pub const REJECTED_LINES: &str = "RejectedLines";
/// Health metric: 1 per batch handled with a stale metadata table.
pub const METADATA_STALE: &str = "MetadataStale";
/// Health metric: datums that will never reach CloudWatch (refused as
/// invalid, or timestamps CloudWatch refuses), per batch.
pub const DROPPED_DATUMS: &str = "DroppedDatums";

/// At most this many `Values`/`Counts` entries per datum.
pub const MAX_VALUES_PER_DATUM: usize = 150;
/// Storage resolution of every datum (standard resolution).
pub const STORAGE_RESOLUTION: i32 = 60;
/// Oldest timestamp CloudWatch accepts, minus a safety margin.
pub const MAX_AGE: Duration = Duration::from_secs(14 * 86_400 - 300);
/// Farthest future timestamp CloudWatch accepts, minus a safety margin.
pub const MAX_AHEAD: Duration = Duration::from_secs(2 * 3600 - 300);

/// One datum and the records behind it.
#[derive(Debug, Clone)]
pub struct PlannedDatum {
    /// The datum.
    pub datum: MetricDatum,
    /// Batch indices of the records that contributed.
    pub contributors: Arc<BTreeSet<usize>>,
    /// Estimated size in the request body (Query protocol, URL-encoded).
    pub size: usize,
    /// Index of its unit in [`Plan::units`].
    pub unit: usize,
}

/// What a unit of datums is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum UnitKey {
    /// Every datum of one application in one window, all services and the
    /// rollup.
    Metrics {
        /// The window.
        window: Window,
        /// The application.
        application: Arc<str>,
    },
    /// The batch's health metrics.
    Health,
}

/// Datums published together, and the records behind them.
#[derive(Debug, Clone)]
pub struct Unit {
    /// What they are about.
    pub key: UnitKey,
    /// Batch indices of the records that contributed.
    pub contributors: Arc<BTreeSet<usize>>,
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
    /// Publishable datums, unit after unit.
    pub datums: Vec<PlannedDatum>,
    /// The units, in datum order.
    pub units: Vec<Unit>,
    /// Keys whose timestamps CloudWatch would refuse.
    pub unpublishable: Vec<Unpublishable>,
    /// Datums not built because of those.
    pub unpublishable_datums: usize,
}

/// Build the datums for merged entries with the default model, as of `now`.
pub fn plan(entries: &[(&MetricKey, &MetricEntry)], now: SystemTime) -> Plan {
    plan_model(entries, &MetricModel::default(), now)
}

/// Build the datums for merged entries under `model`, as of `now`: per
/// (window, application), for each service its `[Service,
/// SourceApplication]` and `[Service]` datums, then the `[SourceApplication]`
/// rollup over services — each only if the model has it.
///
/// The `[Service]` set is published per (window, service, application) too,
/// as this application's share: CloudWatch adds the datapoints of a period,
/// so `Sum`, `SampleCount` and percentiles over a window are the service's
/// total, and every datum stays in one application's unit (the unit of
/// retries and of exactly-once bookkeeping). It costs datums (one per
/// application instead of one per service), not metrics.
pub fn plan_model(
    entries: &[(&MetricKey, &MetricEntry)],
    model: &MetricModel,
    now: SystemTime,
) -> Plan {
    let mut plan = Plan::default();
    type Keys<'a> = Vec<(&'a MetricKey, &'a MetricEntry)>;
    let mut units: BTreeMap<(Window, Arc<str>), Keys<'_>> = BTreeMap::new();
    for (key, entry) in entries {
        units
            .entry((key.window, key.application.clone()))
            .or_default()
            .push((key, entry));
    }
    let metrics = model.metrics();
    for ((window, application), keys) in units {
        let mut rollup = ClientStats::default();
        let mut all = BTreeSet::new();
        for (_, entry) in &keys {
            rollup.merge(&entry.stats);
            all.extend(entry.contributors.iter().copied());
        }
        let all = Arc::new(all);
        // Every (dimensions, statistics, contributors, service) of this unit.
        type Part<'a> = (
            Vec<Dimension>,
            &'a ClientStats,
            Arc<BTreeSet<usize>>,
            Option<&'a str>,
        );
        let mut parts: Vec<Part<'_>> = Vec::new();
        for (key, entry) in &keys {
            let contributors = Arc::new(entry.contributors.clone());
            if model.has_set(DimensionSet::ServiceApplication) {
                parts.push((
                    vec![
                        dimension(DIM_SERVICE, &key.service),
                        dimension(DIM_APPLICATION, &application),
                    ],
                    &entry.stats,
                    contributors.clone(),
                    Some(&key.service),
                ));
            }
            if model.has_set(DimensionSet::Service) {
                parts.push((
                    vec![dimension(DIM_SERVICE, &key.service)],
                    &entry.stats,
                    contributors,
                    Some(&key.service),
                ));
            }
        }
        if model.has_set(DimensionSet::Application) {
            parts.push((
                vec![dimension(DIM_APPLICATION, &application)],
                &rollup,
                all.clone(),
                None,
            ));
        }
        if let Err(reason) = check_timestamp(window.start, now) {
            for (dims, stats, contributors, service) in &parts {
                plan.unpublishable_datums +=
                    datums_for(stats, dims, metrics, 0, contributors, 0).len();
                plan.unpublishable.push(Unpublishable {
                    window,
                    service: service.map(str::to_string),
                    application: application.to_string(),
                    reason: reason.clone(),
                });
            }
            continue;
        }
        let unit = plan.units.len();
        plan.units.push(Unit {
            key: UnitKey::Metrics {
                window,
                application: application.clone(),
            },
            contributors: all.clone(),
        });
        for (dims, stats, contributors, _) in &parts {
            plan.datums.extend(datums_for(
                stats,
                dims,
                metrics,
                window.start,
                contributors,
                unit,
            ));
        }
    }
    plan
}

/// Add the health datums of a batch (only those that are not zero) as one
/// unit that no record stands behind, timestamped at `now`'s minute.
pub fn add_health(
    plan: &mut Plan,
    poison: usize,
    rejected_lines: u64,
    metadata_stale: bool,
    now: SystemTime,
) {
    let mut datums = Vec::new();
    for (name, value) in [
        (POISON_RECORDS, poison as f64),
        (REJECTED_LINES, rejected_lines as f64),
        (METADATA_STALE, if metadata_stale { 1.0 } else { 0.0 }),
    ] {
        if value > 0.0 {
            datums.push(health_datum(name, value, now));
        }
    }
    if datums.is_empty() {
        return;
    }
    let unit = plan.units.len();
    let nobody = Arc::new(BTreeSet::new());
    plan.units.push(Unit {
        key: UnitKey::Health,
        contributors: nobody.clone(),
    });
    for datum in datums {
        let size = estimate_size(&datum);
        plan.datums.push(PlannedDatum {
            datum,
            contributors: nobody.clone(),
            size,
            unit,
        });
    }
}

/// A dimensionless Count datum timestamped at `now`'s minute.
pub(crate) fn health_datum(name: &str, value: f64, now: SystemTime) -> MetricDatum {
    let secs = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64 / 60 * 60);
    MetricDatum::builder()
        .metric_name(name)
        .timestamp(DateTime::from_secs(secs))
        .unit(StandardUnit::Count)
        .storage_resolution(STORAGE_RESOLUTION)
        .value(value)
        .build()
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

/// The datums of one set of statistics under `dims`, for `metrics`.
fn datums_for(
    stats: &ClientStats,
    dims: &[Dimension],
    metrics: &[Metric],
    window_start: i64,
    contributors: &Arc<BTreeSet<usize>>,
    unit: usize,
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
            unit,
        });
    };
    for metric in metrics {
        let (unit, value) = match metric {
            Metric::Requests => (StandardUnit::Count, stats.requests as f64),
            Metric::Bytes => (StandardUnit::Bytes, stats.bytes as f64),
            Metric::ClientErrors => (StandardUnit::Count, stats.client_errors() as f64),
            Metric::ServerErrors => (StandardUnit::Count, stats.server_errors() as f64),
            Metric::Latency => {
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
                continue;
            }
        };
        push(base(metric.name(), unit).value(value).build());
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::join::merge::Window;
    use crate::publish::model::DEFAULT_METRICS;

    pub(crate) fn entry(
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

    pub(crate) fn now() -> SystemTime {
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
    fn health_datums_only_when_not_zero() {
        let mut p = Plan::default();
        add_health(&mut p, 0, 0, false, now());
        assert!(p.datums.is_empty() && p.units.is_empty());
        add_health(&mut p, 2, 0, true, now());
        assert_eq!(p.units.len(), 1);
        assert_eq!(p.units[0].key, UnitKey::Health);
        assert!(p.units[0].contributors.is_empty());
        let names: Vec<_> = p
            .datums
            .iter()
            .filter_map(|d| d.datum.metric_name())
            .collect();
        assert_eq!(names, vec![POISON_RECORDS, METADATA_STALE]);
        assert_eq!(p.datums[0].datum.value(), Some(2.0));
        assert_eq!(
            p.datums[0].datum.timestamp().map(|t| t.secs()),
            Some(1_700_000_400 / 60 * 60)
        );
    }

    fn model(dims: &str, metrics: &str) -> MetricModel {
        MetricModel::parse(Some(dims), Some(metrics)).expect("valid model")
    }

    fn names_and_dims(p: &Plan) -> BTreeSet<(String, Vec<String>)> {
        p.datums
            .iter()
            .map(|d| {
                (
                    d.datum.metric_name().unwrap_or("").to_string(),
                    d.datum
                        .dimensions()
                        .iter()
                        .map(|x| format!("{}={}", x.name().unwrap_or(""), x.value().unwrap_or("")))
                        .collect(),
                )
            })
            .collect()
    }

    #[test]
    fn the_model_selects_sets_and_metrics() {
        let (k1, e1) = entry(3, 2, &[0]);
        let (mut k2, e2) = entry(4, 2, &[1]);
        k2.service = "api".into();
        let entries = [(&k1, &e1), (&k2, &e2)];
        // Application rollup only, two metrics.
        let p = plan_model(
            &entries,
            &model("SourceApplication", "Requests,Bytes"),
            now(),
        );
        let got = names_and_dims(&p);
        let want: BTreeSet<_> = ["Requests", "Bytes"]
            .iter()
            .map(|m| (m.to_string(), vec!["SourceApplication=shop".to_string()]))
            .collect();
        assert_eq!(got, want);
        assert_eq!(p.datums.len(), 2);
        let requests = p
            .datums
            .iter()
            .find(|d| d.datum.metric_name() == Some(REQUESTS));
        assert_eq!(requests.and_then(|d| d.datum.value()), Some(7.0));
        // Service only, with latency: one datum per (service, application), the
        // application's share; no SourceApplication dimension anywhere.
        let p = plan_model(&entries, &model("Service", "Requests,Latency"), now());
        assert!(p.datums.iter().all(|d| d.datum.dimensions().len() == 1
            && d.datum.dimensions()[0].name() == Some(DIM_SERVICE)));
        let req: Vec<_> = p
            .datums
            .iter()
            .filter(|d| d.datum.metric_name() == Some(REQUESTS))
            .map(|d| {
                (
                    d.datum.dimensions()[0].value().unwrap_or("").to_string(),
                    d.datum.value(),
                )
            })
            .collect();
        assert_eq!(
            req,
            vec![("web".into(), Some(3.0)), ("api".into(), Some(4.0))]
        );
        assert_eq!(p.units.len(), 1, "still one unit per (window, application)");
        // All three sets: 2 services × 2 sets + 1 rollup, 4 single-value metrics
        // and one latency datum each.
        let p = plan_model(
            &entries,
            &model(
                "Service+SourceApplication,SourceApplication,Service",
                DEFAULT_METRICS,
            ),
            now(),
        );
        assert_eq!(p.datums.len(), 5 * 5);
        // The default model is today's output.
        assert_eq!(
            names_and_dims(&plan_model(&entries, &MetricModel::default(), now())),
            names_and_dims(&plan(&entries, now()))
        );
        // Unpublishable windows count only the selected datums.
        let (mut k, e) = entry(3, 2, &[0]);
        k.window.start -= 15 * 86_400;
        let p = plan_model(&[(&k, &e)], &model("Service", "Requests"), now());
        assert_eq!((p.unpublishable.len(), p.unpublishable_datums), (1, 1));
    }
}
