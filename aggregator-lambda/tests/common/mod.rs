//! Shared scenario pieces for the aggregator's moto tests: a request model,
//! partials built from it, and the expected totals computed independently of
//! the aggregator (a plain IP → application table written in the test).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::IpAddr;

use tailrace_wire::{ClientKey, ClientStats, Partial};

/// Namespace used by the tests.
pub const NAMESPACE: &str = "TailraceTest";

/// One request as a log line would describe it.
#[derive(Debug, Clone, Copy)]
pub struct Req {
    pub ip: &'static str,
    pub status: u16,
    pub bytes: u64,
    pub latency_us: Option<u64>,
}

/// `n` identical requests.
pub fn reqs(
    n: usize,
    ip: &'static str,
    status: u16,
    bytes: u64,
    latency_us: Option<u64>,
) -> Vec<Req> {
    vec![
        Req {
            ip,
            status,
            bytes,
            latency_us
        };
        n
    ]
}

/// A tailrace partial with these requests.
pub fn partial(
    host: &str,
    sequence: u64,
    service: &str,
    window_start: i64,
    requests: &[Req],
) -> Partial {
    let mut groups: BTreeMap<ClientKey, ClientStats> = BTreeMap::new();
    for r in requests {
        let ip: IpAddr = r.ip.parse().expect("test ip");
        groups.entry(ClientKey::from(ip)).or_default().record(
            Some(r.status),
            r.bytes,
            r.latency_us,
        );
    }
    Partial {
        host_id: host.into(),
        service: service.into(),
        flow: "access".into(),
        window_start,
        window_secs: 300,
        sequence,
        late: false,
        groups: groups.into_iter().collect(),
        ..Partial::default()
    }
}

/// Apache `combined` lines for these requests at `time` (Unix seconds).
pub fn combined_lines(requests: &[Req], time: i64) -> String {
    let mut out = String::new();
    for r in requests {
        let bytes = if r.bytes == 0 {
            "-".to_string()
        } else {
            r.bytes.to_string()
        };
        out.push_str(&format!(
            "{} - - [{}] \"GET /x HTTP/1.1\" {} {} \"-\" \"test\"\n",
            r.ip,
            clf_time(time),
            r.status,
            bytes
        ));
    }
    out
}

/// Kinesis Agent `LOGTOJSON` (COMBINEDAPACHELOG) objects for these requests.
pub fn agent_json(requests: &[Req], time: i64) -> String {
    let mut out = String::new();
    for r in requests {
        let bytes = if r.bytes == 0 {
            "null".to_string()
        } else {
            format!("\"{}\"", r.bytes)
        };
        out.push_str(&format!(
            "{{\"host\":\"{}\",\"ident\":null,\"authuser\":null,\"datetime\":\"{}\",\"request\":\"GET /x HTTP/1.1\",\"response\":\"{}\",\"bytes\":{},\"referer\":null,\"agent\":\"test\"}}\n",
            r.ip,
            clf_time(time),
            r.status,
            bytes
        ));
    }
    out
}

/// `10/Oct/2000:13:55:36 +0000` for Unix seconds.
pub fn clf_time(secs: i64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let iso = tailrace_aggregator::handler::rfc3339(secs); // YYYY-MM-DDTHH:MM:SSZ
    let (y, m, d) = (&iso[0..4], &iso[5..7], &iso[8..10]);
    let month = MONTHS[m.parse::<usize>().expect("month") - 1];
    format!("{d}/{month}/{y}:{} +0000", &iso[11..19])
}

/// Expected totals of one (window, service, application).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Expect {
    pub requests: f64,
    pub bytes: f64,
    pub client_errors: f64,
    pub server_errors: f64,
    pub latency_count: f64,
    pub latency_sum: f64,
}

/// Expected totals keyed by (window, service, application).
pub type Expected = BTreeMap<(i64, String, String), Expect>;

/// Add `requests` to `expected`, mapping each IP with `mapping`.
pub fn expect(
    expected: &mut Expected,
    window: i64,
    service: &str,
    requests: &[Req],
    mapping: &dyn Fn(&str) -> &'static str,
) {
    for r in requests {
        let e = expected
            .entry((window, service.to_string(), mapping(r.ip).to_string()))
            .or_default();
        e.requests += 1.0;
        e.bytes += r.bytes as f64;
        if (400..500).contains(&r.status) {
            e.client_errors += 1.0;
        }
        if r.status >= 500 {
            e.server_errors += 1.0;
        }
        if let Some(l) = r.latency_us {
            e.latency_count += 1.0;
            e.latency_sum += l as f64;
        }
    }
}

/// Check every expected key against CloudWatch, both dimension sets.
pub async fn assert_metrics(
    cw: &aws_sdk_cloudwatch::Client,
    expected: &Expected,
) -> anyhow::Result<()> {
    use tailrace_tests::metric_sum;
    // Per (window, application) over services.
    let mut per_app: BTreeMap<(i64, String), Expect> = BTreeMap::new();
    for ((window, service, app), e) in expected {
        let dims = [
            ("Service", service.as_str()),
            ("SourceApplication", app.as_str()),
        ];
        let got = |m: &'static str| metric_sum(cw, NAMESPACE, m, &dims, *window, 300);
        let what = format!("window {window} service {service} app {app}");
        assert_eq!(got("Requests").await?.0, e.requests, "Requests {what}");
        assert_eq!(got("Bytes").await?.0, e.bytes, "Bytes {what}");
        assert_eq!(
            got("ClientErrors").await?.0,
            e.client_errors,
            "ClientErrors {what}"
        );
        assert_eq!(
            got("ServerErrors").await?.0,
            e.server_errors,
            "ServerErrors {what}"
        );
        let (lat_sum, lat_count) = got("Latency").await?;
        assert_eq!(lat_count, e.latency_count, "Latency SampleCount {what}");
        assert!(
            (lat_sum - e.latency_sum).abs() <= e.latency_sum * 0.011,
            "Latency Sum {what}: {lat_sum} vs {}",
            e.latency_sum
        );
        let a = per_app.entry((*window, app.clone())).or_default();
        a.requests += e.requests;
        a.bytes += e.bytes;
    }
    for ((window, app), e) in &per_app {
        let dims = [("SourceApplication", app.as_str())];
        // moto matches dimensions as a subset, so the [SourceApplication]
        // query also sums the [Service, SourceApplication] datums: twice the
        // total when both dimension sets were published.
        let (requests, _) = metric_sum(cw, NAMESPACE, "Requests", &dims, *window, 300).await?;
        assert_eq!(
            requests,
            2.0 * e.requests,
            "Requests window {window} app {app} (both dimension sets)"
        );
        let (bytes, _) = metric_sum(cw, NAMESPACE, "Bytes", &dims, *window, 300).await?;
        assert_eq!(
            bytes,
            2.0 * e.bytes,
            "Bytes window {window} app {app} (both dimension sets)"
        );
    }
    Ok(())
}

/// A window start `windows_ago` five-minute windows before the current one.
pub fn window_ago(windows_ago: i64) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64;
    (now / 300 - windows_ago) * 300
}
