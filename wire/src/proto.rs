//! The protobuf messages of partial-aggregate format version 1 (hand-written prost structs).
//!
//! `docs/wire-format.md` shows the same messages as `.proto` text. Field numbers are stable:
//! never renumber or reuse one; add fields with new numbers (old readers skip them).

/// `Partial` (format version 1).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct PartialV1 {
    #[prost(string, tag = "1")]
    pub host_id: String,
    #[prost(string, tag = "2")]
    pub service: String,
    #[prost(string, tag = "3")]
    pub flow: String,
    #[prost(int64, tag = "4")]
    pub window_start: i64,
    #[prost(uint32, tag = "5")]
    pub window_secs: u32,
    #[prost(uint64, tag = "6")]
    pub sequence: u64,
    #[prost(bool, tag = "7")]
    pub late: bool,
    #[prost(message, repeated, tag = "8")]
    pub groups: Vec<GroupV1>,
    #[prost(message, optional, tag = "9")]
    pub overflow: Option<StatsV1>,
    #[prost(uint64, tag = "10")]
    pub overflow_clients: u64,
    #[prost(uint64, tag = "11")]
    pub rejected_lines: u64,
    #[prost(string, repeated, tag = "12")]
    pub reject_samples: Vec<String>,
}

/// The key byte of `Partial.groups` (field 8, wire type 2): groups are appended to an encoded
/// header as `0x42 <length varint> <Group>`.
pub(crate) const GROUPS_KEY: u8 = (8 << 3) | 2;

/// `Group`: one client and its statistics.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct GroupV1 {
    /// 4 or 16 bytes, network order; empty when the client is a name.
    #[prost(bytes = "vec", tag = "1")]
    pub ip: Vec<u8>,
    /// The client name when `ip` is empty.
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(message, optional, tag = "3")]
    pub stats: Option<StatsV1>,
}

/// `Stats`: `ClientStats`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct StatsV1 {
    #[prost(uint64, tag = "1")]
    pub requests: u64,
    #[prost(uint64, tag = "2")]
    pub bytes: u64,
    /// Up to 6 entries (unknown, 1xx..5xx); missing trailing entries are 0.
    #[prost(uint64, repeated, packed = "true", tag = "3")]
    pub status_classes: Vec<u64>,
    #[prost(message, optional, tag = "4")]
    pub latency: Option<HistogramV1>,
}

/// `Histogram`: `LatencyHistogram`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct HistogramV1 {
    #[prost(uint64, tag = "1")]
    pub zero_count: u64,
    /// Bucket indexes, delta-encoded: the first is the index, each next one the difference to
    /// the previous index (so ≥ 1).
    #[prost(sint32, repeated, packed = "true", tag = "2")]
    pub index_deltas: Vec<i32>,
    /// Count per bucket, same length as `index_deltas`.
    #[prost(uint64, repeated, packed = "true", tag = "3")]
    pub counts: Vec<u64>,
    #[prost(uint64, tag = "4")]
    pub sum_micros: u64,
}
