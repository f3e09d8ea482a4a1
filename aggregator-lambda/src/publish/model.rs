//! The metric model: which dimension sets and which metrics the aggregator
//! publishes (`TAILRACE_DIMENSIONS`, `TAILRACE_METRICS`, the `consume` flags
//! `--dimensions`/`--metrics` and the stack parameters of the same meaning).
//!
//! CloudWatch bills custom metrics per metric-month, one metric per
//! (namespace, name, dimension values), so the model sets the largest line of
//! the bill (docs/COST.md). The default keeps the original output:
//! `Service+SourceApplication,SourceApplication` and
//! `Requests,Bytes,ClientErrors,ServerErrors,Latency`.
//!
//! Syntax: dimension sets are separated by `,`, the dimensions of a set by
//! `+` in any order (`SourceApplication+Service` is the same set); metrics
//! are separated by `,`. Names are matched without regard to case and
//! surrounding spaces. An empty list, an unknown name or a repeated entry is
//! an error that names what is accepted.

use std::fmt;

/// A set of dimensions a metric is published under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DimensionSet {
    /// `[Service, SourceApplication]`: per service, per application.
    ServiceApplication,
    /// `[SourceApplication]`: per application, over services.
    Application,
    /// `[Service]`: per service, over applications.
    Service,
}

impl DimensionSet {
    /// Every set, in the order of the docs.
    pub const ALL: [DimensionSet; 3] = [
        DimensionSet::ServiceApplication,
        DimensionSet::Application,
        DimensionSet::Service,
    ];

    /// The set as written in the setting.
    pub fn name(self) -> &'static str {
        match self {
            DimensionSet::ServiceApplication => "Service+SourceApplication",
            DimensionSet::Application => "SourceApplication",
            DimensionSet::Service => "Service",
        }
    }

    /// Parse one set (`Service+SourceApplication`, `SourceApplication`, …).
    pub fn parse(text: &str) -> Result<DimensionSet, String> {
        let mut service = false;
        let mut application = false;
        for part in text.split('+') {
            let part = part.trim();
            let flag = if part.eq_ignore_ascii_case("Service") {
                &mut service
            } else if part.eq_ignore_ascii_case("SourceApplication") {
                &mut application
            } else {
                return Err(format!(
                    "unknown dimension {part:?} in {text:?}: the dimensions are Service and SourceApplication"
                ));
            };
            if *flag {
                return Err(format!("dimension {part:?} twice in {text:?}"));
            }
            *flag = true;
        }
        Ok(match (service, application) {
            (true, true) => DimensionSet::ServiceApplication,
            (false, true) => DimensionSet::Application,
            (true, false) => DimensionSet::Service,
            (false, false) => unreachable!("split yields at least one part, each sets a flag"),
        })
    }
}

/// A metric the aggregator can publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Metric {
    /// `Requests` (Count).
    Requests,
    /// `Bytes` (Bytes).
    Bytes,
    /// `ClientErrors` (Count, 4xx).
    ClientErrors,
    /// `ServerErrors` (Count, 5xx).
    ServerErrors,
    /// `Latency` (Microseconds, a Values/Counts distribution).
    Latency,
}

impl Metric {
    /// Every metric, in publishing order.
    pub const ALL: [Metric; 5] = [
        Metric::Requests,
        Metric::Bytes,
        Metric::ClientErrors,
        Metric::ServerErrors,
        Metric::Latency,
    ];

    /// The CloudWatch metric name.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Requests => "Requests",
            Metric::Bytes => "Bytes",
            Metric::ClientErrors => "ClientErrors",
            Metric::ServerErrors => "ServerErrors",
            Metric::Latency => "Latency",
        }
    }

    /// Parse a metric name.
    pub fn parse(text: &str) -> Result<Metric, String> {
        let t = text.trim();
        Metric::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(t))
            .ok_or_else(|| {
                format!(
                    "unknown metric {t:?}: the metrics are {}",
                    Metric::ALL.map(Metric::name).join(", ")
                )
            })
    }
}

