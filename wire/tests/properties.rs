//! Property tests: merges are exact, encodings round-trip, decoders never panic.

use std::collections::BTreeMap;

use proptest::prelude::*;
use tailrace_wire::{classify, kpl, raw, ClientKey, ClientStats, LatencyHistogram, Partial};

fn arb_key() -> impl Strategy<Value = ClientKey> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(ClientKey::V4),
        any::<[u8; 16]>().prop_map(ClientKey::V6),
        ".{0,40}".prop_map(ClientKey::Name),
    ]
}

fn arb_latency() -> impl Strategy<Value = u64> {
    prop_oneof![Just(0u64), 1u64..1_000, 1u64..10_000_000, any::<u64>(),]
}

/// (status, bytes, latency)
type Observation = (Option<u16>, u64, Option<u64>);

fn arb_observation() -> impl Strategy<Value = Observation> {
    (
        prop_oneof![
            Just(None),
            (0u16..700).prop_map(Some),
            any::<u16>().prop_map(Some)
        ],
        prop_oneof![0u64..100_000, any::<u64>()],
        proptest::option::of(arb_latency()),
    )
}

fn stats_of(observations: &[Observation]) -> ClientStats {
    let mut stats = ClientStats::default();
    for &(status, bytes, latency) in observations {
        stats.record(status, bytes, latency);
    }
    stats
}

fn arb_stats() -> impl Strategy<Value = ClientStats> {
    prop::collection::vec(arb_observation(), 0..12).prop_map(|o| stats_of(&o))
}

fn arb_histogram() -> impl Strategy<Value = LatencyHistogram> {
    prop::collection::vec(arb_latency(), 0..40).prop_map(|values| {
        let mut h = LatencyHistogram::default();
        for v in values {
            h.record(v);
        }
        h
    })
}

fn arb_partial() -> impl Strategy<Value = Partial> {
    (
        ("[a-z0-9-]{0,20}", ".{0,10}", "[a-z/._]{0,30}"),
        (
            -1_000_000i64..100_000_000,
            prop_oneof![Just(300u32), 1u32..3600],
        ),
        (any::<u64>(), any::<bool>()),
        prop::collection::vec((arb_key(), arb_stats()), 0..20),
        (arb_stats(), 1u64..1000),
        (any::<u64>(), prop::collection::vec(".{0,60}", 0..4)),
    )
        .prop_map(
            |(
                (host_id, service, flow),
                (start, window_secs),
                (sequence, late),
                groups,
                (overflow, clients),
                (rejected_lines, reject_samples),
            )| {
                let overflow_clients = if overflow.is_empty() { 0 } else { clients };
                Partial {
                    host_id,
                    service,
                    flow,
                    window_start: start * i64::from(window_secs),
                    window_secs,
                    sequence,
                    late,
                    groups,
                    overflow,
                    overflow_clients,
                    rejected_lines,
                    reject_samples: reject_samples.into_iter().take(3).collect(),
                }
            },
        )
}

fn merged(a: &ClientStats, b: &ClientStats) -> ClientStats {
    let mut out = a.clone();
    out.merge(b);
    out
}

fn merged_h(a: &LatencyHistogram, b: &LatencyHistogram) -> LatencyHistogram {
    let mut out = a.clone();
    out.merge(b);
    out
}

