//! A fault-injecting HTTP proxy between an agent and `moto_server`.
//!
//! moto never refuses single records of a `PutRecords` call, so this proxy is
//! what exercises the shipper's retry path. It speaks just enough HTTP/1.1
//! (keep-alive towards the client, `Content-Length` or chunked request bodies,
//! `Expect: 100-continue`) for the AWS SDK for Rust, which sends Kinesis calls
//! as `POST /` with `X-Amz-Target: Kinesis_20131202.<Op>` and JSON 1.1 bodies.
//!
//! Per call, in this order of precedence (one uniform draw):
//! - with `p_drop` it closes the connection after the request head, leaving
//!   the body unread (the client sees a reset mid-request);
//! - with `p_stall` it reads the request and then says nothing for
//!   `stall_for`, then closes the connection (the request is not forwarded);
//! - with `p_5xx` it answers 500 (`InternalFailure`) or 503
//!   (`ServiceUnavailable`) without forwarding;
//! - otherwise it forwards the request. For `PutRecords`, each record is
//!   refused with probability `p_record` (`ProvisionedThroughputExceededException`
//!   or `InternalFailure`, chosen at random), only the other records are
//!   forwarded to moto (rewritten JSON body, recomputed `Content-Length`;
//!   moto does not check SigV4 signatures, so the stale signature is
//!   accepted), and the answer has one result per *original* record, in
//!   request order, with the right `FailedRecordCount`.
//!
//! Every other operation is forwarded unchanged (faults above still apply).
//! Upstream, each request uses a fresh connection with `Connection: close`,
//! so the response is simply read to its end.
//!
//! All draws come from one `StdRng` seeded with [`Faults::seed`], so a run
//! is reproducible up to the order in which concurrent calls take their
//! draws. The proxy runs on its own thread and runtime; dropping the
//! [`FaultProxy`] stops it and closes every connection.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the proxy injects. Probabilities are in `0.0..=1.0`.
#[derive(Debug, Clone)]
pub struct Faults {
    /// Per `PutRecords` record: refuse it inside an otherwise successful call.
    pub p_record: f64,
    /// Per call: answer 500 or 503 without forwarding.
    pub p_5xx: f64,
    /// Per call: read the request, say nothing for [`Faults::stall_for`], close.
    pub p_stall: f64,
    /// How long a stalled call is held before its connection is closed.
    pub stall_for: Duration,
    /// Per call: close the connection after the request head.
    pub p_drop: f64,
    /// Seed of the proxy's random draws.
    pub seed: u64,
}

impl Faults {
    /// No faults: a transparent proxy.
    pub fn none() -> Faults {
        Faults {
            p_record: 0.0,
            p_5xx: 0.0,
            p_stall: 0.0,
            stall_for: Duration::from_secs(5),
            p_drop: 0.0,
            seed: 0,
        }
    }
}

impl Default for Faults {
    fn default() -> Faults {
        Faults::none()
    }
}

/// What the proxy saw and did, since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// HTTP requests received (every operation).
    pub calls: u64,
    /// `PutRecords` calls received.
    pub put_records_calls: u64,
    /// Records in the `PutRecords` calls that were not faulted as a whole.
    pub records_seen: u64,
    /// Records refused with `ProvisionedThroughputExceededException`.
    pub records_throttled: u64,
    /// Records refused with `InternalFailure`.
    pub records_internal_failure: u64,
    /// `PutRecords` calls forwarded with a rewritten (shortened) body.
    pub rewritten_calls: u64,
    /// Calls answered 500.
    pub responses_500: u64,
    /// Calls answered 503.
    pub responses_503: u64,
    /// Calls stalled, then closed unanswered.
    pub stalls: u64,
    /// Connections closed mid-request.
    pub drops: u64,
}

impl FaultCounts {
    /// Records refused, whatever the code.
    pub fn records_failed(&self) -> u64 {
        self.records_throttled + self.records_internal_failure
    }