/// Which dimension sets and metrics are published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricModel {
    dimension_sets: Vec<DimensionSet>,
    metrics: Vec<Metric>,
}

impl Default for MetricModel {
    /// The original output: `[Service, SourceApplication]` and the
    /// `[SourceApplication]` rollup, all five metrics.
    fn default() -> Self {
        MetricModel {
            dimension_sets: vec![DimensionSet::ServiceApplication, DimensionSet::Application],
            metrics: Metric::ALL.to_vec(),
        }
    }
}

/// The default of `TAILRACE_DIMENSIONS`.
pub const DEFAULT_DIMENSIONS: &str = "Service+SourceApplication,SourceApplication";
/// The default of `TAILRACE_METRICS`.
pub const DEFAULT_METRICS: &str = "Requests,Bytes,ClientErrors,ServerErrors,Latency";

impl MetricModel {
    /// A model of these sets and metrics (duplicates removed, order kept);
    /// `None` if either list is empty.
    pub fn new(dimension_sets: &[DimensionSet], metrics: &[Metric]) -> Option<MetricModel> {
        let mut model = MetricModel {
            dimension_sets: Vec::new(),
            metrics: Vec::new(),
        };
        for s in dimension_sets {
            if !model.dimension_sets.contains(s) {
                model.dimension_sets.push(*s);
            }
        }
        for m in metrics {
            if !model.metrics.contains(m) {
                model.metrics.push(*m);
            }
        }
        (!model.dimension_sets.is_empty() && !model.metrics.is_empty()).then_some(model)
    }

    /// Parse the two settings (`TAILRACE_DIMENSIONS` and `TAILRACE_METRICS`
    /// syntax); `None` keeps that half of the default.
    pub fn parse(dimensions: Option<&str>, metrics: Option<&str>) -> Result<MetricModel, String> {
        let default = MetricModel::default();
        let dimension_sets = match dimensions {
            Some(text) => parse_list(text, DimensionSet::parse, DimensionSet::name)?,
            None => default.dimension_sets,
        };
        let metrics = match metrics {
            Some(text) => parse_list(text, Metric::parse, Metric::name)?,
            None => default.metrics,
        };
        Ok(MetricModel {
            dimension_sets,
            metrics,
        })
    }

    /// Parse the dimension sets alone (`TAILRACE_DIMENSIONS`).
    pub fn parse_dimensions(text: &str) -> Result<Vec<DimensionSet>, String> {
        parse_list(text, DimensionSet::parse, DimensionSet::name)
    }

    /// Parse the metrics alone (`TAILRACE_METRICS`).
    pub fn parse_metrics(text: &str) -> Result<Vec<Metric>, String> {
        parse_list(text, Metric::parse, Metric::name)
    }

    /// The dimension sets, in publishing order.
    pub fn dimension_sets(&self) -> &[DimensionSet] {
        &self.dimension_sets
    }

    /// The metrics, in publishing order.
    pub fn metrics(&self) -> &[Metric] {
        &self.metrics
    }

    /// Whether `set` is published.
    pub fn has_set(&self, set: DimensionSet) -> bool {
        self.dimension_sets.contains(&set)
    }

    /// Whether `metric` is published.
    pub fn has_metric(&self, metric: Metric) -> bool {
        self.metrics.contains(&metric)
    }

    /// Why the stack's per-application alarms (unknown sources, a source
    /// application flooding) could never fire under this model, if so:
    /// they read `Requests` per `SourceApplication`, from the rollup or
    /// summed over the per-service set.
    pub fn alarm_blind_reason(&self) -> Option<String> {
        if !self.has_metric(Metric::Requests) {
            return Some(format!(
                "{self} leaves out Requests: the per-application alarms read Requests and never fire"
            ));
        }
        if !self.has_set(DimensionSet::Application)
            && !self.has_set(DimensionSet::ServiceApplication)
        {
            return Some(format!(
                "{self} publishes no SourceApplication dimension: the per-application alarms never fire"
            ));
        }
        None
    }
}

