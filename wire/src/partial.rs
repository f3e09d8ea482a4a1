//! Partial aggregates: the domain type, its envelope, encoding (with splitting) and decoding.
//!
//! A record is `PARTIAL_MAGIC` (4 bytes), one version byte, then the payload of that version.
//! Version 1's payload is the protobuf message `proto::PartialV1`. Because protobuf repeated
//! fields may be split anywhere in a message, a record is an encoded header followed by
//! encoded `groups` fields, which lets [`Partial::encode_split`] size records exactly.

use prost::Message;

use crate::client::{ClientKey, MAX_NAME_BYTES};
use crate::histogram::LatencyHistogram;
use crate::proto::{GroupV1, HistogramV1, PartialV1, StatsV1, GROUPS_KEY};
use crate::stats::ClientStats;

/// The first four bytes of every partial-aggregate record: `\0TRP`.
pub const PARTIAL_MAGIC: [u8; 4] = [0x00, b'T', b'R', b'P'];
/// The format version [`Partial::encode`] writes (the byte after [`PARTIAL_MAGIC`]).
pub const PARTIAL_VERSION: u8 = 1;
/// Kinesis' limit for one record: data + partition key.
pub const MAX_RECORD_BYTES: usize = 1_048_576;
/// Magic plus version byte.
pub const ENVELOPE_BYTES: usize = PARTIAL_MAGIC.len() + 1;
/// Longest `host_id`, `service` or `flow` (longer ones are cut by the encoder, rejected by the decoder).
pub const MAX_LABEL_BYTES: usize = 1024;
/// Most reject samples a partial carries (the encoder keeps the first ones).
pub const MAX_REJECT_SAMPLES: usize = 3;
/// Longest reject sample (the encoder cuts longer ones at a character boundary).
pub const MAX_REJECT_SAMPLE_BYTES: usize = 512;
/// Longest window the decoder accepts (one day).
pub const MAX_WINDOW_SECS: u32 = 86_400;

/// One partial aggregate: what one host saw for one flow in one window (or part of it).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Partial {
    /// The sending host's identity (stable across restarts; used for deduplication).
    pub host_id: String,
    /// The service the flow belongs to (a metric dimension).
    pub service: String,
    /// The flow (one configured log source) within the host.
    pub flow: String,
    /// unix seconds, aligned to window_secs
    pub window_start: i64,
    /// Window length in seconds (> 0).
    pub window_secs: u32,
    /// per (host, flow), increasing; (host_id, flow, sequence) identifies a record
    pub sequence: u64,
    /// lines that arrived after this window was first emitted
    pub late: bool,
    /// Statistics per client. Keys are normally distinct; a consumer merges duplicates.
    pub groups: Vec<(ClientKey, ClientStats)>,
    /// requests of clients beyond the per-window group cap, merged without their client
    pub overflow: ClientStats,
    /// how many distinct clients were folded into `overflow` (the encoder writes at least 1
    /// when `overflow` is not empty)
    pub overflow_clients: u64,
    /// lines that failed to parse
    pub rejected_lines: u64,
    /// a few (≤3), each ≤ 512 bytes
    pub reject_samples: Vec<String>,
}

/// Why a record could not be decoded as a partial aggregate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The record does not start with [`PARTIAL_MAGIC`].
    #[error("not a tailrace partial (bad magic)")]
    BadMagic,
    /// The version byte is not one this reader knows.
    #[error("{}", unknown_version_message(*.0))]
    UnknownVersion(u8),
    /// The record ends before the version byte.
    #[error("partial record truncated (shorter than its {ENVELOPE_BYTES}-byte envelope)")]
    Truncated,
    /// The payload is not valid protobuf for its version.
    #[error("partial payload is not valid protobuf: {0}")]
    Protobuf(String),
    /// The payload decodes but breaks a rule of the format.
    #[error("invalid partial: {0}")]
    Invalid(String),
}

fn unknown_version_message(version: u8) -> String {
    if version > PARTIAL_VERSION {
        format!(
            "partial format version {version} is newer than this reader (knows {PARTIAL_VERSION}); upgrade the aggregator"
        )
    } else {
        format!("partial format version {version} does not exist (this reader knows 1..={PARTIAL_VERSION})")
    }
}

