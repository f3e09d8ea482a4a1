//! tailrace agent: tail Apache access logs, parse them with their own
//! `LogFormat`, pre-aggregate them on the host into event-time windows (or
//! pack raw lines), and ship them to a Kinesis Data Stream, checkpointing
//! file offsets only after Kinesis acknowledged what came before them.
//!
//! # Layout
//!
//! The folders follow the data path, one layer each (see
//! `docs/ARCHITECTURE.md`):
//!
//! - [`read`]: which files a flow follows, through rotation, and the lines
//!   out of each one (tailer → watcher).
//! - [`pack`]: lines into records: raw ([`pack::packer`]) or event-time
//!   windows ([`pack::aggregate`]), then the bounded queue ([`pack::record`]).
//! - [`ship`]: records into PutRecords calls ([`ship::shipper`]) and what
//!   Kinesis has acknowledged ([`ship::ledger`]).
//! - [`state`]: the state directory: the lock, the checkpoint and the status
//!   file, written through one atomic-write helper.
//! - [`observe`]: counters, the metric set, health, the status file's
//!   content, CloudWatch self-metrics, the HTTP endpoint, systemd's watchdog.
//! - [`config`]: the YAML configuration: types, units, loading, validation.
//! - [`commands`]: the command line and the commands other than `run`.
//!
//! [`runtime`] wires the layers together for `tailrace run` and `replay`;
//! [`reload`] decides what a SIGHUP changes; [`limits`] raises the
//! descriptor limit.

pub mod commands;
pub mod config;
pub mod limits;
pub mod observe;
pub mod pack;
pub mod read;
pub mod reload;
pub mod runtime;
pub mod ship;
pub mod state;
