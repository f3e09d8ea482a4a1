//! tailrace inventory updater: keeps the metadata file in S3 (client address
//! → application, contact) current from EC2 instance tags and Auto Scaling
//! groups, so the aggregator's join follows a fleet that scales.
//!
//! - [`owner`]: which application and contact an instance belongs to (tags,
//!   then its Auto Scaling group's tags, then the group's name);
//! - [`section`]: the updater's own section of the file, between two comment
//!   markers, and the hand-written rows around it;
//! - [`plan`]: the pure core: current file + what EC2 says + the clock →
//!   the new file and its diff (termination grace, address reuse, conflicts);
//! - [`ec2`]: DescribeInstances / DescribeAutoScalingGroups → instances;
//! - [`store`]: the file in S3, read with its ETag and written with
//!   `If-Match` / `If-None-Match: *`, retried on `412` with backoff and jitter;
//! - [`sync`]: read, plan, write, until the write wins;
//! - [`event`]: EventBridge events (Auto Scaling, EC2 state changes) → what
//!   to look up;
//! - [`lambda`]: the event-driven and scheduled Lambda handler.
//!
//! Without the default feature `aws` only the pure modules are built.
//!
//! The file's syntax is judged by the aggregator's own parser, passed in as a
//! [`plan::Validator`]: Cargo forbids the dependency cycle that importing it
//! here would make (the aggregator's CLI calls into this crate).

#[cfg(feature = "aws")]
pub mod ec2;
pub mod event;
#[cfg(feature = "aws")]
pub mod lambda;
pub mod owner;
pub mod plan;
pub mod section;
#[cfg(feature = "aws")]
pub mod store;
#[cfg(feature = "aws")]
pub mod sync;