/// Groups merged by key (what the aggregator does).
fn by_key<'a>(
    groups: impl IntoIterator<Item = &'a (ClientKey, ClientStats)>,
) -> BTreeMap<ClientKey, ClientStats> {
    let mut map: BTreeMap<ClientKey, ClientStats> = BTreeMap::new();
    for (key, stats) in groups {
        map.entry(key.clone()).or_default().merge(stats);
    }
    map
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn stats_merge_is_associative_and_commutative(a in arb_stats(), b in arb_stats(), c in arb_stats()) {
        prop_assert_eq!(merged(&merged(&a, &b), &c), merged(&a, &merged(&b, &c)));
        prop_assert_eq!(merged(&a, &b), merged(&b, &a));
        prop_assert_eq!(merged(&a, &ClientStats::default()), a.clone());
    }

    #[test]
    fn histogram_merge_is_associative_and_commutative(a in arb_histogram(), b in arb_histogram(), c in arb_histogram()) {
        prop_assert_eq!(merged_h(&merged_h(&a, &b), &c), merged_h(&a, &merged_h(&b, &c)));
        prop_assert_eq!(merged_h(&a, &b), merged_h(&b, &a));
        prop_assert_eq!(merged_h(&LatencyHistogram::default(), &a), a.clone());
    }

    #[test]
    fn histogram_merge_equals_recording_the_union(a in prop::collection::vec(arb_latency(), 0..40), b in prop::collection::vec(arb_latency(), 0..40)) {
        let mut ha = LatencyHistogram::default();
        a.iter().for_each(|&v| ha.record(v));
        let mut hb = LatencyHistogram::default();
        b.iter().for_each(|&v| hb.record(v));
        let mut union = LatencyHistogram::default();
        a.iter().chain(&b).for_each(|&v| union.record(v));
        ha.merge(&hb);
        prop_assert_eq!(ha, union);
    }

    /// Each host aggregates its own lines and ships a partial (through the encoding); merging
    /// the decoded partials by client equals aggregating all lines in one place.
    #[test]
    fn merging_host_partials_equals_aggregating_the_union(
        lines in prop::collection::vec((0usize..3, 0usize..6, arb_observation()), 0..80),
        keys in prop::collection::vec(arb_key(), 6),
    ) {
        let mut per_host: Vec<BTreeMap<ClientKey, ClientStats>> = vec![BTreeMap::new(); 3];
        let mut union: BTreeMap<ClientKey, ClientStats> = BTreeMap::new();
        for &(host, k, (status, bytes, latency)) in &lines {
            per_host[host].entry(keys[k].clone()).or_default().record(status, bytes, latency);
            union.entry(keys[k].clone()).or_default().record(status, bytes, latency);
        }
        let mut decoded = Vec::new();
        for (h, groups) in per_host.into_iter().enumerate() {
            let partial = Partial {
                host_id: format!("host-{h}"),
                flow: "access".into(),
                window_start: 600,
                window_secs: 300,
                groups: groups.into_iter().collect(),
                ..Partial::default()
            };
            decoded.push(Partial::decode(&partial.encode()).expect("decodes"));
        }
        let merged = by_key(decoded.iter().flat_map(|p| p.groups.iter()));
        prop_assert_eq!(merged, union);
    }

    #[test]
    fn encode_decode_round_trip(p in arb_partial()) {
        let bytes = p.encode();
        prop_assert_eq!(classify(&bytes), tailrace_wire::RecordKind::Partial);
        prop_assert_eq!(Partial::decode(&bytes), Ok(p));
    }

    #[test]
    fn encode_split_parts_merge_back(p in arb_partial(), max in 1024usize..6000, first_seq in 0u64..1_000_000) {
        let mut next = first_seq;
        let records = p.encode_split(max, &mut next);
        prop_assert!(!records.is_empty());
        prop_assert_eq!(next, first_seq + records.len() as u64);
        let mut groups = Vec::new();
        let mut overflow = ClientStats::default();
        let mut overflow_clients = 0;
        for (i, record) in records.iter().enumerate() {
            prop_assert!(record.len() <= max, "record {} is {} bytes > {}", i, record.len(), max);
            let part = Partial::decode(record).expect("part decodes");
            prop_assert_eq!(part.sequence, first_seq + i as u64);
            prop_assert_eq!(&part.host_id, &p.host_id);
            prop_assert_eq!(&part.flow, &p.flow);
            prop_assert_eq!(part.window_start, p.window_start);
            prop_assert_eq!(part.late, p.late);
            if i > 0 {
                prop_assert!(part.overflow.is_empty() && part.rejected_lines == 0 && part.reject_samples.is_empty());
            } else {
                prop_assert_eq!(part.rejected_lines, p.rejected_lines);
            }
            overflow.merge(&part.overflow);
            overflow_clients += part.overflow_clients;
            groups.extend(part.groups);
        }
        // Nothing lost: the same clients (a group too big for any record would be folded into
        // overflow; with these sizes none is) and the same totals.
        prop_assert_eq!(groups.len() as u64 + overflow_clients, p.groups.len() as u64 + p.overflow_clients);
        let mut total = overflow;
        groups.iter().for_each(|(_, s)| total.merge(s));
        prop_assert_eq!(total, p.total());
        prop_assert_eq!(by_key(&groups), by_key(p.groups.iter()));
    }

    #[test]
    fn quantiles_within_relative_error(values in prop::collection::vec(prop_oneof![0u64..10, 1u64..1_000_000, 1u64..u64::MAX / 2], 1..200), q in 0.0f64..=1.0) {
        let mut h = LatencyHistogram::default();
        values.iter().for_each(|&v| h.record(v));
        let mut sorted = values.clone();
        sorted.sort_unstable();
        let exact = sorted[(q * (sorted.len() - 1) as f64).floor() as usize] as f64;
        let estimate = h.quantile(q).expect("not empty");
        let tolerance = LatencyHistogram::RELATIVE_ERROR * exact * (1.0 + 1e-9);
        prop_assert!((estimate - exact).abs() <= tolerance, "q={} exact={} estimate={}", q, exact, estimate);
    }

    #[test]
    fn decode_never_panics(data in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = Partial::decode(&data);
        let _ = kpl::deaggregate(&data);
        let _ = kpl::is_aggregated(&data);
        let _ = classify(&data);
        let _ = raw::lines(&data).count();
        let _ = ClientKey::from_text(&data);
    }

    #[test]
    fn decode_never_panics_past_the_envelope(payload in prop::collection::vec(any::<u8>(), 0..300)) {
        let mut data = tailrace_wire::PARTIAL_MAGIC.to_vec();
        data.push(tailrace_wire::PARTIAL_VERSION);
        data.extend_from_slice(&payload);
        let _ = Partial::decode(&data);
    }

    #[test]
    fn decode_never_panics_on_corrupted_partials(p in arb_partial(), flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6)) {
        let mut data = p.encode();
        for (at, byte) in flips {
            let i = at.index(data.len());
            data[i] = byte;
        }
        let _ = Partial::decode(&data);
        let cut = data.len() / 2;
        let _ = Partial::decode(&data[..cut]);
    }

    #[test]
    fn deaggregate_never_panics_past_the_checksum(body in prop::collection::vec(any::<u8>(), 0..300)) {
        use md5::Digest;
        let mut data = kpl::MAGIC.to_vec();
        data.extend_from_slice(&body);
        data.extend_from_slice(md5::Md5::digest(&body).as_slice());
        let _ = kpl::deaggregate(&data);
    }

    #[test]
    fn kpl_round_trip(records in prop::collection::vec(
        ("[a-z0-9]{1,8}", proptest::option::of("[0-9]{1,39}"), prop::collection::vec(any::<u8>(), 0..100)),
        0..20,
    )) {
        let records: Vec<kpl::KplRecord> = records
            .into_iter()
            .map(|(partition_key, explicit_hash_key, data)| kpl::KplRecord { partition_key, explicit_hash_key, data })
            .collect();
        let bytes = kpl::aggregate(&records);
        prop_assert!(kpl::is_aggregated(&bytes));
        prop_assert_eq!(classify(&bytes), tailrace_wire::RecordKind::Kpl);
        prop_assert_eq!(kpl::deaggregate(&bytes), Ok(records));
    }

    #[test]
    fn raw_pack_round_trip(lines in prop::collection::vec(prop::collection::vec(any::<u8>().prop_filter("no newline", |b| *b != b'\n'), 0..50), 0..50), max in 1usize..200) {
        let records = raw::pack(lines.iter().map(|l| l.as_slice()), max);
        let mut back = Vec::new();
        for r in &records {
            prop_assert!(r.len() <= max);
            prop_assert!(r.ends_with(b"\n"));
            back.extend(raw::lines(r).map(|l| l.to_vec()));
        }
        let expected: Vec<Vec<u8>> = lines.iter().map(|l| l[..l.len().min(max - 1)].to_vec()).collect();
        prop_assert_eq!(back, expected);
    }
}
