//! Shipping: records into PutRecords calls ([`shipper`]), and the account of
//! which byte offsets Kinesis has acknowledged everything before
//! ([`ledger`]), which is what the checkpoint may record.

pub mod ledger;
pub mod shipper;
