//! The bodies of the fuzz targets (`fuzz/fuzz_targets/wire_*.rs`, `kpl_*.rs`), shared with
//! the regression test (`tests/fuzz_regressions.rs`) so that what the fuzzer ran and what
//! `cargo test` replays cannot drift apart. Not part of the API: hidden from the docs, no
//! stability promise.
//!
//! Besides "no panic", the bodies assert round trips: a partial that decodes re-encodes to
//! the same partial (whole, and split into small records that add up to the same totals),
//! raw lines join back to the record, and de-aggregated KPL records re-aggregate to the same
//! records.

use crate::kpl::{self, KplRecord};
use crate::{classify, raw, ClientStats, Partial, RecordKind};

/// Record size for the split round trip: small, so that real partials split into several
/// records, but above any header (labels ≤ 3 KiB, reject samples are dropped if needed).
const SPLIT_RECORD_BYTES: usize = 4096;

/// Target `wire_decode`: one Kinesis record's data, as the aggregator sees it.
pub fn decode(data: &[u8]) {
    let kind = classify(data);
    match Partial::decode(data) {
        Ok(partial) => {
            assert_eq!(kind, RecordKind::Partial);
            partial_round_trip(&partial);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    raw_round_trip(data);
    if kind == RecordKind::Kpl {
        kpl_deaggregate(data);
    }
}

/// Target `kpl_deaggregate`: the first byte chooses what the rest is. Odd: a whole KPL
/// aggregated record, magic and MD5 as given ([`kpl_deaggregate`]). Even (or empty): the
/// protobuf body, wrapped in a valid magic and MD5 ([`kpl_body`]), so the fuzzer gets past
/// the checksum to the protobuf and table checks.
pub fn kpl_input(data: &[u8]) {
    match data.split_first() {
        Some((&selector, rest)) if selector & 1 == 1 => kpl_deaggregate(rest),
        Some((_, rest)) => kpl_body(rest),
        None => kpl_body(&[]),
    }
}

/// A KPL aggregated record, magic and MD5 taken as given: de-aggregate it, and treat each
/// inner record as the aggregator does.
pub fn kpl_deaggregate(data: &[u8]) {
    assert_eq!(
        kpl::is_aggregated(data),
        classify(data) == RecordKind::Kpl && data.len() >= 20
    );
    match kpl::deaggregate(data) {
        Ok(records) => {
            assert!(kpl::is_aggregated(data));
            // Re-aggregating yields the same user records.
            let again = kpl::aggregate(&records);
            assert_eq!(kpl::deaggregate(&again).as_ref(), Ok(&records));
            for record in &records {
                // What the aggregator does with each inner record.
                let _ = classify(&record.data);
                if let Ok(partial) = Partial::decode(&record.data) {
                    partial_round_trip(&partial);
                }
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// A KPL protobuf body, wrapped in the magic and its MD5, then [`kpl_deaggregate`].
pub fn kpl_body(body: &[u8]) {
    use md5::{Digest, Md5};
    let mut data = Vec::with_capacity(kpl::MAGIC.len() + body.len() + kpl::DIGEST_BYTES);
    data.extend_from_slice(&kpl::MAGIC);
    data.extend_from_slice(body);
    data.extend_from_slice(Md5::digest(body).as_slice());
    kpl_deaggregate(&data);
}

/// Target `kpl_roundtrip`: user records built from the input, aggregated, de-aggregated:
/// the same records come back.
pub fn kpl_roundtrip(data: &[u8]) {
    let records = records_from_bytes(data);
    let aggregated = kpl::aggregate(&records);
    assert_eq!(classify(&aggregated), RecordKind::Kpl);
    assert_eq!(kpl::deaggregate(&aggregated), Ok(records));
}

/// Reads records from bytes: per record a key length byte, the key (lossy UTF-8; a key is
/// reused when its length byte is ≥ 0xF0 so the tables de-duplicate), a byte whose low bit
/// says whether there is an explicit hash key (the same text as the partition key, reversed),
/// a data length byte, the data.
fn records_from_bytes(mut data: &[u8]) -> Vec<KplRecord> {
    fn take<'a>(data: &mut &'a [u8], n: usize) -> &'a [u8] {
        let (head, tail) = data.split_at(n.min(data.len()));
        *data = tail;
        head
    }
    let mut records: Vec<KplRecord> = Vec::new();
    while let Some((&key_len, rest)) = data.split_first() {
        data = rest;
        let partition_key = match records.last() {
            Some(previous) if key_len >= 0xF0 => previous.partition_key.clone(),
            _ => String::from_utf8_lossy(take(&mut data, usize::from(key_len & 0x3F))).into_owned(),
        };
        let flags = take(&mut data, 1).first().copied().unwrap_or(0);
        let explicit_hash_key =
            (flags & 1 == 1).then(|| partition_key.chars().rev().collect::<String>());
        let data_len = take(&mut data, 1).first().copied().unwrap_or(0);
        let record_data = take(&mut data, usize::from(data_len)).to_vec();
        records.push(KplRecord {
            partition_key,
            explicit_hash_key,
            data: record_data,
        });
    }
    records
}

/// A decoded partial re-encodes to itself, and splits into records that decode to the same
/// header and add up to the same totals.
fn partial_round_trip(partial: &Partial) {
    let _ = partial.total();
    let whole = partial.encode();
    assert_eq!(Partial::decode(&whole).as_ref(), Ok(partial));

    let mut next_sequence = partial.sequence;
    let records = partial.encode_split(SPLIT_RECORD_BYTES, &mut next_sequence);
    assert!(!records.is_empty());
    let mut total = ClientStats::default();
    let mut groups = 0;
    for (i, record) in records.iter().enumerate() {
        let piece = match Partial::decode(record) {
            Ok(p) => p,
            Err(e) => panic!("split record {i} does not decode: {e}"),
        };
        assert_eq!(piece.host_id, partial.host_id);
        assert_eq!(piece.window_start, partial.window_start);
        assert_eq!(piece.window_secs, partial.window_secs);
        total.merge(&piece.total());
        groups += piece.groups.len();
    }
    assert!(groups <= partial.groups.len());
    assert_eq!(total, partial.total());
}

/// Raw lines join back into the record (less one trailing `\n`).
fn raw_round_trip(data: &[u8]) {
    let mut joined = Vec::with_capacity(data.len());
    for (i, line) in raw::lines(data).enumerate() {
        assert!(!line.contains(&b'\n'));
        if i > 0 {
            joined.push(b'\n');
        }
        joined.extend_from_slice(line);
    }
    assert_eq!(joined, data.strip_suffix(b"\n").unwrap_or(data));
}
