//! Watching the agent run.
//!
//! - [`metric_set`]: the one table of the agent's own metrics, their names,
//!   kinds and units, read by both publishers below.
//! - [`registry`]: the running flows, their files' positions, health, and the
//!   sampler that refreshes them and writes the status file.
//! - [`cloudwatch`]: publishing the metric set to CloudWatch.
//! - [`http`]: `GET /metrics` (Prometheus) and `GET /health`.
//! - [`watchdog`]: systemd readiness and watchdog pings.

pub mod cloudwatch;
pub mod http;
pub mod metric_set;
pub mod registry;
pub mod watchdog;
