//! A fault-injecting HTTP proxy between the aggregator and `moto_server`'s
//! CloudWatch.
//!
//! moto never throttles `PutMetricData`, so this proxy is what exercises the
//! publisher's retry path and the handler's failure reporting. The pinned
//! `aws-sdk-cloudwatch =1.99.0` speaks the AWS **Query** protocol (DESIGN
//! §5b): `POST /` with an `application/x-www-form-urlencoded` body
//! `Action=PutMetricData&Version=2010-08-01&…`, gzip-compressed
//! (`Content-Encoding: gzip`) once it reaches 10 KiB unless request
//! compression is disabled. Its errors are XML:
//!
//! ```text
//! HTTP/1.1 400 Bad Request
//! <ErrorResponse xmlns="http://monitoring.amazonaws.com/doc/2010-08-01/">
//!   <Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error>
//!   <RequestId>…</RequestId>
//! </ErrorResponse>
//! ```
//!
//! Only `PutMetricData` calls are faulted (a gzip body is taken to be one:
//! it is the only CloudWatch operation the SDK compresses); every other call
//! is forwarded unchanged. Per `PutMetricData` call, in this order:
//! - if its body is the [`CwFaults::fail_call`]-th distinct body the proxy
//!   has seen, it is answered 503 — every attempt (a retry sends the same
//!   bytes), so a test can fail exactly one call of a batch for good. Bodies
//!   are told apart by hash, which works on gzipped bodies too, so the
//!   client keeps the production settings (compression on);
//! - if [`CwFaults::refuse_invalid`] is set and a dimension value breaks
//!   CloudWatch's rule (`tailrace_wire::dimension`: 1–1,024 printable ASCII
//!   characters, not all whitespace) or contains
//!   [`CwFaults::refuse_containing`], the call is answered the way CloudWatch
//!   answers it, 400 `InvalidParameterValue` naming the parameter, and
//!   nothing of it is stored (moto checks none of this). The body is
//!   gunzipped and its form parameters decoded to look;
//! - else one uniform draw: with `p_throttle` a 400 `Throttling`, with
//!   `p_5xx` a 500 `InternalFailure` or a 503 `ServiceUnavailable` (even
//!   split), otherwise forwarded to moto. A forwarded call is answered
//!   [`CwFaults::delay`] after moto stored it (a slow CloudWatch: a client
//!   that stops waiting has had its datums stored anyway).
//!
//! `ListMetrics` calls are answered by the proxy itself with an empty list
//! when [`CwFaults::blind_list_metrics`] is set: CloudWatch documents that a
//! new metric can take up to fifteen minutes to be listed, which moto never
//! does.
//!
//! HTTP: one request per connection; every answer carries `Connection:
//! close`, so the client never reuses a connection the proxy is about to
//! close. Upstream gets the request's headers and body as they came, framed
//! by `Content-Length` with `Connection: close`, and the answer is read to
//! its end ([`crate::http::forward`]).
//!
//! Draws come from a `StdRng` seeded with [`CwFaults::seed`]. The listener,
//! thread and connections are [`crate::proxy`]'s; dropping the
//! [`CloudWatchProxy`] stops it.

use std::sync::atomic::Ordering;
use std::sync::Mutex;

use anyhow::Result;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::http::{self, Head, Request, Response};
use crate::proxy::{FaultPolicy, Faulted, Proxy};

/// What the proxy injects into `PutMetricData` calls.
#[derive(Debug, Clone, Default)]
pub struct CwFaults {
    /// Per call: answer 400 `Throttling` (query-protocol XML).
    pub p_throttle: f64,
    /// Per call: answer 500 `InternalFailure` or 503 `ServiceUnavailable`.
    pub p_5xx: f64,
    /// Answer 503 to every attempt of the Nth (0-based) distinct
    /// `PutMetricData` body seen since the proxy started.
    pub fail_call: Option<usize>,
    /// Seed of the random draws.
    pub seed: u64,
    /// Refuse, as CloudWatch does, a call with a dimension value CloudWatch
    /// does not accept (400 `InvalidParameterValue`).
    pub refuse_invalid: bool,
    /// With `refuse_invalid`: refuse dimension values containing this too.
    pub refuse_containing: Option<String>,
    /// Answer every `ListMetrics` with no metric, as CloudWatch does for a
    /// metric published less than fifteen minutes ago.
    pub blind_list_metrics: bool,
    /// Answer every forwarded `PutMetricData` this much after moto stored it.
    pub delay: Option<std::time::Duration>,
}

