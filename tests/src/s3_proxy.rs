//! A proxy in front of `moto_server`'s S3 that answers as S3 does a caller
//! without `s3:ListBucket` on the bucket: a GetObject or HeadObject of a
//! missing key is `403 AccessDenied`, not `404 NoSuchKey` (S3 will not tell
//! who may not list the bucket whether a key exists). moto enforces no IAM,
//! so the inventory updater's handling of that answer is tested through
//! this proxy. Everything else is forwarded unchanged; a forwarded 404 of a
//! GET or HEAD becomes the 403 S3 would give, with its XML error body.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use anyhow::Result;

use crate::http::{self, Head, Request, Response};
use crate::proxy::{FaultPolicy, Faulted, Proxy};

/// What the proxy does.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoListBucket {
    /// Answer a GET or HEAD of a missing key 403 (else a transparent proxy).
    pub deny_missing: bool,
    /// Answer every GET 403 (a role without s3:GetObject), unforwarded.
    pub deny_reads: bool,
}

crate::proxy::counters! {
    /// What the proxy saw and did since it started.
    pub struct S3Counts in Counters {
        /// HTTP requests received.
        calls,
        /// 404 answers turned into 403.
        denied,
    }
}

/// The policy of an [`S3NoListProxy`].
pub struct S3Policy {
    faults: Mutex<NoListBucket>,
    counters: Counters,
}

/// A running proxy on 127.0.0.1: `S3NoListProxy::start(upstream,
/// NoListBucket { deny_missing: true })`, `endpoint`, `counts`.
pub type S3NoListProxy = Proxy<S3Policy>;

impl Faulted for S3Policy {
    type Faults = NoListBucket;
    type Counts = S3Counts;

    fn with_faults(faults: NoListBucket) -> Self {
        S3Policy {
            faults: Mutex::new(faults),
            counters: Counters::default(),
        }
    }

    fn faults(&self) -> &Mutex<NoListBucket> {
        &self.faults
    }

    fn counts(&self) -> S3Counts {
        self.counters.snapshot()
    }
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl FaultPolicy for S3Policy {
    type Plan = ();
    const NAME: &'static str = "s3-no-list-proxy";
    const ONE_REQUEST_PER_CONNECTION: bool = true;

    fn on_head(&self, _head: &Head) -> Option<()> {
        inc(&self.counters.calls);
        Some(())
    }

    async fn answer(&self, (): (), upstream: &str, req: Request) -> Result<Option<Response>> {
        let faults = self.faults.lock().map(|f| *f).unwrap_or_default();
        let read = matches!(req.head.method(), "GET" | "HEAD");
        let answer = if faults.deny_reads && read {
            Response::new(404, "Not Found", "application/xml", Vec::new())
        } else {
            http::forward(upstream, &req.head, &req.body).await?
        };
        if !((faults.deny_missing || faults.deny_reads) && read && answer.status == 404) {
            return Ok(Some(answer));
        }
        inc(&self.counters.denied);
        let body = if req.head.method() == "HEAD" {
            Vec::new()
        } else {
            b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code><Message>Access Denied</Message><RequestId>0000000000000000</RequestId><HostId>injected</HostId></Error>".to_vec()
        };
        Ok(Some(Response::new(
            403,
            "Forbidden",
            "application/xml",
            body,
        )))
    }
}
