//! `tailrace-sink-kinesis`: a minimal, fast Kinesis PutRecords endpoint for benchmarks.
//!
//! A plain-tokio HTTP/1.1 server (keep-alive, `Content-Length` or chunked
//! bodies) on one thread that answers the AWS JSON 1.1 protocol the Rust SDK
//! speaks: `X-Amz-Target: Kinesis_20131202.PutRecords` gets a success for
//! every record; `PutRecord`, `DescribeStreamSummary` and `ListShards` get
//! minimal answers; anything else a 400. It counts what it was sent: records,
//! decoded data bytes, partition-key bytes, and — by decoding every record
//! with `tailrace_wire` — raw lines and, for partial aggregates, the requests
//! and rejected lines they account for, so a benchmark can check nothing was
//! lost. `GET /stats` returns the totals as JSON; SIGTERM/SIGINT prints them
//! to stdout and exits.
//!
//! It exists so the benchmark measures the agent, not an emulator.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use base64::Engine as _;
use clap::Parser;
use serde::Deserialize;
use tailrace_tests::http::{decode_chunked, parse_request_head, Head};
use tailrace_wire::{classify, Partial, RecordKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Command line.
#[derive(Debug, Parser)]
#[command(
    name = "tailrace-sink-kinesis",
    about = "Answer Kinesis PutRecords fast and count what arrives"
)]
struct Args {
    /// Address to listen on; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// Write the bound port to this file once listening (for scripts).
    #[arg(long)]
    port_file: Option<PathBuf>,
    /// Only count records and bytes; do not decode raw lines or partials.
    #[arg(long)]
    no_decode: bool,
}

/// Totals since start.
#[derive(Default)]
struct Stats {
    http_requests: AtomicU64,
    http_body_bytes: AtomicU64,
    put_records_calls: AtomicU64,
    records: AtomicU64,
    data_bytes: AtomicU64,
    partition_key_bytes: AtomicU64,
    max_records_per_call: AtomicU64,
    raw_records: AtomicU64,
    raw_lines: AtomicU64,
    partial_records: AtomicU64,
    partial_groups: AtomicU64,
    partial_requests: AtomicU64,
    partial_rejected_lines: AtomicU64,
    partial_late_records: AtomicU64,
    undecodable_records: AtomicU64,
    other_records: AtomicU64,
    other_targets: AtomicU64,
    bad_requests: AtomicU64,
    /// Requests per window start (partials only).
    windows: Mutex<BTreeMap<i64, u64>>,
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Stats {
    fn json(&self) -> serde_json::Value {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let windows: serde_json::Map<String, serde_json::Value> = self
            .windows
            .lock()
            .map(|w| {
                w.iter()
                    .map(|(k, v)| (k.to_string(), (*v).into()))
                    .collect()
            })
            .unwrap_or_default();
        serde_json::json!({
            "http_requests": g(&self.http_requests),
            "http_body_bytes": g(&self.http_body_bytes),
            "put_records_calls": g(&self.put_records_calls),
            "records": g(&self.records),
            "data_bytes": g(&self.data_bytes),
            "partition_key_bytes": g(&self.partition_key_bytes),
            "max_records_per_call": g(&self.max_records_per_call),
            "raw_records": g(&self.raw_records),
            "raw_lines": g(&self.raw_lines),
            "partial_records": g(&self.partial_records),
            "partial_groups": g(&self.partial_groups),
            "partial_requests": g(&self.partial_requests),
            "partial_rejected_lines": g(&self.partial_rejected_lines),
            "partial_late_records": g(&self.partial_late_records),
            "undecodable_records": g(&self.undecodable_records),
            "other_records": g(&self.other_records),
            "other_targets": g(&self.other_targets),
            "bad_requests": g(&self.bad_requests),
            "partial_requests_per_window": windows,
        })
    }
}

/// The PutRecords request body (only what is counted).
#[derive(Deserialize)]
struct PutRecordsRequest<'a> {
    #[serde(rename = "Records", borrow)]
    records: Vec<RequestRecord<'a>>,
}

/// One record of a PutRecords or PutRecord request.
#[derive(Deserialize)]
struct RequestRecord<'a> {
    #[serde(rename = "Data", borrow)]
    data: Cow<'a, str>,
    #[serde(rename = "PartitionKey", borrow)]
    partition_key: Cow<'a, str>,
}

const JSON_11: &str = "application/x-amz-json-1.1";
const SHARD: &str = "shardId-000000000000";

