//! What a well-formed config file must also mean: the checks the schema
//! cannot make (globs, formats, limits, flows that collide), each next to the
//! level it checks.
//!
//! - [`check_top`]: the top-level keys and the `monitoring` section
//!   ([`MonitoringConfig::problems`]);
//! - [`check_flow`]: one flow's own keys (name, paths, stream, limits,
//!   timezone, format, proxies), and what it shares with the flows before it
//!   (names, `(stream, path)` pairs);
//! - [`check_window`] and [`check_mode_format`]: what a flow's mode needs of
//!   the rest (aggregate: a window that divides an hour, a time field, the
//!   client).
//!
//! Every check reports through [`Report`], which finds the position of the
//! key it names (or of the nearest enclosing key), so all problems come back
//! at once, sorted by the caller.

use std::collections::HashMap;
use std::time::Duration;

use serde_saphyr::Location;
use tailrace_logformat::{LogFormat, Zone};

use super::patterns;
use super::proxies::{parse_network, ProxyTrust};
use super::tree::Locations;
use super::{
    Config, Flow, FlowConfig, Mode, MonitoringConfig, Problem, TrustedProxies, Validated,
    KINESIS_MAX_RECORD_BYTES,
};

/// Check a deserialized config for meaning and compile its flows.
pub(super) fn validate(
    config: Config,
    text: &str,
    locs: &Locations,
) -> Result<Validated, Vec<Problem>> {
    let mut report = Report {
        locs,
        text,
        problems: Vec::new(),
    };
    check_top(&config, &mut report);
    let mut seen = SeenFlows::default();
    let mut flows = Vec::new();
    for (i, spanned) in config.flows.into_iter().enumerate() {
        let at = FlowAt {
            index: i,
            at: spanned.referenced,
        };
        if let Some(flow) = check_flow(spanned.value, &at, &mut seen, &mut report) {
            flows.push(flow);
        }
    }
    if !report.problems.is_empty() {
        return Err(report.problems);
    }
    Ok(Validated {
        state_dir: config.state_dir,
        host_id: config.host_id,
        checkpoint_interval: config.checkpoint_interval,
        shutdown_timeout: config.shutdown_timeout,
        aws: config.aws,
        monitoring: config.monitoring,
        flows,
    })
}

/// Where problems go, and how a key is found in the file.
struct Report<'a> {
    locs: &'a Locations,
    text: &'a str,
    problems: Vec<Problem>,
}

/// Which flow a check is looking at: its index and where it starts.
struct FlowAt {
    index: usize,
    at: Location,
}

/// What the flows checked so far have claimed.
#[derive(Default)]
struct SeenFlows {
    /// Flow name → the index of the flow that has it.
    names: HashMap<String, usize>,
    /// `(stream, path glob)` → the flow that sends it.
    reads: HashMap<(String, String), String>,
}

impl Report<'_> {
    /// The position of `key`, else of its nearest enclosing key, else `fallback`.
    fn locate(&self, key: &str, fallback: Location) -> Location {
        let mut k = key;
        loop {
            if let Some(loc) = self.locs.get(k).filter(|l| **l != Location::UNKNOWN) {
                return *loc;
            }
            match k.rfind(['.', '[']) {
                Some(i) => k = &k[..i],
                None => return fallback,
            }
        }
    }

    /// A problem with a top-level key (a dotted path from the root).
    fn top(&mut self, key: &str, message: impl Into<String>) {
        let loc = self.locate(key, Location::UNKNOWN);
        self.push(loc.line(), loc.column(), key.into(), message.into());
    }

    /// A problem with `key` of the flow `flow`.
    fn flow(&mut self, flow: &FlowAt, key: &str, message: impl Into<String>) {
        let key = format!("flows[{}].{key}", flow.index);
        let loc = self.locate(&key, flow.at);
        self.push(loc.line(), loc.column(), key, message.into());
    }

    /// A problem with `key` of the flow `flow`, at a known line and column.
    fn flow_at(&mut self, flow: &FlowAt, (line, column): (u64, u64), key: &str, message: String) {
        let key = format!("flows[{}].{key}", flow.index);
        self.push(line, column, key, message);
    }

    fn push(&mut self, line: u64, column: u64, key: String, message: String) {
        self.problems.push(Problem {
            line,
            column,
            key,
            message,
        });
    }
}

