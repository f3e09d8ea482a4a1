//! Where the client tallies live: one S3 object per (batch, window,
//! application) under `TAILRACE_TALLIES` (`s3://bucket/prefix/`), named
//! `prefix/<window start, 10 digits>/<application>/<window secs>-<digest>-<requests>.json`.
//!
//! - The name's digest is that of the entries' keys (`WindowTally::digest`),
//!   so a retry that writes the same entries overwrites the same object.
//! - The application is percent-encoded (bytes outside `A-Za-z0-9._-`), or
//!   `~` and a hash when that would be longer than [`MAX_APPLICATION_KEY`]
//!   (S3 keys are at most 1,024 bytes; an application name may be as long).
//! - The requests in the name let the notifier rank applications and
//!   windows from the listing alone, before it reads any object (and only
//!   the objects of the application it writes about).
//! - Window starts are zero-padded, so the objects of a time range are one
//!   `ListObjectsV2` from `StartAfter = prefix/<start>/` on, in order: the
//!   notifier reads a period without knowing which batches wrote it. S3
//!   lists a new object as soon as its PUT returned (strong read-after-write
//!   consistency since December 2020): a tally written before the alarm
//!   fired is seen by the notifier, which ListMetrics cannot promise for a
//!   new metric.
//! - Objects expire by the bucket's lifecycle rule (the stack: 15 days).
//! - Writing is best effort: a tally that cannot be written is logged and
//!   counted, never a reason to fail a record whose metrics are out (the
//!   retry would publish them twice). The message then says how much of the
//!   window's total its addresses cover.

use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;

use crate::bounded::map_bounded;
use crate::config::S3Location;
use crate::publish::tally::{WindowTally, VERSION};

/// How long one object's write or read may take, retries included.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Objects written or read at once.
pub const CONCURRENCY: usize = 16;
/// At most this many objects are listed for one range, or read for one
/// application and period.
pub const MAX_OBJECTS: usize = 20_000;
/// Longest encoded application name kept readable in an object's name.
pub const MAX_APPLICATION_KEY: usize = 200;

/// A tally store call that failed.
#[derive(Debug, thiserror::Error)]
pub enum TallyError {
    /// S3 refused or did not answer.
    #[error("S3 {operation} s3://{bucket}/{key}: {message}")]
    S3 {
        /// The operation.
        operation: &'static str,
        /// The bucket.
        bucket: String,
        /// The key or prefix.
        key: String,
        /// What S3 (or the connection) said.
        message: String,
    },
    /// An object is not a tally this version reads.
    #[error("s3://{bucket}/{key} is not a client tally: {reason}")]
    Format {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// What is wrong.
        reason: String,
    },
}

/// One object as the listing names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TallyKey {
    /// The object's key.
    pub key: String,
    /// Its window's start.
    pub window_start: i64,
    /// Its application, encoded ([`encode_application`]).
    pub application: String,
    /// The application's requests in it.
    pub requests: u64,
}

/// An application's name as the object names write it.
pub fn encode_application(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.len() > MAX_APPLICATION_KEY {
        format!("~{:016x}", xxhash_rust::xxh3::xxh3_64(name.as_bytes()))
    } else {
        out
    }
}

/// The tallies read for a period.
#[derive(Debug, Default)]
pub struct PeriodTallies {
    /// The objects read.
    pub tallies: Vec<WindowTally>,
    /// Objects that could not be read, with why.
    pub errors: Vec<TallyError>,
    /// Whether more than [`MAX_OBJECTS`] objects exist for the period.
    pub truncated: bool,
}

/// The S3 prefix the tallies are written under.
#[derive(Debug, Clone)]
pub struct TallyStore {
    s3: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
}

impl TallyStore {
    /// A store at `location` (`s3://bucket/prefix`; a `/` is added to the
    /// prefix when it has none).
    pub fn new(s3: aws_sdk_s3::Client, location: &S3Location) -> TallyStore {
        let mut prefix = location.key.clone();
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        TallyStore {
            s3,
            bucket: location.bucket.clone(),
            prefix,
        }
    }

    /// `s3://bucket/prefix/`, for logs and messages.
    pub fn location(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }

    /// The object name of `tally`.
    pub fn key_of(&self, tally: &WindowTally) -> String {
        format!(
            "{}{:010}/{}/{}-{:016x}-{}.json",
            self.prefix,
            tally.window_start.max(0),
            encode_application(&tally.application),
            tally.window_secs,
            tally.digest(),
            tally.requests()
        )
    }