crate::proxy::counters! {
    /// What the proxy saw and did since it started.
    pub struct CwCounts in Counters {
        /// HTTP requests received (every operation).
        calls,
        /// `PutMetricData` calls received.
        put_metric_data,
        /// `PutMetricData` calls forwarded to moto (and answered by it).
        forwarded,
        /// Calls answered 400 `Throttling`.
        throttled,
        /// Calls answered 500.
        responses_500,
        /// Calls answered 503 (random draws and `fail_call`).
        responses_503,
        /// Of those, calls failed because they were `fail_call`.
        matched,
        /// Calls answered 400 `InvalidParameterValue` (`refuse_invalid`).
        refused_invalid,
        /// `ListMetrics` calls answered with an empty list (`blind_list_metrics`).
        list_metrics_blinded,
    }
}

impl CwCounts {
    /// `PutMetricData` calls answered with an injected error.
    pub fn injected(&self) -> u64 {
        self.throttled + self.responses_500 + self.responses_503 + self.refused_invalid
    }
}

/// The CloudWatch fault policy of a [`CloudWatchProxy`].
pub struct CwPolicy {
    /// Hashes of the distinct `PutMetricData` bodies, in arrival order.
    bodies: Mutex<Vec<u64>>,
    faults: Mutex<CwFaults>,
    rng: Mutex<StdRng>,
    counters: Counters,
}

/// A running CloudWatch fault proxy on 127.0.0.1:
/// `CloudWatchProxy::start(upstream, faults)`, `endpoint`, `set_faults`,
/// `counts`. Dropping it stops it.
pub type CloudWatchProxy = Proxy<CwPolicy>;

impl Faulted for CwPolicy {
    type Faults = CwFaults;
    type Counts = CwCounts;

    fn with_faults(faults: CwFaults) -> Self {
        CwPolicy {
            bodies: Mutex::new(Vec::new()),
            rng: Mutex::new(StdRng::seed_from_u64(faults.seed)),
            faults: Mutex::new(faults),
            counters: Counters::default(),
        }
    }

    fn faults(&self) -> &Mutex<CwFaults> {
        &self.faults
    }

    fn counts(&self) -> CwCounts {
        self.counters.snapshot()
    }
}

/// Whether a request is a `PutMetricData` call.
fn is_put_metric_data(req: &Request) -> bool {
    req.head
        .header("content-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"))
        || contains(&req.body, b"Action=PutMetricData")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

enum Verdict {
    Throttle,
    /// 400 `InvalidParameterValue` with this message.
    Invalid(String),
    Status(u16, bool),
    Forward,
}

impl CwPolicy {
    fn verdict(&self, req: &Request) -> Verdict {
        let faults = self.faults.lock().map(|f| f.clone()).unwrap_or_default();
        if faults.refuse_invalid {
            if let Some(message) = invalid_dimension(req, faults.refuse_containing.as_deref()) {
                return Verdict::Invalid(message);
            }
        }
        if let Some(n) = faults.fail_call {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            std::hash::Hash::hash(&req.body, &mut hasher);
            let hash = std::hash::Hasher::finish(&hasher);
            if let Ok(mut bodies) = self.bodies.lock() {
                let index = bodies.iter().position(|h| *h == hash).unwrap_or_else(|| {
                    bodies.push(hash);
                    bodies.len() - 1
                });
                if index == n {
                    return Verdict::Status(503, true);
                }
            }
        }
        let Ok(mut rng) = self.rng.lock() else {
            return Verdict::Forward;
        };
        let u: f64 = rng.random();
        let flip: bool = rng.random();
        if u < faults.p_throttle {
            Verdict::Throttle
        } else if u < faults.p_throttle + faults.p_5xx {
            Verdict::Status(if flip { 500 } else { 503 }, false)
        } else {
            Verdict::Forward
        }
    }
}