/// The top-level keys, and the `monitoring` section.
fn check_top(config: &Config, r: &mut Report<'_>) {
    if config.flows.is_empty() {
        r.top("flows", "expected at least one flow");
    }
    if config.host_id.trim().is_empty() {
        r.top("host_id", "expected `auto` or a non-empty host id");
    } else if config.host_id != "auto" {
        if let Err(e) = tailrace_wire::dimension::check_dimension_value(&config.host_id) {
            r.top(
                "host_id",
                format!("not usable as the CloudWatch `Host` dimension: {e}"),
            );
        }
    }
    if config.checkpoint_interval < Duration::from_millis(100) {
        r.top("checkpoint_interval", "expected at least 100ms");
    }
    for p in config.monitoring.problems() {
        r.top(&p.key, p.message);
    }
    if !config.state_dir.is_absolute() {
        r.top(
            "state_dir",
            "expected an absolute path (the service's working directory is not yours)",
        );
    }
}

/// One flow: its own keys, what it shares with earlier flows, and what its
/// mode needs. `None` when its format does not compile (reported).
fn check_flow(
    flow: FlowConfig,
    at: &FlowAt,
    seen: &mut SeenFlows,
    r: &mut Report<'_>,
) -> Option<Flow> {
    check_name(&flow, at, seen, r);
    check_paths(&flow, at, seen, r);
    if flow.stream.is_empty() {
        r.flow(at, "stream", "expected a Kinesis stream name");
    }
    if let Some(service) = &flow.service {
        if let Err(e) = tailrace_wire::dimension::check_dimension_value(service) {
            r.flow(
                at,
                "service",
                format!("CloudWatch would refuse it as the `Service` dimension: {e}"),
            );
        }
    }
    check_limits(&flow, at, r);
    let zone = match &flow.timezone {
        None => Some(Zone::system()),
        Some(tz) => match Zone::named(tz.value.trim()) {
            Ok(z) => Some(z),
            Err(e) => {
                r.flow(at, "timezone", e.to_string());
                None
            }
        },
    };
    let format = match LogFormat::compile(&flow.format.value) {
        Ok(f) => Some(f.with_zone(zone.unwrap_or_else(Zone::utc))),
        Err(e) => {
            let loc = r.locate(&format!("flows[{}].format", at.index), at.at);
            let pos = column_within(r.text, loc, e.column);
            r.flow_at(
                at,
                pos,
                "format",
                format!(
                    "LogFormat does not compile at character {} of the format: {}",
                    e.column + 1,
                    e.message
                ),
            );
            None
        }
    };
    let proxy_trust = proxy_trust(&flow.trusted_proxies, at, r);
    check_window(&flow, at, r);
    let format = format?;
    let client_field = check_client(&flow, &format, &proxy_trust, at, r);
    check_mode_format(&flow, &format, at, r);
    Some(Flow {
        config: flow,
        format,
        client_field,
        proxy_trust,
    })
}

/// The name: its characters, and that no earlier flow has it.
fn check_name(flow: &FlowConfig, at: &FlowAt, seen: &mut SeenFlows, r: &mut Report<'_>) {
    let name = &flow.name;
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        r.flow(
            at,
            "name",
            format!("expected letters, digits, `-`, `_` or `.`, got `{name}`"),
        );
    } else if let Some(first) = seen.names.insert(name.clone(), at.index) {
        r.flow(
            at,
            "name",
            format!("flow name `{name}` is already used by flows[{first}]; names must be unique"),
        );
    }
}

/// The globs: each valid and absolute, and no `(stream, path)` sent twice.
fn check_paths(flow: &FlowConfig, at: &FlowAt, seen: &mut SeenFlows, r: &mut Report<'_>) {
    if flow.paths.value.is_empty() {
        r.flow(at, "paths", "expected at least one glob");
    }
    for (j, p) in flow.paths.value.iter().enumerate() {
        let key = format!("paths[{j}]");
        if p.trim().is_empty() {
            r.flow(at, &key, "expected an absolute glob, got an empty path");
        } else if let Err(e) = patterns::validate(p) {
            r.flow(at, &key, e);
        } else if !p.starts_with('/') {
            r.flow(
                at,
                &key,
                format!(
                    "`{p}` must be an absolute path (the service's working directory is not yours)"
                ),
            );
        } else if let Some(other) = seen
            .reads
            .insert((flow.stream.clone(), p.clone()), flow.name.clone())
        {
            r.flow(
                at,
                &key,
                format!(
                    "flow `{other}` already sends `{p}` to stream `{}`: every line would be sent twice",
                    flow.stream
                ),
            );
        }
    }
    for (j, p) in flow.exclude.iter().enumerate() {
        if let Err(e) = patterns::validate(p) {
            r.flow(at, &format!("exclude[{j}]"), e);
        }
    }
}

