//! Replays the fuzz targets' seed corpora (`fuzz/corpus/<target>/`) and every case the
//! fuzzer found (`fuzz/regressions/<target>/`) through the same bodies the targets run
//! (`tailrace_wire::fuzzing`), round-trip assertions included, in the normal `cargo test`,
//! without a fuzzer.

use std::path::PathBuf;

use tailrace_tests::fuzz::{fuzz_dir, inputs, is_seed, replay};
use tailrace_wire::kpl::{self, KplRecord};
use tailrace_wire::{fuzzing, ClientKey, ClientStats, Partial};

#[test]
fn wire_decode() {
    replay("wire_decode", fuzzing::decode);
}

#[test]
fn kpl_deaggregate() {
    replay("kpl_deaggregate", fuzzing::kpl_input);
}

#[test]
fn kpl_roundtrip() {
    replay("kpl_roundtrip", fuzzing::kpl_roundtrip);
}

/// The seeds reach past the envelopes: some partial seeds decode, some KPL seeds
/// de-aggregate.
#[test]
fn seeds_are_valid_records() {
    let seeds = |target| {
        inputs(target)
            .into_iter()
            .filter(|(p, _)| is_seed(p))
            .map(|(_, d)| d)
            .collect::<Vec<_>>()
    };
    assert!(seeds("wire_decode")
        .iter()
        .any(|d| Partial::decode(d).is_ok_and(|p| p.groups.len() > 1)));
    assert!(seeds("kpl_deaggregate")
        .iter()
        .any(|d| d.first() == Some(&1) && kpl::deaggregate(&d[1..]).is_ok_and(|r| r.len() > 1)));
}

fn stats(requests: u64, status: u16, micros: u64) -> ClientStats {
    let mut s = ClientStats::default();
    for i in 0..requests {
        s.record(Some(status), 100 + i, Some(micros * (i + 1)));
    }
    s
}

/// Real records as the agent writes them, for the seeds.
fn real_partials() -> Vec<Vec<u8>> {
    let mut overflow = stats(3, 503, 90_000);
    overflow.record(None, 0, None);
    let partial = Partial {
        host_id: "i-0abc123def4567890".into(),
        service: "checkout".into(),
        flow: "access".into(),
        window_start: 1_700_000_100,
        window_secs: 300,
        sequence: 7,
        late: false,
        groups: vec![
            (ClientKey::from_text(b"10.0.0.1"), stats(5, 200, 1_250)),
            (ClientKey::from_text(b"2001:db8::42"), stats(2, 404, 0)),
            (
                ClientKey::from_text(b"proxy.internal"),
                stats(1, 302, 7_000_000),
            ),
        ],
        overflow,
        overflow_clients: 12,
        rejected_lines: 2,
        reject_samples: vec!["\\x16\\x03\\x01 garbage".into(), "GET / HTTP/1.1".into()],
    };
    let mut next = 1;
    let mut out = vec![partial.encode()];
    out.extend(partial.encode_split(150, &mut next));
    let late = Partial {
        late: true,
        window_secs: 60,
        window_start: 1_700_000_040,
        groups: vec![(ClientKey::from_text(b"192.0.2.7"), stats(1, 500, 15))],
        ..Partial::default()
    };
    out.push(late.encode());
    out
}

fn real_raw_lines() -> Vec<u8> {
    let mut out = Vec::new();
    for (path, data) in inputs_of_corpus("logformat_parse").into_iter().take(6) {
        assert!(path.is_file());
        out.extend_from_slice(&data);
        out.push(b'\n');
    }
    out
}

fn inputs_of_corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    inputs(target)
        .into_iter()
        .filter(|(p, _)| is_seed(p))
        .collect()
}

/// Writes the wire seeds from real encoder output (the agent's `Partial::encode_split`, the
/// KPL `aggregate`, raw lines from the Apache seeds). Run by hand after a wire format change:
/// `cargo test -p tailrace-wire --test fuzz_regressions -- --ignored write_seeds`.
#[test]
#[ignore = "writes fuzz/corpus/{wire_decode,kpl_deaggregate,kpl_roundtrip}; run by hand"]
fn write_seeds() {
    let write = |target: &str, name: &str, data: &[u8]| {
        let dir = fuzz_dir().join("corpus").join(target);
        std::fs::create_dir_all(&dir).expect("create corpus dir");
        std::fs::write(dir.join(name), data).expect("write seed");
    };
    let partials = real_partials();
    let raw = real_raw_lines();
    let agent_json = br#"{"host":"10.0.0.1","ident":null,"authuser":null,"datetime":"25/Nov/2026:16:30:21 +0000","request":"GET / HTTP/1.1","response":"200","bytes":"6","referer":null,"agent":"curl/7.88.1"}
"#;
    for (i, p) in partials.iter().enumerate() {
        write("wire_decode", &format!("partial-{i}"), p);
    }
    write("wire_decode", "raw-lines", &raw);
    write("wire_decode", "agent-json", agent_json);
    let inner = vec![
        KplRecord {
            partition_key: "i-0abc123def4567890/access".into(),
            explicit_hash_key: None,
            data: partials[0].clone(),
        },
        KplRecord {
            partition_key: "i-0abc123def4567890/access".into(),
            explicit_hash_key: Some("170141183460469231731687303715884105728".into()),
            data: raw.clone(),
        },
        KplRecord {
            partition_key: "web-2".into(),
            explicit_hash_key: None,
            data: agent_json.to_vec(),
        },
    ];
    let aggregated = kpl::aggregate(&inner);
    write("wire_decode", "kpl", &aggregated);
    let body = &aggregated[kpl::MAGIC.len()..aggregated.len() - kpl::DIGEST_BYTES];
    let mut whole = vec![1];
    whole.extend_from_slice(&aggregated);
    write("kpl_deaggregate", "record", &whole);
    let mut only_body = vec![0];
    only_body.extend_from_slice(body);
    write("kpl_deaggregate", "body", &only_body);
    let single = kpl::aggregate(&inner[2..]);
    let mut whole = vec![1];
    whole.extend_from_slice(&single);
    write("kpl_deaggregate", "single", &whole);
    // kpl_roundtrip: key length, key, flags (bit 0: explicit hash key), data length, data;
    // a key length byte >= 0xF0 reuses the previous key.
    let mut rt = Vec::new();
    for (key, flags, data) in [
        (
            &b"i-0abc/access"[..],
            0u8,
            &b"10.0.0.1 - - [25/Nov/2026:16:30:21 +0000] \"GET / HTTP/1.1\" 200 6"[..],
        ),
        (b"", 1, b"{\"x\":1}"),
        (b"web-2", 1, b""),
    ] {
        rt.push(key.len() as u8);
        rt.extend_from_slice(key);
        rt.push(flags);
        rt.push(data.len() as u8);
        rt.extend_from_slice(data);
    }
    rt.extend_from_slice(&[0xF0, 0, 3, b'a', b'b', b'c']);
    write("kpl_roundtrip", "records", &rt);
}
