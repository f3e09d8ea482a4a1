//! The agent's own metrics: one table, read by the CloudWatch publisher and
//! the Prometheus endpoint alike, so both always carry the same set.
//!
//! Names follow the Amazon Kinesis Agent where it has one (`BytesSent`,
//! `RecordSendAttempts`, `RecordSendErrors`, `ServiceErrors`); the rest are
//! ours. Counters are cumulative in Prometheus and per-interval sums in
//! CloudWatch; gauges are the value now in both.
//!
//! The Prometheus text exposition format is written here by hand: it is a
//! few lines of `# HELP`/`# TYPE` and samples, our values already live in
//! [`FlowStats`] atomics, and `prometheus-client` would want its own metric
//! objects (a second set of counters to keep in step) or a custom collector
//! that is longer than this.

use std::fmt::Write as _;

use crate::observe::registry::Registry;
use crate::shared::counters::{now_ms, FlowStats};

/// How a metric behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only grows; CloudWatch gets the increase per interval.
    Counter,
    /// A value now.
    Gauge,
}

/// Unit of a metric (CloudWatch's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// A count.
    Count,
    /// Bytes.
    Bytes,
    /// Seconds.
    Seconds,
}

/// One metric of a flow.
#[derive(Debug, Clone, Copy)]
pub struct MetricDef {
    /// CloudWatch metric name.
    pub cloudwatch: &'static str,
    /// Prometheus name (counters end in `_total`).
    pub prometheus: &'static str,
    /// What it counts.
    pub help: &'static str,
    /// Counter or gauge.
    pub kind: Kind,
    /// Unit.
    pub unit: Unit,
    /// Read the value.
    pub get: fn(&FlowStats) -> u64,
}

macro_rules! metric {
    ($cw:literal, $prom:literal, $kind:ident, $unit:ident, $help:literal, |$s:ident| $e:expr) => {
        MetricDef {
            cloudwatch: $cw,
            prometheus: $prom,
            help: $help,
            kind: Kind::$kind,
            unit: Unit::$unit,
            get: |$s: &FlowStats| $e,
        }
    };
}

/// The metrics also published with the `Host` dimension when
/// `monitoring.cloudwatch.host_dimension` is on: only what the stack's
/// per-host stall alarm reads. Every host's series is a custom metric
/// (billed per metric-month, docs/COST.md): all 17 per host would cost
/// about 17,000 metrics at 1,000 hosts.
pub const PER_HOST: &[&str] = &["OldestUnacknowledgedAge"];

/// Every per-flow metric, with dimension/label `Flow`.
pub const METRICS: &[MetricDef] = &[
    metric!(
        "LinesRead",
        "tailrace_lines_read_total",
        Counter,
        Count,
        "Lines read from the flow's files.",
        |s| s.lines_read.get()
    ),
    metric!(
        "BytesRead",
        "tailrace_bytes_read_total",
        Counter,
        Bytes,
        "Bytes of lines read, newlines included.",
        |s| s.bytes_read.get()
    ),
    metric!(
        "LinesTruncated",
        "tailrace_lines_truncated_total",
        Counter,
        Count,
        "Lines longer than max_line_bytes, shipped truncated.",
        |s| s.lines_truncated.get()
    ),
    metric!(
        "ParseRejects",
        "tailrace_parse_rejects_total",
        Counter,
        Count,
        "Lines that did not match the format (aggregate mode).",
        |s| s.parse_rejects.get()
    ),
    metric!(
        "LateLines",
        "tailrace_late_lines_total",
        Counter,
        Count,
        "Lines whose window was already sent (shipped in late partials).",
        |s| s.late_lines.get()
    ),
    metric!(
        "LinesSent",
        "tailrace_lines_sent_total",
        Counter,
        Count,
        "Lines in records Kinesis acknowledged.",
        |s| s.lines_sent.get()
    ),
    metric!(
        "RecordsSent",
        "tailrace_records_sent_total",
        Counter,
        Count,
        "Records Kinesis acknowledged.",
        |s| s.records_sent.get()
    ),
    metric!(
        "BytesSent",
        "tailrace_bytes_sent_total",
        Counter,
        Bytes,
        "Record data bytes Kinesis acknowledged.",
        |s| s.bytes_sent.get()
    ),
    metric!(
        "RecordSendAttempts",
        "tailrace_record_send_attempts_total",
        Counter,
        Count,
        "Records put in PutRecords calls, first tries and retries.",
        |s| s.records_attempted.get()
    ),
    metric!(
        "RecordSendErrors",
        "tailrace_record_send_errors_total",
        Counter,
        Count,
        "Records Kinesis refused inside a call (throttled or failed).",
        |s| s.records_throttled.get() + s.records_failed.get()
    ),
    metric!(
        "RecordsThrottled",
        "tailrace_records_throttled_total",
        Counter,
        Count,
        "Records refused with ProvisionedThroughputExceededException.",
        |s| s.records_throttled.get()
    ),
    metric!(
        "RecordsFailed",
        "tailrace_records_failed_total",
        Counter,
        Count,
        "Records refused with another error (InternalFailure, ...).",
        |s| s.records_failed.get()
    ),
    metric!(
        "PutRecordsCalls",
        "tailrace_put_records_calls_total",
        Counter,
        Count,
        "PutRecords calls made.",
        |s| s.put_calls.get()
    ),
    metric!(
        "ServiceErrors",
        "tailrace_service_errors_total",
        Counter,
        Count,
        "PutRecords calls Kinesis answered with an error.",
        |s| s.service_errors.get()
    ),
    metric!(
        "TransportErrors",
        "tailrace_transport_errors_total",
        Counter,
        Count,
        "PutRecords calls without an answer (refused, reset, timed out).",
        |s| s.transport_errors.get()
    ),
    metric!(
        "BytesLost",
        "tailrace_bytes_lost_total",
        Counter,
        Bytes,
        "Bytes of files deleted or cut short before they could be read (each logged with the file).",
        |s| s.bytes_lost.get()
    ),
    metric!(
        "BacklogBytes",
        "tailrace_backlog_bytes",
        Gauge,
        Bytes,
        "Bytes in the flow's files past their checkpoints.",
        |s| s.backlog_bytes.get()
    ),
    metric!(
        "OldestUnacknowledgedAge",
        "tailrace_oldest_unacknowledged_age_seconds",
        Gauge,
        Seconds,
        "Age of the oldest line not yet acknowledged by Kinesis.",
        |s| s.oldest_unacked_secs.get()
    ),
];

