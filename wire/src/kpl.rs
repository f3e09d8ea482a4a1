//! The KPL aggregated-record codec (Kinesis Producer Library "aggregation").
//!
//! Layout: `F3 89 9A C2` (magic), a protobuf `AggregatedRecord`, then the 16-byte MD5 of the
//! protobuf bytes.
//!
//! ```text
//! message AggregatedRecord {                       // proto2
//!   repeated string partition_key_table     = 1;
//!   repeated string explicit_hash_key_table = 2;
//!   repeated Record records                 = 3;
//! }
//! message Record {
//!   required uint64 partition_key_index     = 1;
//!   optional uint64 explicit_hash_key_index = 2;
//!   required bytes  data                    = 3;
//!   repeated Tag    tags                    = 4;
//! }
//! message Tag { required string key = 1; optional string value = 2; }
//! ```
//!
//! Lambda does not de-aggregate these by itself; the aggregator does with [`deaggregate`].

use md5::{Digest, Md5};
use prost::Message;

/// The first four bytes of a KPL aggregated record.
pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];
/// Length of the MD5 digest at the end.
pub const DIGEST_BYTES: usize = 16;

/// One user record inside a KPL aggregated record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KplRecord {
    /// The record's own partition key.
    pub partition_key: String,
    /// The record's explicit hash key, if it had one.
    pub explicit_hash_key: Option<String>,
    /// The record's data.
    pub data: Vec<u8>,
}

/// Why a KPL aggregated record could not be de-aggregated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KplError {
    /// The data does not start with [`MAGIC`].
    #[error("not a KPL aggregated record (bad magic)")]
    BadMagic,
    /// Shorter than magic plus digest.
    #[error("KPL aggregated record truncated: {0} bytes, at least {min} needed", min = MAGIC.len() + DIGEST_BYTES)]
    Truncated(usize),
    /// The MD5 at the end does not match the protobuf bytes.
    #[error(
        "KPL aggregated record checksum mismatch (MD5 of the protobuf differs from the trailer)"
    )]
    BadChecksum,
    /// The protobuf does not decode.
    #[error("KPL aggregated record protobuf is invalid: {0}")]
    Protobuf(String),
    /// A record points past the end of the partition key table.
    #[error(
        "KPL record {record}: partition_key_index {index} out of range (table has {table_len})"
    )]
    PartitionKeyIndex {
        /// Position of the record.
        record: usize,
        /// The index it holds.
        index: u64,
        /// Length of the table.
        table_len: usize,
    },
    /// A record points past the end of the explicit hash key table.
    #[error(
        "KPL record {record}: explicit_hash_key_index {index} out of range (table has {table_len})"
    )]
    ExplicitHashKeyIndex {
        /// Position of the record.
        record: usize,
        /// The index it holds.
        index: u64,
        /// Length of the table.
        table_len: usize,
    },
}

#[derive(Clone, PartialEq, prost::Message)]
struct AggregatedRecord {
    #[prost(string, repeated, tag = "1")]
    partition_key_table: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    explicit_hash_key_table: Vec<String>,
    #[prost(message, repeated, tag = "3")]
    records: Vec<Record>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Record {
    #[prost(uint64, required, tag = "1")]
    partition_key_index: u64,
    #[prost(uint64, optional, tag = "2")]
    explicit_hash_key_index: Option<u64>,
    #[prost(bytes = "vec", required, tag = "3")]
    data: Vec<u8>,
    #[prost(message, repeated, tag = "4")]
    tags: Vec<Tag>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Tag {
    #[prost(string, required, tag = "1")]
    key: String,
    #[prost(string, optional, tag = "2")]
    value: Option<String>,
}

/// Whether `data` looks like a KPL aggregated record: the magic and room for the digest.
/// [`deaggregate`] checks the rest.
pub fn is_aggregated(data: &[u8]) -> bool {
    data.len() >= MAGIC.len() + DIGEST_BYTES && data.starts_with(&MAGIC)
}

/// Splits a KPL aggregated record into its user records, checking the magic, the MD5, the
/// protobuf and every table index.
pub fn deaggregate(data: &[u8]) -> Result<Vec<KplRecord>, KplError> {
    let n = data.len().min(MAGIC.len());
    if data[..n] != MAGIC[..n] {
        return Err(KplError::BadMagic);
    }
    if data.len() < MAGIC.len() + DIGEST_BYTES {
        return Err(KplError::Truncated(data.len()));
    }
    let (body, digest) = data[MAGIC.len()..].split_at(data.len() - MAGIC.len() - DIGEST_BYTES);
    if Md5::digest(body).as_slice() != digest {
        return Err(KplError::BadChecksum);
    }
    let aggregated =
        AggregatedRecord::decode(body).map_err(|e| KplError::Protobuf(e.to_string()))?;
    let pk_table = &aggregated.partition_key_table;
    let ehk_table = &aggregated.explicit_hash_key_table;
    let mut out = Vec::with_capacity(aggregated.records.len());
    for (i, record) in aggregated.records.into_iter().enumerate() {
        let partition_key = usize::try_from(record.partition_key_index)
            .ok()
            .and_then(|idx| pk_table.get(idx))
            .ok_or(KplError::PartitionKeyIndex {
                record: i,
                index: record.partition_key_index,
                table_len: pk_table.len(),
            })?
            .clone();
        let explicit_hash_key = match record.explicit_hash_key_index {
            None => None,
            Some(index) => Some(
                usize::try_from(index)
                    .ok()
                    .and_then(|idx| ehk_table.get(idx))
                    .ok_or(KplError::ExplicitHashKeyIndex {
                        record: i,
                        index,
                        table_len: ehk_table.len(),
                    })?
                    .clone(),
            ),
        };
        out.push(KplRecord {
            partition_key,
            explicit_hash_key,
            data: record.data,
        });
    }
    Ok(out)
}

/// Builds a KPL aggregated record from `records` (the producer side: tests, tools).
///
/// Keys are stored once each in the tables, in order of first use. No size limit is applied.
pub fn aggregate(records: &[KplRecord]) -> Vec<u8> {
    let mut aggregated = AggregatedRecord::default();
    let mut out_records = Vec::with_capacity(records.len());
    for record in records {
        let partition_key_index =
            table_index(&mut aggregated.partition_key_table, &record.partition_key);
        let explicit_hash_key_index = record
            .explicit_hash_key
            .as_ref()
            .map(|k| table_index(&mut aggregated.explicit_hash_key_table, k));
        out_records.push(Record {
            partition_key_index,
            explicit_hash_key_index,
            data: record.data.clone(),
            tags: Vec::new(),
        });
    }
    aggregated.records = out_records;
    let body = aggregated.encode_to_vec();
    let mut out = Vec::with_capacity(MAGIC.len() + body.len() + DIGEST_BYTES);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&body);
    out.extend_from_slice(Md5::digest(&body).as_slice());
    out
}

fn table_index(table: &mut Vec<String>, key: &str) -> u64 {
    let pos = match table.iter().position(|k| k == key) {
        Some(pos) => pos,
        None => {
            table.push(key.to_owned());
            table.len() - 1
        }
    };
    pos as u64
}