    /// Calls answered with a 5xx status.
    pub fn responses_5xx(&self) -> u64 {
        self.responses_500 + self.responses_503
    }
}

#[derive(Default)]
struct Counters {
    calls: AtomicU64,
    put_records_calls: AtomicU64,
    records_seen: AtomicU64,
    records_throttled: AtomicU64,
    records_internal_failure: AtomicU64,
    rewritten_calls: AtomicU64,
    responses_500: AtomicU64,
    responses_503: AtomicU64,
    stalls: AtomicU64,
    drops: AtomicU64,
}

fn inc(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

struct Shared {
    upstream: String,
    faults: Mutex<Faults>,
    rng: Mutex<StdRng>,
    counters: Counters,
}

/// A running fault-injecting proxy on 127.0.0.1. Dropping it stops it.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Start a proxy on a free 127.0.0.1 port forwarding to `upstream`
    /// (`http://host:port`, as [`crate::Moto::endpoint`] returns).
    pub fn start(upstream: &str, faults: Faults) -> Result<FaultProxy> {
        let upstream = upstream
            .strip_prefix("http://")
            .with_context(|| format!("upstream {upstream} is not an http:// URL"))?
            .trim_end_matches('/')
            .to_string();
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").context("binding the fault proxy")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream,
            rng: Mutex::new(StdRng::seed_from_u64(faults.seed)),
            faults: Mutex::new(faults),
            counters: Counters::default(),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("building the fault proxy's runtime")?;
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("fault-proxy".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            eprintln!("fault proxy: {e}");
                            return;
                        }
                    };
                    let accept = async {
                        loop {
                            let Ok((sock, _)) = listener.accept().await else {
                                tokio::time::sleep(Duration::from_millis(10)).await;
                                continue;
                            };
                            let shared = thread_shared.clone();
                            tokio::spawn(async move {
                                let _ = serve(&shared, sock).await;
                            });
                        }
                    };
                    tokio::select! {
                        _ = accept => {}
                        _ = stopped => {}
                    }
                });
                // Dropping the runtime cancels every connection task.
            })
            .context("starting the fault proxy thread")?;
        Ok(FaultProxy {
            addr,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The endpoint URL to give the agent instead of moto's.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Replace the fault probabilities (the random sequence continues).
    /// `Faults::none()` turns the proxy transparent.
    pub fn set_faults(&self, faults: Faults) {
        if let Ok(mut f) = self.shared.faults.lock() {
            *f = faults;
        }
    }

    /// A snapshot of the counters.
    pub fn counts(&self) -> FaultCounts {
        let c = &self.shared.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        FaultCounts {
            calls: g(&c.calls),
            put_records_calls: g(&c.put_records_calls),
            records_seen: g(&c.records_seen),
            records_throttled: g(&c.records_throttled),
            records_internal_failure: g(&c.records_internal_failure),
            rewritten_calls: g(&c.rewritten_calls),
            responses_500: g(&c.responses_500),
            responses_503: g(&c.responses_503),
            stalls: g(&c.stalls),
            drops: g(&c.drops),
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A parsed request or response head.
struct Head {
    /// Request: method, target. Response: status code, reason.
    first: (String, String),
    headers: Vec<(String, String)>,
    /// Bytes the head takes, blank line included.
    len: usize,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn chunked(&self) -> bool {
        self.header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    }

    fn content_length(&self) -> Result<Option<usize>> {
        match self.header("content-length") {
            None => Ok(None),
            Some(v) => Ok(Some(v.trim().parse().context("bad Content-Length")?)),
        }
    }
}

/// Parse a head if `buf` holds a complete one. `request`: the first line is
/// `METHOD TARGET VERSION`, else `VERSION STATUS REASON`.
fn parse_head(buf: &[u8], request: bool) -> Result<Option<Head>> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > 64 * 1024 {
            bail!("HTTP head longer than 64 KiB");
        }
        return Ok(None);
    };
    let text = std::str::from_utf8(&buf[..end]).context("HTTP head is not UTF-8")?;
    let mut lines = text.split("\r\n");
    let first = lines.next().unwrap_or_default();
    let mut parts = first.splitn(3, ' ');
    let (a, b, c) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let first = if request {
        if !c.starts_with("HTTP/1.") {
            bail!("not an HTTP/1.x request: {first}");
        }
        (a.to_string(), b.to_string())
    } else {
        if !a.starts_with("HTTP/1.") {
            bail!("not an HTTP/1.x response: {first}");
        }
        (b.to_string(), c.to_string())
    };
    let mut headers = Vec::new();
    for line in lines {
        let (k, v) = line
            .split_once(':')
            .with_context(|| format!("bad header line: {line}"))?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    Ok(Some(Head {
        first,
        headers,
        len: end + 4,
    }))
}

/// Decode a chunked body at the start of `buf`: the body and the bytes it
/// took, or `None` if incomplete. Trailers are skipped.
fn decode_chunked(buf: &[u8]) -> Result<Option<(Vec<u8>, usize)>> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let Some(eol) = buf[at..].windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let line = std::str::from_utf8(&buf[at..at + eol]).context("chunk size")?;
        let size_text = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .with_context(|| format!("bad chunk size {size_text:?}"))?;
        at += eol + 2;
        if size == 0 {
            // Trailers, then a blank line.
            loop {
                let Some(eol) = buf[at..].windows(2).position(|w| w == b"\r\n") else {
                    return Ok(None);
                };
                at += eol + 2;
                if eol == 0 {
                    return Ok(Some((body, at)));
                }
            }
        }
        if buf.len() < at + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&buf[at..at + size]);
        at += size + 2;
    }
}