/// Per-connection state: scratch buffers and the sequence counter.
struct Conn {
    stats: Arc<Stats>,
    decode: bool,
    scratch: Vec<u8>,
    response: Vec<u8>,
    sequence: u64,
}

impl Conn {
    /// Counts one record; returns false when its base64 does not decode.
    fn count(&mut self, rec: &RequestRecord<'_>) -> bool {
        self.scratch.clear();
        if base64::engine::general_purpose::STANDARD
            .decode_vec(rec.data.as_bytes(), &mut self.scratch)
            .is_err()
        {
            return false;
        }
        let s = &self.stats;
        add(&s.records, 1);
        add(&s.data_bytes, self.scratch.len() as u64);
        add(&s.partition_key_bytes, rec.partition_key.len() as u64);
        if !self.decode {
            return true;
        }
        match classify(&self.scratch) {
            RecordKind::RawLines => {
                add(&s.raw_records, 1);
                add(
                    &s.raw_lines,
                    tailrace_wire::raw::lines(&self.scratch).count() as u64,
                );
            }
            RecordKind::Partial => match Partial::decode(&self.scratch) {
                Ok(p) => {
                    let requests = p.total().requests;
                    add(&s.partial_records, 1);
                    add(&s.partial_groups, p.groups.len() as u64);
                    add(&s.partial_requests, requests);
                    add(&s.partial_rejected_lines, p.rejected_lines);
                    add(&s.partial_late_records, u64::from(p.late));
                    if let Ok(mut w) = s.windows.lock() {
                        *w.entry(p.window_start).or_default() += requests + p.rejected_lines;
                    }
                }
                Err(_) => add(&s.undecodable_records, 1),
            },
            _ => add(&s.other_records, 1),
        }
        true
    }

    fn next_sequence(&mut self) -> u64 {
        self.sequence += 1;
        self.sequence
    }

