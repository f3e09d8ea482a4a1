//! Ingest: what comes off the stream, as partials the later stages can trust.
//!
//! [`decode`] turns a record (a tailrace partial, raw lines, Kinesis Agent
//! JSON, a KPL aggregate) into per-window partials, or says why it is
//! poison; [`batch`] decodes a whole batch and admits each partial (once per
//! batch and process); [`idempotency`] is the DynamoDB claim table that
//! admits a partial once across Lambda environments and replays.

pub mod batch;
pub mod decode;
pub mod idempotency;