/// Sizes and bounds: record and line sizes, lateness, groups per window.
fn check_limits(flow: &FlowConfig, at: &FlowAt, r: &mut Report<'_>) {
    if flow.max_record_bytes < 1024 || flow.max_record_bytes > KINESIS_MAX_RECORD_BYTES {
        r.flow(
            at,
            "max_record_bytes",
            format!(
                "expected between 1 KiB and 1 MiB (Kinesis' limit), got {}",
                flow.max_record_bytes
            ),
        );
    }
    if flow.max_line_bytes < 64 {
        r.flow(
            at,
            "max_line_bytes",
            format!("expected at least 64 bytes, got {}", flow.max_line_bytes),
        );
    }
    if flow.allowed_lateness > Duration::from_secs(24 * 3600) {
        r.flow(at, "allowed_lateness", "expected at most 24h");
    }
    if flow.max_groups_per_window == 0 {
        r.flow(at, "max_groups_per_window", "expected at least 1");
    }
}

/// `trusted_proxies` as the client-address picker uses it; each bad network
/// is reported.
fn proxy_trust(proxies: &TrustedProxies, at: &FlowAt, r: &mut Report<'_>) -> ProxyTrust {
    let (list, key_of): (&[String], fn(usize) -> String) = match proxies {
        TrustedProxies::Hops(n) => return ProxyTrust::Hops(*n as usize),
        TrustedProxies::One(one) => (std::slice::from_ref(one), |_| "trusted_proxies".into()),
        TrustedProxies::Many(list) => (list, |j| format!("trusted_proxies[{j}]")),
    };
    let mut nets = Vec::with_capacity(list.len());
    for (j, text) in list.iter().enumerate() {
        match parse_network(text) {
            Ok(n) => nets.push(n),
            Err(m) => r.flow(at, &key_of(j), m),
        }
    }
    ProxyTrust::Networks(nets)
}

/// `client_field`: the field it names, and that trusted networks can be
/// checked against the peer's address.
fn check_client(
    flow: &FlowConfig,
    format: &LogFormat,
    proxy_trust: &ProxyTrust,
    at: &FlowAt,
    r: &mut Report<'_>,
) -> Option<usize> {
    if flow.client_field.is_some()
        && matches!(proxy_trust, ProxyTrust::Networks(n) if !n.is_empty())
        && format.field_index("client").is_none()
    {
        r.flow(
            at,
            "trusted_proxies",
            "trusted networks need the peer's address in the format (%a, or %h with HostnameLookups Off) to check that the request came from a trusted proxy",
        );
    }
    let cf = flow.client_field.as_ref()?;
    let index = format.field_index(&cf.value);
    if index.is_none() {
        r.flow(
            at,
            "client_field",
            format!(
                "the format has no field `{}` (it has: {})",
                cf.value,
                format.field_names().collect::<Vec<_>>().join(", ")
            ),
        );
    }
    index
}

/// What aggregate mode needs of the window: whole seconds that divide an hour.
fn check_window(flow: &FlowConfig, at: &FlowAt, r: &mut Report<'_>) {
    if flow.mode != Mode::Aggregate {
        return;
    }
    let window = flow.window.value;
    if window < Duration::from_secs(60)
        || window > Duration::from_secs(3600)
        || window.subsec_nanos() != 0
    {
        r.flow(
            at,
            "window",
            format!(
                "expected whole seconds between 1m and 1h, got {}",
                humantime::format_duration(window)
            ),
        );
    } else if 3600 % window.as_secs() != 0 {
        r.flow(
            at,
            "window",
            format!(
                "expected a window that divides an hour (1m, 2m, 3m, 4m, 5m, 6m, 10m, 12m, 15m, 20m, 30m or 1h), got {}",
                humantime::format_duration(window)
            ),
        );
    }
}

/// What aggregate mode needs of the format: a time field to window by, and
/// the client.
fn check_mode_format(flow: &FlowConfig, format: &LogFormat, at: &FlowAt, r: &mut Report<'_>) {
    if flow.mode != Mode::Aggregate {
        return;
    }
    if !format.has_time() {
        r.flow(
            at,
            "format",
            "aggregate mode needs a time field (%t or %{...}t) to window by",
        );
    }
    if flow.client_field.is_none() && format.field_index("client").is_none() {
        r.flow(
            at,
            "format",
            "aggregate mode needs the client: add %h or %a, or set client_field",
        );
    }
}