impl Partial {
    /// Encode into one or more records, each ≤ `max_record_bytes` (callers pass
    /// [`MAX_RECORD_BYTES`] minus the partition key length), splitting `groups` across records.
    ///
    /// Every record is a complete Partial (same header) with its own sequence number taken from
    /// `*next_sequence` (incremented per record; `self.sequence` is ignored); overflow and
    /// rejects go in the first. Always returns at least one record.
    ///
    /// A group too large to fit in any record on its own (only possible with a tiny
    /// `max_record_bytes`) is folded into `overflow` (`overflow_clients` + 1), so no request is
    /// lost. If `max_record_bytes` is smaller than the header itself (a few hundred bytes; more
    /// with large overflow histograms), reject samples are dropped, and if that is not enough
    /// the first record exceeds the limit: there is nothing smaller that keeps the counts.
    pub fn encode_split(&self, max_record_bytes: usize, next_sequence: &mut u64) -> Vec<Vec<u8>> {
        let mut header = self.header_proto();
        // The largest header a record without overflow/rejects can have (10-byte sequence).
        header.sequence = u64::MAX;
        let group_budget = max_record_bytes
            .saturating_sub(ENVELOPE_BYTES)
            .saturating_sub(header.encoded_len());

        let mut overflow = self.overflow.clone();
        let mut overflow_clients = self.overflow_clients;
        let mut groups: Vec<(GroupV1, usize)> = Vec::with_capacity(self.groups.len());
        for (key, stats) in &self.groups {
            let fits_name = !matches!(key, ClientKey::Name(n) if n.len() > MAX_NAME_BYTES);
            let group = group_to_proto(key, stats);
            let len = group.encoded_len();
            let field_len = 1 + prost::length_delimiter_len(len) + len;
            if fits_name && field_len <= group_budget {
                groups.push((group, field_len));
            } else {
                overflow.merge(stats);
                overflow_clients = overflow_clients.saturating_add(1);
            }
        }

        // The first record's header: overflow and reject samples.
        let mut first = self.header_proto();
        first.sequence = *next_sequence;
        first.overflow = stats_to_proto(&overflow);
        // A non-empty overflow came from at least one client; never write a record the
        // decoder would reject for a bookkeeping slip.
        first.overflow_clients = if overflow.is_empty() {
            overflow_clients
        } else {
            overflow_clients.max(1)
        };
        first.rejected_lines = self.rejected_lines;
        first.reject_samples = self
            .reject_samples
            .iter()
            .take(MAX_REJECT_SAMPLES)
            .map(|s| crate::client::truncate_string(s.clone(), MAX_REJECT_SAMPLE_BYTES))
            .collect();
        while ENVELOPE_BYTES + first.encoded_len() > max_record_bytes
            && first.reject_samples.pop().is_some()
        {}

        let mut records = Vec::new();
        let mut record = start_record(&first);
        *next_sequence = next_sequence.wrapping_add(1);
        for (group, field_len) in groups {
            if record.len() + field_len > max_record_bytes {
                records.push(record);
                let mut next = self.header_proto();
                next.sequence = *next_sequence;
                *next_sequence = next_sequence.wrapping_add(1);
                record = start_record(&next);
            }
            record.push(GROUPS_KEY);
            // Writing into a Vec cannot run out of capacity, so this cannot fail.
            let _ = group.encode_length_delimited(&mut record);
        }
        records.push(record);
        records
    }

    /// Encode as exactly one record with `self.sequence` (tests, small partials).
    ///
    /// The record may exceed [`MAX_RECORD_BYTES`]; the agent uses [`Partial::encode_split`].
    pub fn encode(&self) -> Vec<u8> {
        let mut sequence = self.sequence;
        let mut records = self.encode_split(usize::MAX, &mut sequence);
        // With no size limit there is exactly one record.
        records.pop().unwrap_or_default()
    }

    /// Decode any known version; reject bad input with a reason, never panic.
    pub fn decode(data: &[u8]) -> Result<Partial, DecodeError> {
        if data.len() < ENVELOPE_BYTES {
            let n = data.len().min(PARTIAL_MAGIC.len());
            return Err(if PARTIAL_MAGIC[..n] == data[..n] {
                DecodeError::Truncated
            } else {
                DecodeError::BadMagic
            });
        }
        if data[..4] != PARTIAL_MAGIC {
            return Err(DecodeError::BadMagic);
        }
        match data[4] {
            1 => decode_v1(&data[ENVELOPE_BYTES..]),
            version => Err(DecodeError::UnknownVersion(version)),
        }
    }

