//! Packing: lines into Kinesis records.
//!
//! In raw mode [`packer`] appends lines, as written, to records; in aggregate
//! mode [`aggregate`] parses them into event-time windows per client (whose
//! address [`client_addr`] picks, through trusted proxies) and encodes each
//! closed window as partials. Either way the records go into the bounded
//! queue of [`record`], which carries them to the shipper.

pub mod aggregate;
pub mod client_addr;
pub mod packer;
pub mod record;
