//! Where the metadata table comes from: the S3 object named by
//! `TAILRACE_METADATA`, cached for a TTL and re-read with a conditional GET
//! (`If-None-Match: <etag>`).
//!
//! Rules:
//! - A fresh copy younger than the TTL is served without asking S3.
//! - After the TTL, a conditional GET: `304 Not Modified` (a service error
//!   whose raw status is 304 in the Rust SDK) extends the copy's life.
//! - A changed file that parses without errors replaces the table.
//! - A changed file with wrong rows does **not** replace a good table: the
//!   last good copy keeps serving and every wrong row is logged (row number,
//!   reason). Its ETag is remembered so the same broken file is not fetched
//!   and reported again every TTL, only once per change.
//! - A missing file or bucket, or an S3 error (refused connection, 5xx, no
//!   answer within [`FETCH_TIMEOUT`]) keeps the last good copy, logged;
//!   [`MetadataSource::serve`] says the copy is stale (the handler publishes
//!   `MetadataStale` and logs it) until a read succeeds again.
//! - Every wrong row is logged as `s3://bucket/key:LINE: what was expected`.
//! - Before any copy was loaded, a file with wrong rows is used for its valid
//!   rows (better than nothing, reported); if S3 cannot be read at all,
//!   [`MetadataSource::current`] fails, so the batch is retried later rather
//!   than attributing all traffic to `unknown`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_s3::error::ProvideErrorMetadata;
use tokio::sync::Mutex;

use crate::config::S3Location;
use crate::join::metadata::{Metadata, RowError};

/// How long one read of the file may take before it counts as failed.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// The table to use for a batch.
#[derive(Debug, Clone)]
pub struct Served {
    /// The table.
    pub table: Arc<Metadata>,
    /// Why it is not the current file's (last read failed, or the file has
    /// wrong rows), if so.
    pub stale: Option<String>,
}

/// The metadata could not be loaded and no earlier copy exists.
#[derive(Debug, thiserror::Error)]
#[error("metadata {location} could not be loaded and no earlier copy exists: {reason}")]
pub struct MetadataError {
    /// The S3 object.
    pub location: String,
    /// Why it could not be loaded.
    pub reason: String,
}

/// What the last refresh attempt found, for logs and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceStatus {
    /// ETag of the table being served.
    pub serving_etag: Option<String>,
    /// Entries in the table being served.
    pub serving_entries: usize,
    /// ETag of the last object fetched (may be a rejected one).
    pub seen_etag: Option<String>,
    /// Wrong rows of the last fetched object (empty if it was good).
    pub row_errors: Vec<RowError>,
    /// The last fetch error (missing object, access denied…), if the last
    /// attempt failed.
    pub last_error: Option<String>,
    /// Number of objects fetched and parsed (200 responses).
    pub fetches: u64,
    /// Number of `304 Not Modified` answers.
    pub not_modified: u64,
}

struct State {
    current: Option<Arc<Metadata>>,
    checked_at: Option<Instant>,
    status: SourceStatus,
}

/// A cached, self-refreshing metadata table. A clone shares the cache: a
/// process builds one (`clients::metadata_source`) and its handler and
/// notifier each hold a clone, so the file is fetched once for both.
#[derive(Clone)]
pub struct MetadataSource {
    s3: Option<aws_sdk_s3::Client>,
    location: Option<S3Location>,
    ttl: Duration,
    state: Arc<Mutex<State>>,
}

enum Fetch {
    NotModified,
    Body { text: String, etag: Option<String> },
}

impl MetadataSource {
    /// A source reading `location` through `s3`, re-checked after `ttl`.
    pub fn new(s3: aws_sdk_s3::Client, location: S3Location, ttl: Duration) -> MetadataSource {
        MetadataSource {
            s3: Some(s3),
            location: Some(location),
            ttl,
            state: Arc::new(Mutex::new(State {
                current: None,
                checked_at: None,
                status: SourceStatus::default(),
            })),
        }
    }

    /// A source without a file: every client is `unknown`.
    pub fn none() -> MetadataSource {
        MetadataSource::fixed(Metadata::empty())
    }

    /// A source that always serves `metadata` (tests, on-prem without S3).
    pub fn fixed(metadata: Metadata) -> MetadataSource {
        let entries = metadata.len();
        MetadataSource {
            s3: None,
            location: None,
            ttl: Duration::MAX,
            state: Arc::new(Mutex::new(State {
                current: Some(Arc::new(metadata)),
                checked_at: Some(Instant::now()),
                status: SourceStatus {
                    serving_entries: entries,
                    ..SourceStatus::default()
                },
            })),
        }
    }

    /// The table to use now, refreshed first if the TTL has passed.
    pub async fn current(&self) -> Result<Arc<Metadata>, MetadataError> {
        self.serve().await.map(|s| s.table)
    }