/// The Prometheus text exposition (version 0.0.4) of every flow's metrics,
/// plus the time of the last acknowledgement and the agent's health.
pub fn prometheus_text(registry: &Registry) -> String {
    let flows = registry.flows();
    let mut out = String::with_capacity(4096);
    for m in METRICS {
        let kind = match m.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        let _ = writeln!(out, "# HELP {} {}", m.prometheus, m.help);
        let _ = writeln!(out, "# TYPE {} {kind}", m.prometheus);
        for (name, f) in &flows {
            let _ = writeln!(
                out,
                "{}{{flow=\"{}\"}} {}",
                m.prometheus,
                escape(name),
                (m.get)(&f.stats)
            );
        }
    }
    let _ = writeln!(out, "# HELP tailrace_last_ack_timestamp_seconds When Kinesis last acknowledged a record of the flow (0: never).");
    let _ = writeln!(out, "# TYPE tailrace_last_ack_timestamp_seconds gauge");
    for (name, f) in &flows {
        let ms = f.stats.last_ack_ms.get();
        let _ = writeln!(
            out,
            "tailrace_last_ack_timestamp_seconds{{flow=\"{}\"}} {}.{:03}",
            escape(name),
            ms / 1000,
            ms % 1000
        );
    }
    let problems = registry.problems(now_ms());
    let _ = writeln!(
        out,
        "# HELP tailrace_healthy 1 when /health answers 200, 0 when it answers 503."
    );
    let _ = writeln!(out, "# TYPE tailrace_healthy gauge");
    let _ = writeln!(out, "tailrace_healthy {}", u8::from(problems.is_empty()));
    out
}

/// Escape a label value: backslash, double quote and newline.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HealthConfig;
    use crate::observe::registry::FlowEntry;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn names_are_unique_and_counters_end_in_total() {
        let mut cw: Vec<_> = METRICS.iter().map(|m| m.cloudwatch).collect();
        let mut prom: Vec<_> = METRICS.iter().map(|m| m.prometheus).collect();
        cw.sort();
        cw.dedup();
        prom.sort();
        prom.dedup();
        assert_eq!(cw.len(), METRICS.len());
        assert_eq!(prom.len(), METRICS.len());
        for m in METRICS {
            assert_eq!(
                m.kind == Kind::Counter,
                m.prometheus.ends_with("_total"),
                "{}",
                m.prometheus
            );
        }
    }

    #[test]
    fn exposition_has_every_metric_per_flow() {
        let r = Registry::new(HealthConfig::default());
        let stats = Arc::new(FlowStats::started_now());
        stats.lines_read.add(42);
        stats.records_throttled.add(2);
        stats.records_failed.add(1);
        r.insert(
            "web",
            FlowEntry {
                stats,
                stream: "s".into(),
                stall_after: Duration::from_secs(600),
            },
        );
        let text = prometheus_text(&r);
        assert!(
            text.contains("tailrace_lines_read_total{flow=\"web\"} 42\n"),
            "{text}"
        );
        assert!(
            text.contains("tailrace_record_send_errors_total{flow=\"web\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE tailrace_backlog_bytes gauge\n"),
            "{text}"
        );
        assert!(text.contains("tailrace_healthy 1\n"), "{text}");
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
