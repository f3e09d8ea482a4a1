//! Packing: lines into Kinesis records.
//!
//! In raw mode [`packer`] appends lines, as written, to records; in aggregate
//! mode [`aggregate`] parses them into event-time windows per client (whose
//! address [`client_addr`] picks, through trusted proxies) and encodes each
//! closed window as partials, each record with a partition key from
//! [`keys`]. Either way the records go into the shipper's bounded queue
//! (`crate::ship::queue`).

pub mod aggregate;
pub mod client_addr;
pub mod keys;
pub mod packer;