    /// Handles one request; returns (status, content type, body).
    fn handle(&mut self, head: &Head, body: &[u8]) -> (u16, &'static str, Vec<u8>) {
        let stats = self.stats.clone();
        add(&stats.http_requests, 1);
        add(&stats.http_body_bytes, body.len() as u64);
        if head.method() == "GET" && head.target().starts_with("/stats") {
            return (
                200,
                "application/json",
                stats.json().to_string().into_bytes(),
            );
        }
        let op = head
            .header("x-amz-target")
            .and_then(|t| t.strip_prefix("Kinesis_20131202."))
            .unwrap_or("");
        match op {
            "PutRecords" => {
                let req: PutRecordsRequest<'_> = match serde_json::from_slice(body) {
                    Ok(r) => r,
                    Err(e) => return self.bad(&format!("cannot parse PutRecords body: {e}")),
                };
                add(&stats.put_records_calls, 1);
                stats
                    .max_records_per_call
                    .fetch_max(req.records.len() as u64, Ordering::Relaxed);
                for rec in &req.records {
                    if !self.count(rec) {
                        return self.bad("record Data is not base64");
                    }
                }
                let mut out = Vec::with_capacity(32 + req.records.len() * 64);
                out.extend_from_slice(b"{\"FailedRecordCount\":0,\"Records\":[");
                let mut itoa = itoa::Buffer::new();
                for i in 0..req.records.len() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(b"{\"SequenceNumber\":\"");
                    out.extend_from_slice(itoa.format(self.next_sequence()).as_bytes());
                    out.extend_from_slice(b"\",\"ShardId\":\"");
                    out.extend_from_slice(SHARD.as_bytes());
                    out.extend_from_slice(b"\"}");
                }
                out.extend_from_slice(b"]}");
                (200, JSON_11, out)
            }
            "PutRecord" => {
                let rec: RequestRecord<'_> = match serde_json::from_slice(body) {
                    Ok(r) => r,
                    Err(e) => return self.bad(&format!("cannot parse PutRecord body: {e}")),
                };
                if !self.count(&rec) {
                    return self.bad("record Data is not base64");
                }
                let seq = self.next_sequence();
                let out = serde_json::json!({"SequenceNumber": seq.to_string(), "ShardId": SHARD});
                (200, JSON_11, out.to_string().into_bytes())
            }
            "DescribeStreamSummary" => {
                add(&stats.other_targets, 1);
                let out = serde_json::json!({"StreamDescriptionSummary": {
                    "StreamName": "bench",
                    "StreamARN": "arn:aws:kinesis:us-east-1:000000000000:stream/bench",
                    "StreamStatus": "ACTIVE",
                    "RetentionPeriodHours": 24,
                    "StreamCreationTimestamp": 0,
                    "EnhancedMonitoring": [],
                    "OpenShardCount": 1,
                }});
                (200, JSON_11, out.to_string().into_bytes())
            }
            "ListShards" => {
                add(&stats.other_targets, 1);
                let out = serde_json::json!({"Shards": [{
                    "ShardId": SHARD,
                    "HashKeyRange": {"StartingHashKey": "0", "EndingHashKey": "340282366920938463463374607431768211455"},
                    "SequenceNumberRange": {"StartingSequenceNumber": "1"},
                }]});
                (200, JSON_11, out.to_string().into_bytes())
            }
            _ => {
                add(&stats.other_targets, 1);
                let msg = format!("operation `{op}` is not implemented by the benchmark sink");
                let out =
                    serde_json::json!({"__type": "UnknownOperationException", "message": msg});
                (400, JSON_11, out.to_string().into_bytes())
            }
        }
    }

    fn bad(&self, message: &str) -> (u16, &'static str, Vec<u8>) {
        add(&self.stats.bad_requests, 1);
        let out = serde_json::json!({"__type": "SerializationException", "message": message});
        (400, JSON_11, out.to_string().into_bytes())
    }

    /// Serves one connection until the peer closes it.
    async fn serve(&mut self, mut sock: TcpStream) -> Result<()> {
        sock.set_nodelay(true).ok();
        let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
        loop {
            // The head.
            let head = loop {
                match parse_request_head(&buf) {
                    Ok(Some(h)) => break h,
                    Ok(None) => {
                        if sock.read_buf(&mut buf).await? == 0 {
                            return Ok(());
                        }
                    }
                    Err(e) => {
                        add(&self.stats.bad_requests, 1);
                        let _ = sock
                            .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                            .await;
                        return Err(e.into());
                    }
                }
            };
            if head.expect_continue {
                sock.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
            }
            // The body.
            let (body, used) = if head.chunked {
                loop {
                    match decode_chunked(&buf[head.len..])? {
                        Some((body, n)) => break (Cow::Owned(body), head.len + n),
                        None => {
                            if sock.read_buf(&mut buf).await? == 0 {
                                return Ok(());
                            }
                        }
                    }
                }
            } else {
                let len = head.content_length.unwrap_or(0);
                buf.reserve((head.len + len).saturating_sub(buf.len()));
                while buf.len() < head.len + len {
                    if sock.read_buf(&mut buf).await? == 0 {
                        return Ok(());
                    }
                }
                (
                    Cow::Borrowed(&buf[head.len..head.len + len]),
                    head.len + len,
                )
            };
            let (status, content_type, out) = self.handle(&head, &body);
            drop(body);
            buf.drain(..used);
            self.response.clear();
            let reason = if status == 200 { "OK" } else { "Bad Request" };
            write!(
                self.response,
                "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nx-amzn-RequestId: 00000000-0000-0000-0000-{:012}\r\n{}\r\n",
                out.len(),
                self.sequence % 1_000_000_000_000,
                if head.close { "Connection: close\r\n" } else { "" },
            )?;
            self.response.extend_from_slice(&out);
            sock.write_all(&self.response).await?;
            if head.close {
                return Ok(());
            }
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    let listener = TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr().context("local address")?;
    if let Some(path) = &args.port_file {
        // Write then rename, so a script polling for the file never reads half of it.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, format!("{}\n", addr.port()))
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    }
    eprintln!("tailrace-sink-kinesis: listening on http://{addr}");
    let stats = Arc::new(Stats::default());
    let decode = !args.no_decode;
    let accept = {
        let stats = stats.clone();
        async move {
            let mut next_base = 0u64;
            loop {
                let (sock, _) = match listener.accept().await {
                    Ok(s) => s,
                    Err(e) => {
                        eprintln!("tailrace-sink-kinesis: accept: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                        continue;
                    }
                };
                // Sequence numbers: distinct per connection, increasing within one.
                next_base += 1;
                let mut conn = Conn {
                    stats: stats.clone(),
                    decode,
                    scratch: Vec::with_capacity(1 << 20),
                    response: Vec::with_capacity(64 * 1024),
                    sequence: next_base << 40,
                };
                tokio::spawn(async move {
                    if let Err(e) = conn.serve(sock).await {
                        eprintln!("tailrace-sink-kinesis: connection: {e:#}");
                    }
                });
            }
        }
    };
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    tokio::select! {
        _ = accept => {},
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", stats.json()).context("writing stats")?;
    stdout.flush().context("writing stats")?;
    Ok(())
}