impl FaultPolicy for CwPolicy {
    type Plan = ();
    const NAME: &'static str = "cloudwatch-proxy";
    const ONE_REQUEST_PER_CONNECTION: bool = true;

    fn on_head(&self, _head: &Head) -> Option<()> {
        self.counters.calls.fetch_add(1, Ordering::Relaxed);
        Some(())
    }

    async fn answer(&self, (): (), upstream: &str, req: Request) -> Result<Option<Response>> {
        let c = &self.counters;
        let put_metric_data = is_put_metric_data(&req);
        let blind = self.faults.lock().is_ok_and(|f| f.blind_list_metrics);
        if blind && contains(&req.body, b"Action=ListMetrics") {
            c.list_metrics_blinded.fetch_add(1, Ordering::Relaxed);
            return Ok(Some(empty_list_metrics()));
        }
        let verdict = if put_metric_data {
            c.put_metric_data.fetch_add(1, Ordering::Relaxed);
            self.verdict(&req)
        } else {
            Verdict::Forward
        };
        Ok(Some(match verdict {
            Verdict::Throttle => {
                c.throttled.fetch_add(1, Ordering::Relaxed);
                xml_error(400, "Bad Request", "Sender", "Throttling", "Rate exceeded")
            }
            Verdict::Invalid(message) => {
                c.refused_invalid.fetch_add(1, Ordering::Relaxed);
                xml_error(
                    400,
                    "Bad Request",
                    "Sender",
                    "InvalidParameterValue",
                    &message,
                )
            }
            Verdict::Status(500, _) => {
                c.responses_500.fetch_add(1, Ordering::Relaxed);
                xml_error(
                    500,
                    "Internal Server Error",
                    "Receiver",
                    "InternalFailure",
                    "injected internal failure",
                )
            }
            Verdict::Status(_, matched) => {
                c.responses_503.fetch_add(1, Ordering::Relaxed);
                if matched {
                    c.matched.fetch_add(1, Ordering::Relaxed);
                }
                xml_error(
                    503,
                    "Service Unavailable",
                    "Receiver",
                    "ServiceUnavailable",
                    "injected outage",
                )
            }
            Verdict::Forward => {
                let answer = http::forward(upstream, &req.head, &req.body).await?;
                if put_metric_data {
                    c.forwarded.fetch_add(1, Ordering::Relaxed);
                    let delay = self.faults.lock().ok().and_then(|f| f.delay);
                    if let Some(d) = delay {
                        tokio::time::sleep(d).await;
                    }
                }
                answer
            }
        }))
    }
}

/// The message CloudWatch would give for the first dimension value of a
/// `PutMetricData` body it refuses, if any. The body is gunzipped when it
/// was sent compressed; an undecodable body is let through (moto answers).
fn invalid_dimension(req: &Request, containing: Option<&str>) -> Option<String> {
    let gzip = req
        .head
        .header("content-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    let body = if gzip {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&req.body[..]), &mut out)
            .ok()?;
        out
    } else {
        req.body.clone()
    };
    for pair in body.split(|&b| b == b'&') {
        let mut kv = pair.splitn(2, |&b| b == b'=');
        let (Some(key), Some(value)) = (kv.next(), kv.next()) else {
            continue;
        };
        let key = String::from_utf8_lossy(&percent_decode(key)).into_owned();
        if !(key.starts_with("MetricData.")
            && key.contains(".Dimensions.")
            && key.ends_with(".Value"))
        {
            continue;
        }
        let value = percent_decode(value);
        let Ok(text) = String::from_utf8(value) else {
            return Some(format!(
                "The parameter {key} must be a valid string (it is not UTF-8)."
            ));
        };
        if let Err(problem) = tailrace_wire::dimension::check_dimension_value(&text) {
            return Some(format!("The parameter {key} is invalid: {problem}."));
        }
        if containing.is_some_and(|c| text.contains(c)) {
            return Some(format!("The value {text} for parameter {key} is invalid."));
        }
    }
    None
}

