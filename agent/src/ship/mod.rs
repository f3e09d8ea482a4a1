//! Shipping: the bounded queue of records the packers fill ([`queue`]),
//! drained into PutRecords calls ([`shipper`]). What Kinesis has
//! acknowledged is written into the ledger (`crate::shared::ledger`), which is
//! what the checkpoint may record.

pub mod queue;
pub mod shipper;
