//! The metadata file in S3: read with its ETag, written only if nobody wrote
//! it since (`If-Match: <etag>`, or `If-None-Match: *` for a new file).
//! S3 answers `412 PreconditionFailed` when another updater won the race
//! (or `409 ConditionalRequestConflict` while a competing write is in
//! flight); the caller reads again and retries after [`Backoff`].
//!
//! Without `s3:ListBucket` on the bucket, S3 answers a GetObject of a
//! missing key with `403 AccessDenied`, not `404 NoSuchKey` (it will not
//! tell who may not list whether a key exists). The stack grants the
//! updater no ListBucket, so [`read`] takes a 403 for "maybe missing"
//! ([`Current::denied`]); the write that follows, `If-None-Match: *`, tells:
//! it succeeds on a missing file, and answers 412 on one that exists (then
//! the role may not read it: [`crate::sync`] reports that).

use std::time::Duration;

use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use rand::Rng;

/// Where the file is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// Bucket.
    pub bucket: String,
    /// Key.
    pub key: String,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// The file as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Current {
    /// Its text; `None` when there is no object yet.
    pub text: Option<String>,
    /// Its ETag (`None` with no object).
    pub etag: Option<String>,
    /// S3 refused the read with 403 (its error): the file is missing and
    /// the role may not list the bucket, or the role may not read it.
    pub denied: Option<String>,
}

/// Reading or writing the file failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// GetObject failed.
    #[error("reading {location}: {reason}")]
    Read {
        /// The file.
        location: Location,
        /// The SDK's error.
        reason: String,
    },
    /// The object is not UTF-8 text.
    #[error("{location} is not UTF-8 text ({reason}); fix or replace it, it is left as it is")]
    NotText {
        /// The file.
        location: Location,
        /// The decoder's error.
        reason: String,
    },
    /// PutObject failed for another reason than a lost race.
    #[error("writing {location}: {reason}")]
    Write {
        /// The file.
        location: Location,
        /// The SDK's error.
        reason: String,
    },
}

/// The outcome of a conditional write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// The write won; the new ETag.
    Won(Option<String>),
    /// Somebody else wrote (or deleted) first (412, 409, or 404 on
    /// `If-Match`): read again.
    Lost,
}

/// Read the file with its ETag.
pub async fn read(s3: &aws_sdk_s3::Client, at: &Location) -> Result<Current, StoreError> {
    let resp = s3.get_object().bucket(&at.bucket).key(&at.key).send().await;
    let out = match resp {
        Ok(o) => o,
        Err(SdkError::ServiceError(e)) if e.err().is_no_such_key() => {
            return Ok(Current {
                text: None,
                etag: None,
                denied: None,
            })
        }
        Err(SdkError::ServiceError(e)) if e.raw().status().as_u16() == 403 => {
            let reason = DisplayErrorContext(SdkError::ServiceError(e)).to_string();
            return Ok(Current {
                text: None,
                etag: None,
                denied: Some(reason),
            });
        }
        Err(e) => {
            return Err(StoreError::Read {
                location: at.clone(),
                reason: DisplayErrorContext(e).to_string(),
            })
        }
    };
    let etag = out.e_tag().map(str::to_string);
    let bytes = out
        .body
        .collect()
        .await
        .map_err(|e| StoreError::Read {
            location: at.clone(),
            reason: e.to_string(),
        })?
        .into_bytes();
    let text = String::from_utf8(bytes.to_vec()).map_err(|e| StoreError::NotText {
        location: at.clone(),
        reason: e.to_string(),
    })?;
    Ok(Current {
        text: Some(text),
        etag,
        denied: None,
    })
}

/// Write `text` only if the object is still the one read (`etag`), or still
/// absent (`etag` = `None`).
pub async fn write_if_unchanged(
    s3: &aws_sdk_s3::Client,
    at: &Location,
    etag: Option<&str>,
    text: &str,
) -> Result<Written, StoreError> {
    let mut req = s3
        .put_object()
        .bucket(&at.bucket)
        .key(&at.key)
        .content_type("text/csv; charset=utf-8")
        .body(ByteStream::from(text.as_bytes().to_vec()));
    req = match etag {
        Some(tag) => req.if_match(tag),
        None => req.if_none_match("*"),
    };
    match req.send().await {
        Ok(o) => Ok(Written::Won(o.e_tag().map(str::to_string))),
        // 412: changed since read; 409: a competing write in flight; 404
        // with an ETag: deleted since read (S3 answers `If-Match` on a
        // missing key with NoSuchKey). Each time: read again.
        Err(SdkError::ServiceError(e))
            if matches!(e.raw().status().as_u16(), 409 | 412)
                || (etag.is_some() && e.raw().status().as_u16() == 404) =>
        {
            Ok(Written::Lost)
        }
        Err(e) => Err(StoreError::Write {
            location: at.clone(),
            reason: DisplayErrorContext(e).to_string(),
        }),
    }
}

/// Exponential backoff with full jitter: attempt `n` waits a random time in
/// `[0, min(cap, base·2ⁿ)]` (AWS's "full jitter"), so racing updaters spread
/// out instead of colliding again in step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// First step.
    pub base: Duration,
    /// Largest wait.
    pub cap: Duration,
    /// Attempts before giving up.
    pub max_attempts: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(50),
            cap: Duration::from_secs(2),
            max_attempts: 60,
        }
    }
}

impl Backoff {
    /// The wait before attempt `attempt` (1-based: the first retry is 1).
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32 << attempt.min(20))
            .min(self.cap);
        let ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::rng().random_range(0..=ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_under_its_ceiling() {
        let b = Backoff::default();
        for attempt in 0..40 {
            let ceiling = b.base.saturating_mul(1u32 << attempt.min(20)).min(b.cap);
            for _ in 0..50 {
                assert!(b.delay(attempt) <= ceiling);
            }
        }
        assert_eq!(
            Backoff {
                base: Duration::ZERO,
                ..b
            }
            .delay(3),
            Duration::ZERO
        );
    }
}
