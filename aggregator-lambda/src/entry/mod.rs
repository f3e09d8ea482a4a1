//! Entry points: what drives a batch through the stages, and the ways
//! records and commands come in.
//!
//! [`handler`] is one batch: ingest → join → publish, with the claims and
//! the tallies; [`lambda`] is the Lambda runtime's events (Kinesis records
//! and SNS alarm notifications, binary `bootstrap`); [`consume`] reads a
//! stream locally (`tailrace-aggregator consume`); [`replay`] re-publishes
//! what the Lambda gave up on; [`inventory`] is the glue of the inventory
//! updater (`inventory sync`, binary `inventory-bootstrap`; feature
//! `inventory`).

pub mod consume;
pub mod handler;
#[cfg(feature = "inventory")]
pub mod inventory;
pub mod lambda;
pub mod replay;
