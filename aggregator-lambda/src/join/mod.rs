//! Join: who the clients are, and windows merged by who they are.
//!
//! [`metadata`] parses the IP → application CSV (plain std: the fuzz target
//! builds it without the AWS SDK); [`metadata_source`] serves it from S3,
//! cached, with conditional re-reads and the last good copy kept; [`merge`]
//! merges partials per (window, service, application), remembering what was
//! published; [`batch`] joins and merges one admitted batch.

#[cfg(feature = "aws")]
pub mod batch;
#[cfg(feature = "aws")]
pub mod merge;
pub mod metadata;
#[cfg(feature = "aws")]
pub mod metadata_source;