/// A response to send to the client.
struct Response {
    status: u16,
    reason: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

const JSON_11: &str = "application/x-amz-json-1.1";

fn json_response(status: u16, reason: &str, body: &Value) -> Response {
    Response {
        status,
        reason: reason.to_string(),
        headers: vec![
            ("Content-Type".into(), JSON_11.into()),
            (
                "x-amzn-RequestId".into(),
                "00000000-0000-0000-0000-fa0170000000".into(),
            ),
        ],
        body: body.to_string().into_bytes(),
    }
}

/// Headers never copied from one side to the other: framing and hop-by-hop.
fn hop_by_hop(name: &str) -> bool {
    [
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "expect",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}

enum Fault {
    Drop,
    Stall(Duration),
    Status(u16),
    Pass,
}

impl Shared {
    fn draw_call_fault(&self) -> Fault {
        let faults = match self.faults.lock() {
            Ok(f) => f.clone(),
            Err(_) => return Fault::Pass,
        };
        let Ok(mut rng) = self.rng.lock() else {
            return Fault::Pass;
        };
        let u: f64 = rng.random();
        let flip: bool = rng.random();
        if u < faults.p_drop {
            Fault::Drop
        } else if u < faults.p_drop + faults.p_stall {
            Fault::Stall(faults.stall_for)
        } else if u < faults.p_drop + faults.p_stall + faults.p_5xx {
            Fault::Status(if flip { 500 } else { 503 })
        } else {
            Fault::Pass
        }
    }

    /// For each of `n` records: `None` (forward) or the error code to inject.
    fn draw_record_faults(&self, n: usize) -> Vec<Option<&'static str>> {
        let p = self.faults.lock().map(|f| f.p_record).unwrap_or(0.0);
        let Ok(mut rng) = self.rng.lock() else {
            return vec![None; n];
        };
        (0..n)
            .map(|_| {
                let u: f64 = rng.random();
                let flip: bool = rng.random();
                (u < p).then_some(if flip {
                    "ProvisionedThroughputExceededException"
                } else {
                    "InternalFailure"
                })
            })
            .collect()
    }
}

/// Serve one client connection until it closes or a fault closes it.
async fn serve(shared: &Shared, mut sock: TcpStream) -> Result<()> {
    sock.set_nodelay(true).ok();
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    loop {
        let head = loop {
            if let Some(h) = parse_head(&buf, true)? {
                break h;
            }
            if sock.read_buf(&mut buf).await? == 0 {
                return Ok(());
            }
        };
        let c = &shared.counters;
        inc(&c.calls, 1);
        let fault = shared.draw_call_fault();
        if let Fault::Drop = fault {
            inc(&c.drops, 1);
            // Unread data in the socket makes the close a reset.
            return Ok(());
        }
        if head
            .header("expect")
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
        {
            sock.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
        }
        let (body, used) = if head.chunked() {
            loop {
                if let Some((body, n)) = decode_chunked(&buf[head.len..])? {
                    break (body, head.len + n);
                }
                if sock.read_buf(&mut buf).await? == 0 {
                    return Ok(());
                }
            }
        } else {
            let len = head.content_length()?.unwrap_or(0);
            while buf.len() < head.len + len {
                if sock.read_buf(&mut buf).await? == 0 {
                    return Ok(());
                }
            }
            (buf[head.len..head.len + len].to_vec(), head.len + len)
        };
        buf.drain(..used);
        let response = match fault {
            Fault::Drop => return Ok(()),
            Fault::Stall(d) => {
                inc(&c.stalls, 1);
                tokio::time::sleep(d).await;
                return Ok(());
            }
            Fault::Status(500) => {
                inc(&c.responses_500, 1);
                json_response(
                    500,
                    "Internal Server Error",
                    &json!({"__type": "InternalFailure", "message": "injected"}),
                )
            }
            Fault::Status(_) => {
                inc(&c.responses_503, 1);
                json_response(
                    503,
                    "Service Unavailable",
                    &json!({"__type": "ServiceUnavailable", "message": "injected"}),
                )
            }
            Fault::Pass => {
                let op = head
                    .header("x-amz-target")
                    .and_then(|t| t.strip_prefix("Kinesis_20131202."))
                    .unwrap_or("");
                if op == "PutRecords" {
                    inc(&c.put_records_calls, 1);
                    put_records(shared, &head, body).await?
                } else {
                    forward(shared, &head, &body).await?
                }
            }
        };
        let mut out = format!("HTTP/1.1 {} {}\r\n", response.status, response.reason);
        for (k, v) in &response.headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str(&format!("Content-Length: {}\r\n\r\n", response.body.len()));
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&response.body);
        sock.write_all(&bytes).await?;
        if head
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
        {
            return Ok(());
        }
    }
}

