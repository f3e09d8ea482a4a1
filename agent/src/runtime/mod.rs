//! Wiring: config → readers, shippers, checkpointer; and the shutdown path.
//!
//! `run` starts, per flow, a reader thread (tailer + sink) and a shipper task,
//! plus, for the agent, one checkpointer task, the monitor (health, status
//! file), and when configured the CloudWatch self-metrics publisher and the
//! HTTP endpoint. SIGHUP reloads the config: flows added start, flows removed
//! stop the way SIGTERM stops them (their positions are kept as retired,
//! for a flow that reads the same files later: `flow_tailer`), flows
//! changed stop that way and start again from where they stood, others
//! are untouched (see [`crate::reload`]).
//! SIGTERM/SIGINT: the readers stop
//! reading and flush what they buffered, the shippers drain their queues until
//! every record is acknowledged, and the checkpoint is written a last time —
//! all bounded by `shutdown_timeout`. If time runs out, the checkpoint written
//! still only covers acknowledged lines, so nothing is lost; the rest is read
//! again on the next start.
//!
//! `replay` runs the same readers and shippers over a fixed list of files
//! once, without touching checkpoints.
//!
//! # Layout
//!
//! - [`flows`]: one flow's pieces (sink, tailer, shipper task), started
//!   alike by `run`, `replay` and `check --live`; what the checkpoint gives
//!   back to the ledger at a start; what the checkpointer saves.
//! - [`daemon`]: `tailrace run`: the flows running now, SIGHUP, SIGTERM.
//! - [`replay`]: `tailrace replay`, with its progress bar ([`progress`]).
//! - [`aws`]: the SDK config, the Kinesis client, the host id.

pub mod aws;
pub mod daemon;
pub mod flows;
pub mod progress;
pub mod replay;