impl fmt::Display for MetricModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sets: Vec<&str> = self.dimension_sets.iter().map(|s| s.name()).collect();
        let metrics: Vec<&str> = self.metrics.iter().map(|m| m.name()).collect();
        write!(
            f,
            "dimensions {} metrics {}",
            sets.join(","),
            metrics.join(",")
        )
    }
}

/// A `,`-separated list of distinct items.
fn parse_list<T: PartialEq + Copy>(
    text: &str,
    parse: fn(&str) -> Result<T, String>,
    name: fn(T) -> &'static str,
) -> Result<Vec<T>, String> {
    let mut out = Vec::new();
    for part in text.split(',') {
        if part.trim().is_empty() {
            return Err(format!(
                "empty entry in {text:?}: expected a ,-separated list with at least one entry"
            ));
        }
        let item = parse(part)?;
        if out.contains(&item) {
            return Err(format!("{} given twice in {text:?}", name(item)));
        }
        out.push(item);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_the_original_output() {
        let m = MetricModel::parse(None, None).expect("default");
        assert_eq!(m, MetricModel::default());
        assert_eq!(
            MetricModel::parse(Some(DEFAULT_DIMENSIONS), Some(DEFAULT_METRICS)).expect("same"),
            m
        );
        assert_eq!(
            m.to_string(),
            format!("dimensions {DEFAULT_DIMENSIONS} metrics {DEFAULT_METRICS}")
        );
    }

    #[test]
    fn sets_in_any_order_and_case() {
        let m = MetricModel::parse(
            Some(" sourceapplication + service , Service"),
            Some("requests, Bytes"),
        )
        .expect("valid");
        assert_eq!(
            m.dimension_sets(),
            &[DimensionSet::ServiceApplication, DimensionSet::Service]
        );
        assert_eq!(m.metrics(), &[Metric::Requests, Metric::Bytes]);
        assert!(!m.has_metric(Metric::Latency));
        assert!(!m.has_set(DimensionSet::Application));
    }

    #[test]
    fn errors_say_what_is_accepted() {
        let e = MetricModel::parse(Some("Service+Host"), None).unwrap_err();
        assert!(
            e.contains("\"Host\"") && e.contains("Service and SourceApplication"),
            "{e}"
        );
        let e = MetricModel::parse(Some("Service+Service"), None).unwrap_err();
        assert!(e.contains("twice"), "{e}");
        let e = MetricModel::parse(Some("Service,,SourceApplication"), None).unwrap_err();
        assert!(e.contains("empty entry"), "{e}");
        let e = MetricModel::parse(None, Some("Requests,P99")).unwrap_err();
        assert!(e.contains("\"P99\"") && e.contains("Latency"), "{e}");
        let e = MetricModel::parse(None, Some("Bytes,bytes")).unwrap_err();
        assert!(e.contains("Bytes given twice"), "{e}");
        assert!(MetricModel::parse(Some(""), None).is_err());
        assert!(MetricModel::new(&[], &[Metric::Bytes]).is_none());
    }

    #[test]
    fn models_that_blind_the_alarms_are_named() {
        assert_eq!(MetricModel::default().alarm_blind_reason(), None);
        let pairs_only = MetricModel::parse(Some("Service+SourceApplication"), Some("Requests"));
        assert_eq!(pairs_only.expect("valid").alarm_blind_reason(), None);
        let no_requests = MetricModel::parse(None, Some("Bytes")).expect("valid");
        assert!(no_requests
            .alarm_blind_reason()
            .is_some_and(|r| r.contains("leaves out Requests")));
        let service_only = MetricModel::parse(Some("Service"), None).expect("valid");
        assert!(service_only
            .alarm_blind_reason()
            .is_some_and(|r| r.contains("no SourceApplication")));
    }
}