    /// The sum over groups and overflow.
    pub fn total(&self) -> ClientStats {
        let mut total = self.overflow.clone();
        for (_, stats) in &self.groups {
            total.merge(stats);
        }
        total
    }

    /// The header fields every record of this partial carries (no groups, overflow, rejects).
    fn header_proto(&self) -> PartialV1 {
        PartialV1 {
            host_id: crate::client::truncate_string(self.host_id.clone(), MAX_LABEL_BYTES),
            service: crate::client::truncate_string(self.service.clone(), MAX_LABEL_BYTES),
            flow: crate::client::truncate_string(self.flow.clone(), MAX_LABEL_BYTES),
            window_start: self.window_start,
            window_secs: self.window_secs,
            sequence: self.sequence,
            late: self.late,
            groups: Vec::new(),
            overflow: None,
            overflow_clients: 0,
            rejected_lines: 0,
            reject_samples: Vec::new(),
        }
    }
}

fn start_record(header: &PartialV1) -> Vec<u8> {
    let mut record = Vec::with_capacity(ENVELOPE_BYTES + header.encoded_len());
    record.extend_from_slice(&PARTIAL_MAGIC);
    record.push(PARTIAL_VERSION);
    // Writing into a Vec cannot run out of capacity, so this cannot fail.
    let _ = header.encode(&mut record);
    record
}

fn group_to_proto(key: &ClientKey, stats: &ClientStats) -> GroupV1 {
    let (ip, name) = match key {
        ClientKey::V4(b) => (b.to_vec(), String::new()),
        ClientKey::V6(b) => (b.to_vec(), String::new()),
        ClientKey::Name(n) => (Vec::new(), n.clone()),
    };
    GroupV1 {
        ip,
        name,
        stats: stats_to_proto(stats),
    }
}

fn stats_to_proto(stats: &ClientStats) -> Option<StatsV1> {
    if stats.is_empty() {
        return None;
    }
    let used = stats
        .status_classes
        .iter()
        .rposition(|&c| c != 0)
        .map_or(0, |p| p + 1);
    Some(StatsV1 {
        requests: stats.requests,
        bytes: stats.bytes,
        status_classes: stats.status_classes[..used].to_vec(),
        latency: histogram_to_proto(&stats.latency),
    })
}

fn histogram_to_proto(h: &LatencyHistogram) -> Option<HistogramV1> {
    if h.is_empty() {
        return None;
    }
    let mut previous = 0i32;
    let buckets = h.bucket_counts().count();
    let mut index_deltas = Vec::with_capacity(buckets);
    let mut counts = Vec::with_capacity(buckets);
    for (index, count) in h.bucket_counts() {
        index_deltas.push(index.wrapping_sub(previous));
        previous = index;
        counts.push(count);
    }
    Some(HistogramV1 {
        zero_count: h.zero_count(),
        index_deltas,
        counts,
        sum_micros: h.sum_micros(),
    })
}

fn invalid(reason: String) -> DecodeError {
    DecodeError::Invalid(reason)
}

