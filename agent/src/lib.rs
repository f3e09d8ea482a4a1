//! tailrace agent: tail Apache access logs, parse them with their own
//! `LogFormat`, pre-aggregate them on the host into event-time windows (or
//! pack raw lines), and ship them to a Kinesis Data Stream, checkpointing
//! file offsets only after Kinesis acknowledged what came before them.
//!
//! The data path, one module per step (see `docs/ARCHITECTURE.md`):
//! [`tailer`] (which files, through rotation; [`compressed`] for compressed
//! rotations (gzip, xz, zstd, bzip2) holding unsent lines) → [`watcher`] (lines out of one
//! file) → [`packer`] (raw) or [`aggregate`] (windows) → [`record`] (bounded
//! queue) → [`shipper`] (PutRecords, retries) → [`ledger`] (what is
//! acknowledged) → [`checkpoint`] (what is durable). [`runtime`] wires them.
//!
//! Watching it run: [`monitor`] (health, status file), [`metrics`] (the
//! metric set), [`selfmetrics`] (CloudWatch), [`endpoint`] (HTTP), [`reload`]
//! (SIGHUP), [`ratelog`] (repeating errors).

pub mod aggregate;
pub mod checkpoint;
pub mod checkpointer;
pub mod cli;
pub mod client_addr;
pub mod compressed;
pub mod config;
pub mod config_tree;
pub mod decision;
pub mod endpoint;
pub mod globs;
pub mod identity;
pub mod import_kinesis_agent;
pub mod ledger;
pub mod limits;
pub mod manpage;
pub mod metrics;
pub mod monitor;
pub mod packer;
pub mod progress;
pub mod ratelog;
pub mod record;
pub mod reload;
pub mod runtime;
pub mod seen;
pub mod selfmetrics;
pub mod shipper;
pub mod stats;
pub mod status;
pub mod tailer;
pub mod watchdog;
pub mod watcher;