/// Send the request to the upstream on a fresh connection; return its answer.
async fn forward(shared: &Shared, head: &Head, body: &[u8]) -> Result<Response> {
    let mut up = TcpStream::connect(&shared.upstream)
        .await
        .with_context(|| format!("connecting to {}", shared.upstream))?;
    let mut out = format!("{} {} HTTP/1.1\r\n", head.first.0, head.first.1);
    for (k, v) in &head.headers {
        if !hop_by_hop(k) {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    out.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    up.write_all(&bytes).await?;
    let mut buf = Vec::new();
    up.read_to_end(&mut buf).await?;
    let rhead = parse_head(&buf, false)?.context("upstream closed before a full head")?;
    let rest = &buf[rhead.len..];
    let body = if rhead.chunked() {
        decode_chunked(rest)?
            .context("truncated chunked upstream body")?
            .0
    } else {
        match rhead.content_length()? {
            Some(n) if n <= rest.len() => rest[..n].to_vec(),
            Some(_) => bail!("truncated upstream body"),
            None => rest.to_vec(),
        }
    };
    let status: u16 = rhead.first.0.parse().context("upstream status")?;
    Ok(Response {
        status,
        reason: rhead.first.1.clone(),
        headers: rhead
            .headers
            .into_iter()
            .filter(|(k, _)| !hop_by_hop(k) && !k.eq_ignore_ascii_case("x-amz-crc32"))
            .collect(),
        body,
    })
}

/// `PutRecords`: refuse some records, forward the others, merge the answers.
async fn put_records(shared: &Shared, head: &Head, body: Vec<u8>) -> Result<Response> {
    let c = &shared.counters;
    let Ok(mut request) = serde_json::from_slice::<Value>(&body) else {
        return forward(shared, head, &body).await;
    };
    let Some(records) = request.get_mut("Records").and_then(Value::as_array_mut) else {
        return forward(shared, head, &body).await;
    };
    let originals = std::mem::take(records);
    inc(&c.records_seen, originals.len() as u64);
    let verdicts = shared.draw_record_faults(originals.len());
    let injected = verdicts.iter().filter(|v| v.is_some()).count();
    if injected == 0 {
        return forward(shared, head, &body).await;
    }
    for code in verdicts.iter().flatten() {
        if *code == "InternalFailure" {
            inc(&c.records_internal_failure, 1);
        } else {
            inc(&c.records_throttled, 1);
        }
    }
    let kept: Vec<Value> = originals
        .into_iter()
        .zip(&verdicts)
        .filter(|(_, v)| v.is_none())
        .map(|(r, _)| r)
        .collect();
    let kept_len = kept.len();
    let (mut answer, upstream_results, upstream_failed) = if kept.is_empty() {
        (json_response(200, "OK", &json!({})), Vec::new(), 0u64)
    } else {
        *records = kept;
        let rewritten = serde_json::to_vec(&request)?;
        inc(&c.rewritten_calls, 1);
        let answer = forward(shared, head, &rewritten).await?;
        if answer.status != 200 {
            // The whole call failed upstream: pass that on, the client retries all.
            return Ok(answer);
        }
        let parsed: Value =
            serde_json::from_slice(&answer.body).context("upstream PutRecords answer")?;
        let results = parsed
            .get("Records")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if results.len() != kept_len {
            bail!(
                "upstream answered {} results for {kept_len} records",
                results.len()
            );
        }
        let failed = parsed
            .get("FailedRecordCount")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        (answer, results, failed)
    };
    let mut upstream_results = upstream_results.into_iter();
    let mut merged = Vec::with_capacity(verdicts.len());
    for verdict in &verdicts {
        match verdict {
            Some(code) => {
                let message = if *code == "InternalFailure" {
                    "Internal service failure (injected)."
                } else {
                    "Rate exceeded for shard shardId-000000000000 (injected)."
                };
                merged.push(json!({"ErrorCode": code, "ErrorMessage": message}));
            }
            None => merged.push(
                upstream_results
                    .next()
                    .context("fewer upstream results than kept records")?,
            ),
        }
    }
    let out = json!({
        "FailedRecordCount": upstream_failed + injected as u64,
        "Records": merged,
    });
    answer.body = out.to_string().into_bytes();
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_decode() -> Result<()> {
        let (body, n) = decode_chunked(b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nT: v\r\n\r\nNEXT")?
            .context("complete")?;
        assert_eq!(body, b"abcde");
        assert_eq!(n, 30, "everything up to the trailers' blank line, not NEXT");
        assert!(decode_chunked(b"3\r\nab")?.is_none());
        Ok(())
    }

    #[test]
    fn heads_parse() -> Result<()> {
        let h = parse_head(
            b"POST / HTTP/1.1\r\nX-Amz-Target: Kinesis_20131202.PutRecords\r\ncontent-length: 2\r\n\r\n{}",
            true,
        )?
        .context("complete")?;
        assert_eq!(h.first.0, "POST");
        assert_eq!(
            h.header("x-amz-target"),
            Some("Kinesis_20131202.PutRecords")
        );
        assert_eq!(h.content_length()?, Some(2));
        assert!(parse_head(b"POST / HTTP/1.1\r\n", true)?.is_none());
        Ok(())
    }
}
