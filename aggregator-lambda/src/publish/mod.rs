//! Publishing merged windows as CloudWatch metrics.
//!
//! What is published is set by the metric model ([`model`]): the dimension
//! sets `[Service, SourceApplication]` (per window, service, application),
//! `[SourceApplication]` (the rollup over services) and `[Service]` (each
//! application's share of a service; CloudWatch adds them up), and among the
//! metrics `Requests` (Count), `Bytes` (Bytes), `ClientErrors` (Count, 4xx),
//! `ServerErrors` (Count, 5xx) as single values, and, when latency is known,
//! `Latency` (Microseconds) as a distribution (`Values`/`Counts`, one entry
//! per histogram bucket, split over several datums of at most 150 entries)
//! so CloudWatch percentiles work. The default model is the first two sets
//! and all five metrics. Every datum is timestamped at its window start with
//! StorageResolution 60.
//!
//! [`model`] says what is published (`TAILRACE_DIMENSIONS`,
//! `TAILRACE_METRICS`); [`plan`] is pure (which datums, grouped in
//! units), [`packing`] packs them into calls and splits a refused one (pure
//! too), and [`calls`] makes the PutMetricData calls with their retries, deadlines and bisection;
//! [`tally`] writes each published unit's client tallies (the notifier's
//! top addresses).

pub mod calls;
pub mod model;
pub mod packing;
pub mod plan;
pub mod tally;
