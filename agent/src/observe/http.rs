//! The HTTP endpoint (off by default): `GET /metrics` in the Prometheus text
//! format, `GET /health` answering `200 ok` or `503` with one reason per
//! line (see [`crate::observe::registry::Registry::problems`]).
//!
//! hyper 1 (HTTP/1.1 only) serves it: it is already in the build through
//! the AWS SDK, and two fixed routes need no router. Each connection runs on
//! its own task and only reads the registry, so a slow scraper holds up
//! nothing else.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use crate::observe::metric_set::prometheus_text;
use crate::observe::registry::Registry;
use crate::shared::counters::now_ms;
use crate::shared::ratelog::Repeats;

/// Content type of the Prometheus text format.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Answer one request.
pub fn respond(registry: &Registry, method: &Method, path: &str) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (method, path) {
        (&Method::GET, "/metrics") => (
            StatusCode::OK,
            PROMETHEUS_CONTENT_TYPE,
            prometheus_text(registry),
        ),
        (&Method::GET, "/health") => {
            let problems = registry.problems(now_ms());
            if problems.is_empty() {
                (StatusCode::OK, "text/plain; charset=utf-8", "ok\n".into())
            } else {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain; charset=utf-8",
                    problems.join("\n") + "\n",
                )
            }
        }
        (_, "/metrics" | "/health") => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "only GET\n".into(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found: try /metrics or /health\n".into(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, v);
    }
    response
}

/// Serve on `listener` until aborted.
pub async fn serve(listener: tokio::net::TcpListener, registry: Arc<Registry>) {
    let accept_errors = Repeats::default();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, say: wait a little, try again.
                if let Some(more) = accept_errors.check() {
                    tracing::warn!(error = %e, "HTTP endpoint: accept failed{more}");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let registry = registry.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let response = respond(&registry, req.method(), req.uri().path());
                async move { Ok::<_, Infallible>(response) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "HTTP endpoint: connection ended with an error");
            }
        });
    }
}
