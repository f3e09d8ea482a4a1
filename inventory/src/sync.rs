//! One update of the file: read it with its ETag, plan against what EC2 said,
//! write it conditionally; on a lost race read again (the other writer's rows
//! are in the new copy, so nothing is lost) after a jittered backoff.

use std::time::{Duration, SystemTime};

use crate::plan::{self, Diff, Observation, PlanError, Validator};
use crate::store::{self, Backoff, Location, StoreError, Written};

/// How to update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Termination grace.
    pub grace: Duration,
    /// Plan and report, never write.
    pub dry_run: bool,
    /// Waits between lost races.
    pub backoff: Backoff,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            grace: plan::DEFAULT_GRACE,
            dry_run: false,
            backoff: Backoff::default(),
        }
    }
}

/// What an update did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The diff of the attempt that counted.
    pub diff: Diff,
    /// True when the file was written.
    pub written: bool,
    /// Writes that lost a race (412/409) before this one.
    pub lost_races: u32,
    /// The file as it is now (or would be, on a dry run).
    pub text: String,
}

/// The update did not happen.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// S3 failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The current file must be fixed by a person; it was left as it is.
    #[error("{location}: {source}")]
    Plan {
        /// The file.
        location: Location,
        /// Why.
        source: PlanError,
    },
    /// Every attempt lost its race.
    #[error(
        "{location}: gave up after {attempts} writes that all lost a race with other updaters"
    )]
    GaveUp {
        /// The file.
        location: Location,
        /// Attempts made.
        attempts: u32,
    },
}

/// Apply `obs` to the file at `at`.
pub async fn apply(
    s3: &aws_sdk_s3::Client,
    at: &Location,
    obs: &Observation,
    opts: &Options,
    validate: Validator<'_>,
) -> Result<Outcome, SyncError> {
    let mut lost_races = 0;
    loop {
        let current = store::read(s3, at).await?;
        let plan = plan::plan(
            current.text.as_deref(),
            obs,
            SystemTime::now(),
            opts.grace,
            validate,
        )
        .map_err(|source| SyncError::Plan {
            location: at.clone(),
            source,
        })?;
        if !plan.write || opts.dry_run {
            return Ok(Outcome {
                diff: plan.diff,
                written: false,
                lost_races,
                text: plan.text,
            });
        }
        match store::write_if_unchanged(s3, at, current.etag.as_deref(), &plan.text).await? {
            Written::Won(_) => {
                return Ok(Outcome {
                    diff: plan.diff,
                    written: true,
                    lost_races,
                    text: plan.text,
                })
            }
            // A 403 read, then a refused If-None-Match: * write: the file
            // exists and this role may not read it (or another writer
            // created it meanwhile: the updater runs one at a time).
            Written::Lost if current.denied.is_some() => {
                return Err(SyncError::Store(StoreError::Read {
                    location: at.clone(),
                    reason: format!(
                        "{} (the file exists: a write with If-None-Match: * was refused; the role needs s3:GetObject on it)",
                        current.denied.unwrap_or_default()
                    ),
                }));
            }
            Written::Lost => {
                lost_races += 1;
                if lost_races >= opts.backoff.max_attempts {
                    return Err(SyncError::GaveUp {
                        location: at.clone(),
                        attempts: lost_races,
                    });
                }
                tracing::debug!(%at, lost_races, "another updater wrote the file first; reading it again");
                tokio::time::sleep(opts.backoff.delay(lost_races)).await;
            }
        }
    }
}