    /// Write `tally`.
    pub async fn put(&self, tally: &WindowTally) -> Result<(), TallyError> {
        let key = self.key_of(tally);
        let err = |message: String| TallyError::S3 {
            operation: "PutObject",
            bucket: self.bucket.clone(),
            key: key.clone(),
            message,
        };
        let body = serde_json::to_vec(tally).map_err(|e| err(e.to_string()))?;
        let call = self
            .s3
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .content_type("application/json")
            .body(ByteStream::from(body))
            .send();
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(err(aws_sdk_s3::error::DisplayErrorContext(e).to_string())),
            Err(_) => Err(err(format!("no answer within {CALL_TIMEOUT:?}"))),
        }
    }

    /// Write every tally, [`CONCURRENCY`] at a time; the errors.
    pub async fn put_all(&self, tallies: Vec<WindowTally>) -> Vec<TallyError> {
        map_bounded(CONCURRENCY, tallies, |t| {
            let store = self.clone();
            async move { store.put(&t).await.err() }
        })
        .await
        .into_iter()
        .flatten()
        .collect()
    }

    /// Every object of the windows starting in `[start, end)`, every
    /// application (tests, inspection; the notifier reads one
    /// application's at a time).
    pub async fn read_period(&self, start: i64, end: i64) -> Result<PeriodTallies, TallyError> {
        let (keys, truncated) = self.list(start, end).await?;
        let mut read = self.read(keys.into_iter().map(|k| k.key).collect()).await;
        read.truncated |= truncated;
        Ok(read)
    }

    /// Read these objects (at most [`MAX_OBJECTS`]).
    pub async fn read(&self, keys: Vec<String>) -> PeriodTallies {
        let truncated = keys.len() > MAX_OBJECTS;
        let keys: Vec<String> = keys.into_iter().take(MAX_OBJECTS).collect();
        let mut out = PeriodTallies {
            truncated,
            ..PeriodTallies::default()
        };
        for r in map_bounded(CONCURRENCY, keys, |key| {
            let store = self.clone();
            async move { store.get(&key).await }
        })
        .await
        {
            match r {
                Ok(t) => out.tallies.push(t),
                Err(e) => out.errors.push(e),
            }
        }
        out
    }

    /// The objects of the windows starting in `[start, end)`, in order, as
    /// their names describe them; the flag says the listing stopped at
    /// [`MAX_OBJECTS`].
    pub async fn list(&self, start: i64, end: i64) -> Result<(Vec<TallyKey>, bool), TallyError> {
        let err = |message: String| TallyError::S3 {
            operation: "ListObjectsV2",
            bucket: self.bucket.clone(),
            key: self.prefix.clone(),
            message,
        };
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let call = self
                .s3
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(&self.prefix)
                .start_after(format!("{}{:010}/", self.prefix, start.max(0)))
                .set_continuation_token(token.clone())
                .send();
            let page = match tokio::time::timeout(CALL_TIMEOUT, call).await {
                Ok(Ok(page)) => page,
                Ok(Err(e)) => {
                    return Err(err(aws_sdk_s3::error::DisplayErrorContext(e).to_string()))
                }
                Err(_) => return Err(err(format!("no answer within {CALL_TIMEOUT:?}"))),
            };
            for o in page.contents() {
                let Some(key) = o.key().and_then(|k| self.parse_key(k)) else {
                    continue;
                };
                if key.window_start >= end {
                    return Ok((keys, false));
                }
                if key.window_start >= start {
                    keys.push(key);
                }
                if keys.len() >= MAX_OBJECTS {
                    return Ok((keys, true));
                }
            }
            token = page.next_continuation_token().map(str::to_owned);
            if token.is_none() || page.is_truncated() != Some(true) {
                return Ok((keys, false));
            }
        }
    }

    /// What an object's name says, if it is one of ours.
    fn parse_key(&self, key: &str) -> Option<TallyKey> {
        let rest = key.strip_prefix(&self.prefix)?;
        let mut parts = rest.splitn(3, '/');
        let window_start = parts.next()?.parse().ok()?;
        let application = parts.next()?.to_owned();
        let file = parts.next()?.strip_suffix(".json")?;
        let requests = file.rsplit('-').next()?.parse().ok()?;
        Some(TallyKey {
            key: key.to_owned(),
            window_start,
            application,
            requests,
        })
    }

    async fn get(&self, key: &str) -> Result<WindowTally, TallyError> {
        let err = |message: String| TallyError::S3 {
            operation: "GetObject",
            bucket: self.bucket.clone(),
            key: key.to_owned(),
            message,
        };
        let read = async {
            let out = self
                .s3
                .get_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await
                .map_err(|e| err(aws_sdk_s3::error::DisplayErrorContext(e).to_string()))?;
            out.body
                .collect()
                .await
                .map(|b| b.into_bytes())
                .map_err(|e| err(e.to_string()))
        };
        let bytes = tokio::time::timeout(CALL_TIMEOUT, read)
            .await
            .map_err(|_| err(format!("no answer within {CALL_TIMEOUT:?}")))??;
        let format = |reason: String| TallyError::Format {
            bucket: self.bucket.clone(),
            key: key.to_owned(),
            reason,
        };
        let tally: WindowTally =
            serde_json::from_slice(&bytes).map_err(|e| format(e.to_string()))?;
        if tally.version != VERSION {
            return Err(format(format!(
                "format version {} (this aggregator reads {VERSION})",
                tally.version
            )));
        }
        Ok(tally)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_safe_bounded_and_read_back() {
        assert_eq!(encode_application("billing-v2.eu_1"), "billing-v2.eu_1");
        assert_eq!(encode_application("a/b c%"), "a%2Fb%20c%25");
        let long = encode_application(&"x".repeat(1024));
        assert!(long.starts_with('~') && long.len() == 17, "{long}");
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .build();
        let store = TallyStore::new(
            aws_sdk_s3::Client::from_conf(config),
            &S3Location {
                bucket: "b".into(),
                key: "tallies".into(),
            },
        );
        let tally = WindowTally {
            version: VERSION,
            window_start: 1_796_109_000,
            window_secs: 300,
            application: "a/b".into(),
            entries: Vec::new(),
        };
        let key = store.key_of(&tally);
        assert!(key.starts_with("tallies/1796109000/a%2Fb/300-"), "{key}");
        let parsed = store.parse_key(&key).expect("ours");
        assert_eq!(parsed.window_start, 1_796_109_000);
        assert_eq!(parsed.application, "a%2Fb");
        assert_eq!(parsed.requests, 0);
        assert_eq!(store.parse_key("elsewhere/x.json"), None);
    }
}