/// Decode `%XX` escapes and `+` (a space) of a form-encoded text.
fn percent_decode(text: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < text.len() => match (hex(text[i + 1]), hex(text[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h << 4) | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// CloudWatch's answer to `ListMetrics` when it lists nothing (yet).
fn empty_list_metrics() -> Response {
    let body = "<ListMetricsResponse xmlns=\"http://monitoring.amazonaws.com/doc/2010-08-01/\">\
                <ListMetricsResult><Metrics/></ListMetricsResult>\
                <ResponseMetadata><RequestId>00000000-0000-0000-0000-11575e700000</RequestId>\
                </ResponseMetadata></ListMetricsResponse>";
    Response {
        status: 200,
        reason: "OK".to_string(),
        headers: vec![("Content-Type".into(), "text/xml".into())],
        body: body.as_bytes().to_vec(),
    }
}

/// A query-protocol error answer.
fn xml_error(status: u16, reason: &str, kind: &str, code: &str, message: &str) -> Response {
    let body = format!(
        "<ErrorResponse xmlns=\"http://monitoring.amazonaws.com/doc/2010-08-01/\">\
         <Error><Type>{kind}</Type><Code>{code}</Code><Message>{message}</Message></Error>\
         <RequestId>00000000-0000-0000-0000-c10ud0000000</RequestId></ErrorResponse>"
    );
    Response {
        status,
        reason: reason.to_string(),
        headers: vec![
            ("Content-Type".into(), "text/xml".into()),
            (
                "x-amzn-RequestId".into(),
                "00000000-0000-0000-0000-c10ud0000000".into(),
            ),
        ],
        body: body.into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request with these header lines after the request line.
    fn request(headers: &str, body: &[u8]) -> Request {
        let head = http::parse_request_head(format!("POST / HTTP/1.1\r\n{headers}\r\n").as_bytes())
            .expect("valid head")
            .expect("complete head");
        Request {
            head,
            body: body.to_vec(),
        }
    }

    #[test]
    fn throttling_body_is_query_protocol_xml() {
        let bytes = xml_error(400, "Bad Request", "Sender", "Throttling", "x").to_bytes(true);
        let a = String::from_utf8(bytes).expect("utf-8");
        assert!(a.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{a}");
        assert!(a.contains("<Code>Throttling</Code>") && a.contains("<Type>Sender</Type>"));
        let body = &a[a.find("\r\n\r\n").expect("head end") + 4..];
        assert!(a.contains(&format!("Content-Length: {}\r\n", body.len())));
        assert!(a.contains("Connection: close\r\n"));
    }

    #[test]
    fn refuses_dimension_values_cloudwatch_refuses() {
        let body = |value: &str| {
            request(
                "",
                format!(
                    "Action=PutMetricData&MetricData.member.1.Dimensions.member.1.Name=SourceApplication\
                     &MetricData.member.1.Dimensions.member.1.Value=ok&MetricData.member.2.Dimensions.member.1.Value={value}"
                )
                .as_bytes(),
            )
        };
        assert_eq!(invalid_dimension(&body("shop%20one"), None), None);
        let m = invalid_dimension(&body("bell%07"), None).expect("control character");
        assert!(
            m.starts_with("The parameter MetricData.member.2.Dimensions.member.1.Value"),
            "{m}"
        );
        assert!(invalid_dimension(&body("caf%C3%A9"), None).is_some());
        assert!(invalid_dimension(&body("%20%20"), None).is_some());
        assert!(invalid_dimension(&body("x-REFUSE"), Some("REFUSE")).is_some());
        assert_eq!(invalid_dimension(&body("x-REFUSE"), None), None);
        assert_eq!(percent_decode(b"a%2Bb+c%"), b"a+b c%".to_vec());
    }

    #[test]
    fn finds_put_metric_data() {
        let req = request("Content-Encoding: gzip\r\n", &[0x1f, 0x8b]);
        assert!(is_put_metric_data(&req));
        let req = request("", b"Action=GetMetricStatistics&Version=2010-08-01");
        assert!(!is_put_metric_data(&req));
        assert!(contains(b"Action=PutMetricData&x", b"Action=PutMetricData"));
    }
}