fn decode_v1(payload: &[u8]) -> Result<Partial, DecodeError> {
    let msg = PartialV1::decode(payload).map_err(|e| DecodeError::Protobuf(e.to_string()))?;
    if msg.window_secs == 0 {
        return Err(invalid("window_secs is 0".into()));
    }
    if msg.window_secs > MAX_WINDOW_SECS {
        return Err(invalid(format!(
            "window_secs {} is longer than {MAX_WINDOW_SECS}",
            msg.window_secs
        )));
    }
    if msg.window_start.rem_euclid(i64::from(msg.window_secs)) != 0 {
        return Err(invalid(format!(
            "window_start {} is not aligned to window_secs {}",
            msg.window_start, msg.window_secs
        )));
    }
    for (what, value) in [
        ("host_id", &msg.host_id),
        ("service", &msg.service),
        ("flow", &msg.flow),
    ] {
        if value.len() > MAX_LABEL_BYTES {
            return Err(invalid(format!(
                "{what} is {} bytes long (at most {MAX_LABEL_BYTES})",
                value.len()
            )));
        }
    }
    if msg.reject_samples.len() > MAX_REJECT_SAMPLES {
        return Err(invalid(format!(
            "{} reject samples (at most {MAX_REJECT_SAMPLES})",
            msg.reject_samples.len()
        )));
    }
    if let Some(s) = msg
        .reject_samples
        .iter()
        .find(|s| s.len() > MAX_REJECT_SAMPLE_BYTES)
    {
        return Err(invalid(format!(
            "a reject sample is {} bytes long (at most {MAX_REJECT_SAMPLE_BYTES})",
            s.len()
        )));
    }
    let overflow = stats_from_proto(msg.overflow).map_err(|e| invalid(format!("overflow: {e}")))?;
    if msg.overflow_clients == 0 && !overflow.is_empty() {
        return Err(invalid(
            "overflow has requests but overflow_clients is 0".into(),
        ));
    }
    let mut groups = Vec::with_capacity(msg.groups.len());
    for (i, group) in msg.groups.into_iter().enumerate() {
        let key = match group.ip.len() {
            0 => {
                if group.name.len() > MAX_NAME_BYTES {
                    return Err(invalid(format!(
                        "group {i}: client name is {} bytes long (at most {MAX_NAME_BYTES})",
                        group.name.len()
                    )));
                }
                ClientKey::Name(group.name)
            }
            n @ (4 | 16) if !group.name.is_empty() => {
                return Err(invalid(format!(
                    "group {i}: has both an ip ({n} bytes) and a name"
                )))
            }
            4 => ClientKey::V4(group.ip[..4].try_into().unwrap_or_default()),
            16 => ClientKey::V6(group.ip[..16].try_into().unwrap_or_default()),
            n => {
                return Err(invalid(format!(
                    "group {i}: ip of {n} bytes (must be 4 or 16)"
                )))
            }
        };
        let stats = stats_from_proto(group.stats)
            .map_err(|e| invalid(format!("group {i} ({key}): {e}")))?;
        groups.push((key, stats));
    }
    Ok(Partial {
        host_id: msg.host_id,
        service: msg.service,
        flow: msg.flow,
        window_start: msg.window_start,
        window_secs: msg.window_secs,
        sequence: msg.sequence,
        late: msg.late,
        groups,
        overflow,
        overflow_clients: msg.overflow_clients,
        rejected_lines: msg.rejected_lines,
        reject_samples: msg.reject_samples,
    })
}

fn stats_from_proto(stats: Option<StatsV1>) -> Result<ClientStats, String> {
    let Some(stats) = stats else {
        return Ok(ClientStats::default());
    };
    if stats.status_classes.len() > 6 {
        return Err(format!(
            "{} status classes (at most 6)",
            stats.status_classes.len()
        ));
    }
    let mut status_classes = [0u64; 6];
    status_classes[..stats.status_classes.len()].copy_from_slice(&stats.status_classes);
    let classified = status_classes
        .iter()
        .fold(0u64, |sum, &c| sum.saturating_add(c));
    if classified != stats.requests {
        return Err(format!(
            "status classes add up to {classified}, requests is {}",
            stats.requests
        ));
    }
    let latency = match stats.latency {
        None => LatencyHistogram::default(),
        Some(h) => histogram_from_proto(h)?,
    };
    if latency.count() > stats.requests {
        return Err(format!(
            "latency histogram counts {} observations, more than the {} requests",
            latency.count(),
            stats.requests
        ));
    }
    Ok(ClientStats {
        requests: stats.requests,
        bytes: stats.bytes,
        status_classes,
        latency,
    })
}

fn histogram_from_proto(h: HistogramV1) -> Result<LatencyHistogram, String> {
    if h.index_deltas.len() != h.counts.len() {
        return Err(format!(
            "histogram has {} bucket indexes but {} counts",
            h.index_deltas.len(),
            h.counts.len()
        ));
    }
    let mut buckets = Vec::with_capacity(h.counts.len());
    let mut index = 0i64;
    for (delta, count) in h.index_deltas.into_iter().zip(h.counts) {
        index += i64::from(delta);
        let index = i32::try_from(index)
            .map_err(|_| format!("histogram bucket index {index} out of range"))?;
        buckets.push((index, count));
    }
    LatencyHistogram::from_parts(h.zero_count, buckets, h.sum_micros)
}
