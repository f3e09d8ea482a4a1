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
//! so the response is simply read to its end ([`crate::http::forward`]).
//!
//! All draws come from one `StdRng` seeded with [`Faults::seed`], so a run
//! is reproducible up to the order in which concurrent calls take their
//! draws. The listener, thread and connections are [`crate::proxy`]'s;
//! dropping the [`FaultProxy`] stops it and closes every connection.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::http::{self, Head, Request, Response};
use crate::proxy::{FaultPolicy, Faulted, Proxy};

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

crate::proxy::counters! {
    /// What the proxy saw and did, since it started.
    pub struct FaultCounts in Counters {
        /// HTTP requests received (every operation).
        calls,
        /// `PutRecords` calls received.
        put_records_calls,
        /// Records in the `PutRecords` calls that were not faulted as a whole.
        records_seen,
        /// Records refused with `ProvisionedThroughputExceededException`.
        records_throttled,
        /// Records refused with `InternalFailure`.
        records_internal_failure,
        /// `PutRecords` calls forwarded with a rewritten (shortened) body.
        rewritten_calls,
        /// Calls answered 500.
        responses_500,
        /// Calls answered 503.
        responses_503,
        /// Calls stalled, then closed unanswered.
        stalls,
        /// Connections closed mid-request.
        drops,
    }
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

fn inc(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// The Kinesis fault policy of a [`FaultProxy`].
pub struct KinesisFaults {
    faults: Mutex<Faults>,
    rng: Mutex<StdRng>,
    counters: Counters,
}

/// A running fault-injecting proxy on 127.0.0.1 in front of Kinesis (or
/// any AWS JSON endpoint): `FaultProxy::start(upstream, faults)`,
/// `endpoint`, `set_faults`, `counts`. Dropping it stops it.
pub type FaultProxy = Proxy<KinesisFaults>;

impl Faulted for KinesisFaults {
    type Faults = Faults;
    type Counts = FaultCounts;

    fn with_faults(faults: Faults) -> Self {
        KinesisFaults {
            rng: Mutex::new(StdRng::seed_from_u64(faults.seed)),
            faults: Mutex::new(faults),
            counters: Counters::default(),
        }
    }

    fn faults(&self) -> &Mutex<Faults> {
        &self.faults
    }

    fn counts(&self) -> FaultCounts {
        self.counters.snapshot()
    }
}

const JSON_11: &str = "application/x-amz-json-1.1";

fn json_response(status: u16, reason: &str, body: &Value) -> Response {
    Response::new(status, reason, JSON_11, body.to_string().into_bytes())
}

/// What one call gets, drawn when its head arrives (the [`KinesisFaults`]
/// policy's plan).
pub enum Fault {
    /// Read the request, say nothing this long, close.
    Stall(Duration),
    /// Answer with this 5xx status, unforwarded.
    Status(u16),
    /// Forward it (single records may still be refused).
    Pass,
}

impl KinesisFaults {
    /// `None`: drop the connection.
    fn draw_call_fault(&self) -> Option<Fault> {
        let faults = match self.faults.lock() {
            Ok(f) => f.clone(),
            Err(_) => return Some(Fault::Pass),
        };
        let Ok(mut rng) = self.rng.lock() else {
            return Some(Fault::Pass);
        };
        let u: f64 = rng.random();
        let flip: bool = rng.random();
        Some(if u < faults.p_drop {
            return None;
        } else if u < faults.p_drop + faults.p_stall {
            Fault::Stall(faults.stall_for)
        } else if u < faults.p_drop + faults.p_stall + faults.p_5xx {
            Fault::Status(if flip { 500 } else { 503 })
        } else {
            Fault::Pass
        })
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

impl FaultPolicy for KinesisFaults {
    type Plan = Fault;
    const NAME: &'static str = "fault-proxy";
    const ONE_REQUEST_PER_CONNECTION: bool = false;

    fn on_head(&self, _head: &Head) -> Option<Fault> {
        let c = &self.counters;
        inc(&c.calls, 1);
        let fault = self.draw_call_fault();
        if fault.is_none() {
            inc(&c.drops, 1);
        }
        fault
    }

    async fn answer(&self, fault: Fault, upstream: &str, req: Request) -> Result<Option<Response>> {
        let c = &self.counters;
        Ok(Some(match fault {
            Fault::Stall(d) => {
                inc(&c.stalls, 1);
                tokio::time::sleep(d).await;
                return Ok(None);
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
                let op = req
                    .head
                    .header("x-amz-target")
                    .and_then(|t| t.strip_prefix("Kinesis_20131202."))
                    .unwrap_or("");
                if op == "PutRecords" {
                    inc(&c.put_records_calls, 1);
                    self.put_records(upstream, &req.head, req.body).await?
                } else {
                    http::forward(upstream, &req.head, &req.body).await?
                }
            }
        }))
    }
}

impl KinesisFaults {
    /// `PutRecords`: refuse some records, forward the others, merge the answers.
    async fn put_records(&self, upstream: &str, head: &Head, body: Vec<u8>) -> Result<Response> {
        let c = &self.counters;
        let Ok(mut request) = serde_json::from_slice::<Value>(&body) else {
            return http::forward(upstream, head, &body).await;
        };
        let Some(records) = request.get_mut("Records").and_then(Value::as_array_mut) else {
            return http::forward(upstream, head, &body).await;
        };
        let originals = std::mem::take(records);
        inc(&c.records_seen, originals.len() as u64);
        let verdicts = self.draw_record_faults(originals.len());
        let injected = verdicts.iter().filter(|v| v.is_some()).count();
        if injected == 0 {
            return http::forward(upstream, head, &body).await;
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
            let answer = http::forward(upstream, head, &rewritten).await?;
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
}
