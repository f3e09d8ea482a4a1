//! The byte-level format: hand-built vectors against `docs/wire-format.md`, decoder rejections,
//! splitting at scale, KPL layout.

use md5::{Digest, Md5};
use tailrace_wire::kpl::{self, KplError, KplRecord};
use tailrace_wire::{ClientKey, ClientStats, DecodeError, Partial, MAX_RECORD_BYTES};

fn small_partial() -> Partial {
    let mut stats = ClientStats::default();
    stats.record(Some(200), 100, Some(1000));
    Partial {
        host_id: "h".into(),
        service: String::new(),
        flow: "f".into(),
        window_start: 300,
        window_secs: 300,
        sequence: 7,
        groups: vec![(ClientKey::V4([10, 0, 0, 1]), stats)],
        ..Partial::default()
    }
}

/// The record of `small_partial()`, built by hand from the documented format.
fn small_partial_bytes() -> Vec<u8> {
    let mut b = vec![0x00, b'T', b'R', b'P', 0x01]; // envelope: magic, version 1
    b.extend([0x0A, 0x01, b'h']); // 1 host_id = "h"
    b.extend([0x1A, 0x01, b'f']); // 3 flow = "f"
    b.extend([0x20, 0xAC, 0x02]); // 4 window_start = 300
    b.extend([0x28, 0xAC, 0x02]); // 5 window_secs = 300
    b.extend([0x30, 0x07]); // 6 sequence = 7
    b.extend([0x42, 0x1D]); // 8 groups: one Group of 29 bytes
    b.extend([0x0A, 0x04, 10, 0, 0, 1]); //   1 ip = 10.0.0.1
    b.extend([0x1A, 0x15]); //   3 stats: 21 bytes
    b.extend([0x08, 0x01]); //     1 requests = 1
    b.extend([0x10, 0x64]); //     2 bytes = 100
    b.extend([0x1A, 0x03, 0, 0, 1]); //     3 status_classes = [0, 0, 1] (packed, trailing zeros cut)
    b.extend([0x22, 0x0A]); //     4 latency: 10 bytes
    b.extend([0x12, 0x02, 0xB4, 0x05]); //       2 index_deltas = [346] (sint32 zigzag 692)
    b.extend([0x1A, 0x01, 0x01]); //       3 counts = [1]
    b.extend([0x20, 0xE8, 0x07]); //       4 sum_micros = 1000
    b
}

#[test]
fn hand_built_partial_matches_the_documented_layout() {
    assert_eq!(tailrace_wire::bucket_index(1000), Some(346));
    assert_eq!(small_partial().encode(), small_partial_bytes());
    assert_eq!(Partial::decode(&small_partial_bytes()), Ok(small_partial()));
}

#[test]
fn unknown_fields_are_skipped() {
    let mut bytes = small_partial_bytes();
    // field 99, varint 5; field 100, length-delimited "xyz"
    bytes.extend([0x98, 0x06, 0x05, 0xA2, 0x06, 0x03, b'x', b'y', b'z']);
    assert_eq!(Partial::decode(&bytes), Ok(small_partial()));
}

fn payload_with(fields: &[u8]) -> Vec<u8> {
    let mut b = vec![0x00, b'T', b'R', b'P', 0x01];
    b.extend_from_slice(fields);
    b
}

/// A length-delimited field (tag < 16, length < 128).
fn ld(tag: u8, bytes: &[u8]) -> Vec<u8> {
    [vec![(tag << 3) | 2, bytes.len() as u8], bytes.to_vec()].concat()
}