impl MonitoringConfig {
    /// Semantic problems of this section (positions are filled in by the
    /// caller, which knows where each key is).
    pub fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut problem = |key: &str, message: String| {
            out.push(Problem {
                line: 0,
                column: 0,
                key: format!("monitoring.{key}"),
                message,
            })
        };
        let ns = &self.cloudwatch.namespace;
        if ns.is_empty() || ns.len() > 255 || ns.starts_with("AWS/") || !ns.is_ascii() {
            problem(
                "cloudwatch.namespace",
                format!("expected 1 to 255 ASCII characters not starting with `AWS/`, got `{ns}`"),
            );
        }
        let interval = self.cloudwatch.interval;
        if interval < Duration::from_secs(1) || interval > Duration::from_secs(3600) {
            problem("cloudwatch.interval", "expected between 1s and 1h".into());
        }
        if self.http.listen.parse::<std::net::SocketAddr>().is_err() {
            problem(
                "http.listen",
                format!(
                    "expected an address and port like `127.0.0.1:9877`, got `{}`",
                    self.http.listen
                ),
            );
        }
        for (key, d) in [
            ("health.stall_after", self.health.stall_after),
            (
                "health.kinesis_failing_after",
                self.health.kinesis_failing_after,
            ),
        ] {
            if d < Duration::from_secs(1) {
                problem(key, "expected at least 1s".into());
            }
        }
        out
    }
}

/// Position of the character `offset` (0-based) inside the scalar that starts
/// at `at`, when it sits on one line (plain, '…' or "…" scalars).
fn column_within(text: &str, at: serde_saphyr::Location, offset: usize) -> (u64, u64) {
    let fallback = (at.line(), at.column());
    let Some(line) = text.lines().nth((at.line() as usize).saturating_sub(1)) else {
        return fallback;
    };
    let start = (at.column() as usize).saturating_sub(1);
    let mut chars = line.chars().skip(start).peekable();
    let mut col = start;
    let quote = match chars.peek() {
        Some(&q) if q == '"' || q == '\'' => {
            chars.next();
            col += 1;
            Some(q)
        }
        _ => None,
    };
    let mut seen = 0;
    while seen < offset {
        match chars.next() {
            None => return fallback,
            Some('\\') if quote == Some('"') => {
                chars.next();
                col += 2;
            }
            Some('\'') if quote == Some('\'') => {
                chars.next();
                col += 2;
            }
            Some(_) => col += 1,
        }
        seen += 1;
    }
    (at.line(), col as u64 + 1)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::{ConfigError, Mode, PartitionKey, StartAt, Validated};
    use super::*;

    fn parse_str(text: &str) -> Result<Validated, ConfigError> {
        Validated::parse(Path::new("test.yaml"), text)
    }

    const GOOD: &str = "state_dir: /tmp/x\nflows:\n  - name: web\n    paths: [\"/var/log/apache2/access.log*\"]\n    format: combined\n    stream: s\n";

    #[test]
    fn minimal_config_gets_defaults() {
        let v = parse_str(GOOD).expect("valid");
        let f = &v.flows[0];
        assert_eq!(f.config.mode, Mode::Raw);
        assert_eq!(f.config.start_at, StartAt::End);
        assert_eq!(f.config.window.value, Duration::from_secs(300));
        assert_eq!(f.config.partition_key, PartitionKey::Random);
        assert_eq!(f.service(), "web");
    }

    #[test]
    fn unknown_key_is_an_error_with_location() {
        let text = format!("{GOOD}    allowed_latness: 1m\n");
        let err = parse_str(&text).expect_err("unknown key").to_string();
        assert!(err.contains("allowed_latness"), "{err}");
        assert!(err.contains("test.yaml"), "{err}");
        assert!(err.contains('7'), "line 7 expected in: {err}");
    }

    #[test]
    fn bad_values_are_all_reported() {
        let text = "flows:\n  - name: web\n    paths: [\"relative/*.log\"]\n    format: \"%h %Z\"\n    stream: s\n    mode: aggregate\n    window: 10s\n";
        let err = parse_str(text).expect_err("invalid").to_string();
        assert!(err.contains("flows[0].paths"), "{err}");
        assert!(err.contains("flows[0].format"), "{err}");
        assert!(err.contains("flows[0].window"), "{err}");
        assert!(err.contains("test.yaml:7:"), "window line: {err}");
    }
}
