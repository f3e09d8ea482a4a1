//! tailrace agent: tail Apache access logs, parse them with their own
//! `LogFormat`, pre-aggregate them on the host into event-time windows (or
//! pack raw lines), and ship them to a Kinesis Data Stream, checkpointing
//! file offsets only after Kinesis acknowledged what came before them.
//!
//! # Layout
//!
//! The folders are floors (see `docs/ARCHITECTURE.md`): a module names
//! modules of its own floor and of the floors below it, never one above
//! (`scripts/module_cycles.py`, run by `make lint`, refuses one that does).
//! Bottom first:
//!
//! - [`shared`]: the ground floor: the types every layer shares (the
//!   ledger, file identity, the line sink, counters, the rate-limited log).
//! - [`config`]: the YAML configuration: types, units, loading, validation.
//! - [`state`]: the state directory: the lock, the checkpoint and the status
//!   file, written through one atomic-write helper.
//! - [`ship`]: the bounded record queue ([`ship::queue`]) drained into
//!   PutRecords calls ([`ship::shipper`]), whose acknowledgements go into
//!   the ledger.
//! - [`pack`]: lines into records: raw ([`pack::packer`]) or event-time
//!   windows ([`pack::aggregate`]), into the shipper's queue.
//! - [`read`]: which files a flow follows, through rotation, and the lines
//!   out of each one (tailer → watcher → a [`shared::sink::LineSink`]).
//! - [`observe`]: the metric set, health, the status file's content,
//!   CloudWatch self-metrics, the HTTP endpoint, systemd's watchdog.
//! - [`limits`] raises the descriptor limit; [`reload`] decides what a
//!   SIGHUP changes.
//! - [`runtime`] wires the layers together for `tailrace run` and `replay`.
//! - [`commands`]: the command line and the commands other than `run`.
//!
//! The data path runs down the floors: `read` hands lines to a sink that
//! `pack` implements, `pack` fills `ship`'s queue, `ship` releases holds in
//! the ledger that `state` saves.

pub mod commands;
pub mod config;
pub mod limits;
pub mod observe;
pub mod pack;
pub mod read;
pub mod reload;
pub mod runtime;
pub mod shared;
pub mod ship;
pub mod state;
