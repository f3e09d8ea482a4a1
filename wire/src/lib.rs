//! The bytes tailrace puts on a Kinesis stream, shared by the agent (writer) and the
//! aggregator (reader).
//!
//! # The problem
//!
//! Every host tails its Apache access logs. Shipping every line costs a Kinesis record slot
//! (1,000 per shard and second) and makes the aggregator parse every line again, so the agent
//! pre-aggregates: per flow and event-time window (5 minutes by default) it counts requests,
//! bytes, status classes and latencies per client address, and ships that *partial aggregate*.
//! The aggregator merges the partials of all hosts (and late partials of the same host) into
//! fleet-wide numbers. For that, everything in a partial must merge exactly — sums, counts and
//! a latency histogram with fixed logarithmic buckets, so percentiles of the merge are as good
//! as percentiles of the union.
//!
//! A stream also carries records from other producers: raw log lines (tailrace `mode: raw`, the
//! Kinesis Agent), the Kinesis Agent's JSON, and KPL aggregated records. [`classify`] tells them
//! apart by their first bytes.
//!
//! # The pieces
//!
//! - [`ClientKey`]: who sent requests (an IP, stored compactly, or a name).
//! - [`LatencyHistogram`], [`ClientStats`]: the mergeable statistics.
//! - [`Partial`]: one partial aggregate; [`Partial::encode_split`] / [`Partial::decode`] are the
//!   versioned wire format (`\0TRP`, version byte, protobuf), documented in `docs/wire-format.md`.
//! - [`classify`], [`raw`], [`kpl`]: the other record kinds.
//! - [`dimension`]: the rule CloudWatch applies to dimension values, checked and repaired in one
//!   place for every name that becomes one.
//! - `fuzzing` (hidden): the fuzz targets' bodies, shared with their regression test.
//!
//! Pure: no I/O, no AWS types.
//!
//! # Example
//!
//! ```
//! use tailrace_wire::{classify, ClientKey, ClientStats, Partial, RecordKind, MAX_RECORD_BYTES};
//!
//! // Agent: count lines per client, then encode the window (split if large).
//! let mut stats = ClientStats::default();
//! stats.record(Some(200), 512, Some(1_250));
//! let partial = Partial {
//!     host_id: "i-0abc".into(),
//!     service: "checkout".into(),
//!     flow: "access".into(),
//!     window_start: 1_700_000_100,
//!     window_secs: 300,
//!     groups: vec![(ClientKey::from_text(b"10.0.0.1"), stats)],
//!     ..Partial::default()
//! };
//! let mut next_sequence = 1;
//! let records = partial.encode_split(MAX_RECORD_BYTES - 64, &mut next_sequence);
//!
//! // Aggregator: classify, decode, merge.
//! assert_eq!(classify(&records[0]), RecordKind::Partial);
//! let decoded = Partial::decode(&records[0]).expect("valid record");
//! assert_eq!(decoded.total().requests, 1);
//! assert_eq!(decoded.groups[0].0.to_string(), "10.0.0.1");
//! ```

mod classify;
mod client;
pub mod dimension;
#[doc(hidden)]
pub mod fuzzing;
mod histogram;
pub mod kpl;
mod partial;
mod proto;
pub mod raw;
mod stats;

pub use classify::{classify, RecordKind};
pub use client::{ClientKey, MAX_NAME_BYTES};
pub use histogram::{bucket_index, bucket_value, LatencyHistogram, GAMMA, MAX_BUCKET_INDEX};
pub use partial::{
    DecodeError, Partial, ENVELOPE_BYTES, MAX_LABEL_BYTES, MAX_RECORD_BYTES, MAX_REJECT_SAMPLES,
    MAX_REJECT_SAMPLE_BYTES, MAX_WINDOW_SECS, PARTIAL_MAGIC, PARTIAL_VERSION,
};
pub use stats::{status_class, ClientStats};