    /// The table to use now (refreshed first if the TTL has passed), and
    /// whether it is stale.
    pub async fn serve(&self) -> Result<Served, MetadataError> {
        let mut state = self.state.lock().await;
        let fresh =
            state.checked_at.is_some_and(|t| t.elapsed() < self.ttl) && state.current.is_some();
        if !fresh {
            if let (Some(s3), Some(location)) = (&self.s3, &self.location) {
                self.refresh(s3, location, &mut state).await;
            }
        }
        let stale = match (&state.status.last_error, state.status.row_errors.len()) {
            (Some(e), _) => Some(format!("the last read failed: {e}")),
            (None, 0) => None,
            (None, n) => Some(format!(
                "the file (etag {}) has {n} wrong rows",
                state.status.seen_etag.as_deref().unwrap_or("?")
            )),
        };
        match &state.current {
            Some(m) => Ok(Served {
                table: m.clone(),
                stale,
            }),
            None => Err(MetadataError {
                location: self
                    .location
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                reason: state
                    .status
                    .last_error
                    .clone()
                    .unwrap_or_else(|| "not loaded".into()),
            }),
        }
    }

    /// What the last refresh found.
    pub async fn status(&self) -> SourceStatus {
        self.state.lock().await.status.clone()
    }

    async fn refresh(&self, s3: &aws_sdk_s3::Client, location: &S3Location, state: &mut State) {
        let seen = if state.current.is_some() {
            state.status.seen_etag.clone()
        } else {
            None
        };
        let result = tokio::time::timeout(FETCH_TIMEOUT, fetch(s3, location, seen.as_deref()))
            .await
            .unwrap_or_else(|_| Err(format!("no answer from S3 within {FETCH_TIMEOUT:?}")));
        state.checked_at = Some(Instant::now());
        match result {
            Ok(Fetch::NotModified) => {
                state.status.not_modified += 1;
                state.status.last_error = None;
                tracing::debug!(metadata = %location, "metadata not modified");
            }
            Ok(Fetch::Body { text, etag }) => {
                state.status.fetches += 1;
                state.status.last_error = None;
                state.status.seen_etag = etag.clone();
                let parsed = Metadata::parse(&text);
                state.status.row_errors = parsed.errors.clone();
                if parsed.errors.is_empty() {
                    tracing::info!(
                        metadata = %location,
                        etag = etag.as_deref().unwrap_or(""),
                        entries = parsed.metadata.len(),
                        "metadata loaded"
                    );
                    state.status.serving_etag = etag;
                    state.status.serving_entries = parsed.metadata.len();
                    state.current = Some(Arc::new(parsed.metadata));
                } else {
                    let keeping = state.current.is_some();
                    for e in &parsed.errors {
                        tracing::error!(
                            metadata = %location,
                            etag = etag.as_deref().unwrap_or(""),
                            row = e.row,
                            reason = %e.reason,
                            "metadata row is wrong: {location}:{}: {}",
                            e.row,
                            e.reason
                        );
                    }
                    if keeping {
                        tracing::error!(
                            metadata = %location,
                            etag = etag.as_deref().unwrap_or(""),
                            wrong_rows = parsed.errors.len(),
                            serving_etag = state.status.serving_etag.as_deref().unwrap_or(""),
                            "metadata file has wrong rows: keeping the last good copy"
                        );
                    } else {
                        tracing::error!(
                            metadata = %location,
                            etag = etag.as_deref().unwrap_or(""),
                            wrong_rows = parsed.errors.len(),
                            valid_entries = parsed.metadata.len(),
                            "metadata file has wrong rows and there is no earlier copy: using its valid rows"
                        );
                        state.status.serving_etag = etag;
                        state.status.serving_entries = parsed.metadata.len();
                        state.current = Some(Arc::new(parsed.metadata));
                    }
                }
            }
            Err(reason) => {
                tracing::error!(
                    metadata = %location,
                    error = %reason,
                    serving_etag = state.status.serving_etag.as_deref().unwrap_or(""),
                    have_copy = state.current.is_some(),
                    "metadata could not be read: keeping the last good copy"
                );
                state.status.last_error = Some(reason);
                if state.current.is_none() {
                    // Ask again on the next batch rather than after a TTL.
                    state.checked_at = None;
                }
            }
        }
    }
}

async fn fetch(
    s3: &aws_sdk_s3::Client,
    location: &S3Location,
    etag: Option<&str>,
) -> Result<Fetch, String> {
    let mut req = s3.get_object().bucket(&location.bucket).key(&location.key);
    if let Some(etag) = etag {
        req = req.if_none_match(etag);
    }
    match req.send().await {
        Ok(out) => {
            let etag = out.e_tag().map(str::to_string);
            let bytes = out
                .body
                .collect()
                .await
                .map_err(|e| format!("reading the body: {e}"))?
                .into_bytes();
            let text = String::from_utf8(bytes.to_vec())
                .map_err(|e| format!("the file is not UTF-8: {e}"))?;
            Ok(Fetch::Body { text, etag })
        }
        Err(err) => {
            if err.raw_response().map(|r| r.status().as_u16()) == Some(304) {
                return Ok(Fetch::NotModified);
            }
            let status = err.raw_response().map(|r| r.status().as_u16());
            let code = err.code().map(str::to_string);
            let detail = aws_sdk_s3::error::DisplayErrorContext(&err).to_string();
            Err(match (code, status) {
                (Some(code), Some(status)) => format!("{code} (HTTP {status}): {detail}"),
                (None, Some(status)) => format!("HTTP {status}: {detail}"),
                _ => detail,
            })
        }
    }
}