fn invalid_reason(data: &[u8]) -> String {
    match Partial::decode(data) {
        Err(DecodeError::Invalid(reason)) => reason,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn envelope_errors() {
    assert_eq!(Partial::decode(b""), Err(DecodeError::Truncated));
    assert_eq!(Partial::decode(b"\0TR"), Err(DecodeError::Truncated));
    assert_eq!(Partial::decode(b"\0TRP"), Err(DecodeError::Truncated));
    assert_eq!(
        Partial::decode(b"GET / HTTP/1.1"),
        Err(DecodeError::BadMagic)
    );
    assert_eq!(Partial::decode(b"x"), Err(DecodeError::BadMagic));
    let err = Partial::decode(b"\0TRP\x07anything").unwrap_err();
    assert_eq!(err, DecodeError::UnknownVersion(7));
    assert_eq!(
        err.to_string(),
        "partial format version 7 is newer than this reader (knows 1); upgrade the aggregator"
    );
    assert!(Partial::decode(b"\0TRP\x00")
        .unwrap_err()
        .to_string()
        .contains("does not exist"));
    assert!(matches!(
        Partial::decode(&payload_with(&[0x0A, 0x05, b'h'])),
        Err(DecodeError::Protobuf(_))
    ));
}

#[test]
fn validation_errors() {
    // window_secs missing (0)
    assert!(invalid_reason(&payload_with(&[0x0A, 0x01, b'h'])).contains("window_secs is 0"));
    // window_start 301 with window_secs 300
    let r = invalid_reason(&payload_with(&[0x20, 0xAD, 0x02, 0x28, 0xAC, 0x02]));
    assert!(r.contains("not aligned"), "{r}");
    // negative, aligned window_start is fine
    let p = Partial {
        window_start: -600,
        window_secs: 300,
        ..Partial::default()
    };
    assert_eq!(Partial::decode(&p.encode()), Ok(p));
    // window_secs over a day
    assert!(invalid_reason(&payload_with(&[0x28, 0x81, 0xA3, 0x05])).contains("longer than"));
    let header = [0x28, 0xAC, 0x02];
    // ip of 5 bytes
    let mut f = header.to_vec();
    f.extend([0x42, 0x07, 0x0A, 0x05, 1, 2, 3, 4, 5]);
    let r = invalid_reason(&payload_with(&f));
    assert!(r.contains("ip of 5 bytes"), "{r}");
    // ip and name
    let mut f = header.to_vec();
    f.extend([0x42, 0x09, 0x0A, 0x04, 1, 2, 3, 4, 0x12, 0x01, b'n']);
    assert!(invalid_reason(&payload_with(&f)).contains("both"));
    // status classes do not add up to requests
    let mut f = header.to_vec();
    f.extend([0x42, 0x04, 0x1A, 0x02, 0x08, 0x02]);
    assert!(invalid_reason(&payload_with(&f)).contains("status classes add up to 0"));
    // seven status classes
    let mut f = header.to_vec();
    f.extend([
        0x42, 0x0D, 0x1A, 0x0B, 0x08, 0x07, 0x1A, 0x07, 1, 1, 1, 1, 1, 1, 1,
    ]);
    assert!(invalid_reason(&payload_with(&f)).contains("7 status classes"));
    // histogram: 2 indexes, 1 count
    let hist = [ld(2, &[0x02, 0x02]), ld(3, &[0x01])].concat();
    let stats = [vec![0x08, 0x01], ld(3, &[0x01]), ld(4, &hist)].concat();
    let f = [header.to_vec(), ld(8, &ld(3, &stats))].concat();
    let r = invalid_reason(&payload_with(&f));
    assert!(r.contains("2 bucket indexes but 1 counts"), "{r}");
    // histogram counts more observations than requests
    let hist = [ld(2, &[0x02]), ld(3, &[0x02])].concat();
    let stats = [vec![0x08, 0x01], ld(3, &[0x01]), ld(4, &hist)].concat();
    let f = [header.to_vec(), ld(8, &ld(3, &stats))].concat();
    let r = invalid_reason(&payload_with(&f));
    assert!(
        r.contains("2 observations, more than the 1 requests"),
        "{r}"
    );
    // histogram indexes not ascending (delta 0)
    let hist = [ld(2, &[0x02, 0x00]), ld(3, &[0x01, 0x01])].concat();
    let stats = [vec![0x08, 0x02], ld(3, &[0x02]), ld(4, &hist)].concat();
    let f = [header.to_vec(), ld(8, &ld(3, &stats))].concat();
    let r = invalid_reason(&payload_with(&f));
    assert!(r.contains("not strictly ascending"), "{r}");
    // histogram bucket index beyond u64 range
    let hist = [ld(2, &[0xFE, 0xFF, 0x03]), ld(3, &[0x01])].concat();
    let stats = [vec![0x08, 0x01], ld(3, &[0x01]), ld(4, &hist)].concat();
    let f = [header.to_vec(), ld(8, &ld(3, &stats))].concat();
    let r = invalid_reason(&payload_with(&f));
    assert!(r.contains("outside 0..=2218"), "{r}");
    // overflow with requests but no overflow clients
    let mut f = header.to_vec();
    f.extend([0x4A, 0x05, 0x08, 0x01, 0x1A, 0x01, 0x01]);
    assert!(invalid_reason(&payload_with(&f)).contains("overflow_clients is 0"));
    // four reject samples
    let mut f = header.to_vec();
    for _ in 0..4 {
        f.extend([0x62, 0x01, b'x']);
    }
    assert!(invalid_reason(&payload_with(&f)).contains("4 reject samples"));
}

#[test]
fn encoder_keeps_limits() {
    let mut p = small_partial();
    p.reject_samples = vec!["é".repeat(400), "b".into(), "c".into(), "d".into()];
    p.rejected_lines = 4;
    let decoded = Partial::decode(&p.encode()).expect("decodes");
    assert_eq!(decoded.reject_samples.len(), 3);
    assert_eq!(decoded.reject_samples[0], "é".repeat(256));
    // A hand-made name over the limit is folded into overflow, not lost.
    p.groups.push((
        ClientKey::Name("n".repeat(1000)),
        small_partial().groups[0].1.clone(),
    ));
    let decoded = Partial::decode(&p.encode()).expect("decodes");
    assert_eq!(decoded.groups.len(), 1);
    assert_eq!(decoded.overflow_clients, 1);
    assert_eq!(decoded.total(), p.total());
}

#[test]
fn split_200k_clients() {
    let mut p = Partial {
        host_id: "i-0123456789abcdef0".into(),
        service: "checkout".into(),
        flow: "/var/log/httpd/access_log".into(),
        window_start: 1_700_000_100,
        window_secs: 300,
        sequence: 0,
        rejected_lines: 2,
        reject_samples: vec!["\u{16}\u{3}\u{1} garbage".into()],
        ..Partial::default()
    };
    p.overflow.record(Some(200), 10, Some(5));
    p.overflow_clients = 1;
    for i in 0..200_000u32 {
        let key = match i % 3 {
            0 => ClientKey::V4(i.to_be_bytes()),
            1 => ClientKey::V6(u128::from(i).to_be_bytes()),
            _ => ClientKey::Name(format!("client-{i}.example.com")),
        };
        let mut stats = ClientStats::default();
        for j in 0..(i % 4 + 1) {
            stats.record(
                Some(200 + (j as u16) * 100),
                u64::from(i),
                Some(u64::from(i * 7 + j)),
            );
        }
        p.groups.push((key, stats));
    }
    for max in [64 * 1024, MAX_RECORD_BYTES - 256] {
        let mut next = 1000;
        let records = p.encode_split(max, &mut next);
        assert!(records.len() > 1);
        assert_eq!(next, 1000 + records.len() as u64);
        let mut groups = 0;
        let mut total = ClientStats::default();
        for (i, r) in records.iter().enumerate() {
            assert!(r.len() <= max, "record {i}: {} > {max}", r.len());
            let part = Partial::decode(r).expect("decodes");
            assert_eq!(part.sequence, 1000 + i as u64);
            assert_eq!(part.overflow_clients, u64::from(i == 0));
            groups += part.groups.len();
            total.merge(&part.total());
        }
        assert_eq!(groups, 200_000);
        assert_eq!(total, p.total());
        // records are filled: all but the last are close to the limit
        assert!(records[..records.len() - 1]
            .iter()
            .all(|r| r.len() > max - 200));
    }
}

#[test]
fn overflow_without_client_count_still_decodes() {
    let mut p = small_partial();
    p.overflow.record(Some(500), 1, None);
    let decoded = Partial::decode(&p.encode()).expect("decodes");
    assert_eq!(decoded.overflow_clients, 1);
    assert_eq!(decoded.total(), p.total());
}

#[test]
fn split_with_an_impossible_limit_loses_nothing() {
    let p = small_partial();
    let mut next = 0;
    let records = p.encode_split(10, &mut next);
    assert_eq!(records.len(), 1);
    let decoded = Partial::decode(&records[0]).expect("decodes");
    assert_eq!(decoded.total(), p.total());
    assert_eq!(decoded.overflow_clients, 1);
}

#[test]
fn empty_partial_is_one_record() {
    let p = Partial {
        window_secs: 300,
        ..Partial::default()
    };
    let mut next = 5;
    let records = p.encode_split(MAX_RECORD_BYTES, &mut next);
    assert_eq!(records.len(), 1);
    assert_eq!(next, 6);
    assert_eq!(Partial::decode(&records[0]).expect("decodes").sequence, 5);
}

/// `AggregatedRecord { partition_key_table: ["pk"], records: [Record { partition_key_index:
/// <index>, data: "hi" }] }`, by hand.
fn kpl_body(index: u8) -> Vec<u8> {
    vec![
        0x0A, 0x02, b'p', b'k', // 1 partition_key_table = "pk"
        0x1A, 0x06, // 3 records: 6 bytes
        0x08, index, //   1 partition_key_index
        0x1A, 0x02, b'h', b'i', //   3 data = "hi"
    ]
}

fn kpl_bytes(body: &[u8]) -> Vec<u8> {
    let mut b = kpl::MAGIC.to_vec();
    b.extend_from_slice(body);
    b.extend_from_slice(Md5::digest(body).as_slice());
    b
}

#[test]
fn kpl_hand_built_layout() {
    let bytes = kpl_bytes(&kpl_body(0));
    assert_eq!(&bytes[..4], &[0xF3, 0x89, 0x9A, 0xC2]);
    let record = KplRecord {
        partition_key: "pk".into(),
        explicit_hash_key: None,
        data: b"hi".to_vec(),
    };
    assert_eq!(kpl::deaggregate(&bytes), Ok(vec![record.clone()]));
    assert_eq!(kpl::aggregate(&[record]), bytes);
}

#[test]
fn kpl_rejections() {
    let good = kpl_bytes(&kpl_body(0));
    let mut bad_md5 = good.clone();
    let last = bad_md5.len() - 1;
    bad_md5[last] ^= 1;
    assert_eq!(kpl::deaggregate(&bad_md5), Err(KplError::BadChecksum));
    let mut bad_body = good.clone();
    bad_body[6] ^= 1;
    assert_eq!(kpl::deaggregate(&bad_body), Err(KplError::BadChecksum));
    assert_eq!(kpl::deaggregate(&good[..10]), Err(KplError::Truncated(10)));
    assert_eq!(kpl::deaggregate(&good[..2]), Err(KplError::Truncated(2)));
    assert_eq!(kpl::deaggregate(b"{\"a\":1}"), Err(KplError::BadMagic));
    assert!(!kpl::is_aggregated(&good[..19]));
    assert!(kpl::is_aggregated(&good));
    assert_eq!(
        kpl::deaggregate(&kpl_bytes(&kpl_body(1))),
        Err(KplError::PartitionKeyIndex {
            record: 0,
            index: 1,
            table_len: 1
        })
    );
    // explicit_hash_key_index 0 with an empty table
    let body = [
        0x0A, 0x02, b'p', b'k', 0x1A, 0x08, 0x08, 0x00, 0x10, 0x00, 0x1A, 0x02, b'h', b'i',
    ];
    let err = kpl::deaggregate(&kpl_bytes(&body)).unwrap_err();
    assert!(matches!(
        err,
        KplError::ExplicitHashKeyIndex {
            index: 0,
            table_len: 0,
            ..
        }
    ));
    assert!(err
        .to_string()
        .contains("explicit_hash_key_index 0 out of range"));
    // valid checksum over garbage protobuf
    assert!(matches!(
        kpl::deaggregate(&kpl_bytes(&[0x0A, 0x09, b'p'])),
        Err(KplError::Protobuf(_))
    ));
    // an empty aggregate is valid and holds nothing
    assert_eq!(kpl::deaggregate(&kpl_bytes(&[])), Ok(vec![]));
}

#[test]
fn kpl_shares_table_entries_and_carries_partials() {
    let partial = small_partial().encode();
    let records = vec![
        KplRecord {
            partition_key: "a".into(),
            explicit_hash_key: Some("123".into()),
            data: partial.clone(),
        },
        KplRecord {
            partition_key: "b".into(),
            explicit_hash_key: None,
            data: b"line\n".to_vec(),
        },
        KplRecord {
            partition_key: "a".into(),
            explicit_hash_key: Some("123".into()),
            data: vec![],
        },
    ];
    let bytes = kpl::aggregate(&records);
    let back = kpl::deaggregate(&bytes).expect("deaggregates");
    assert_eq!(back, records);
    assert_eq!(
        tailrace_wire::classify(&back[0].data),
        tailrace_wire::RecordKind::Partial
    );
    assert_eq!(Partial::decode(&back[0].data), Ok(small_partial()));
}
