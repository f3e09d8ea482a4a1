//! Replays the fuzz targets' seed corpora (`fuzz/corpus/<target>/`) and every case the
//! fuzzer found (`fuzz/regressions/<target>/`) through the same bodies the targets run
//! (`tailrace_logformat::fuzzing`), in the normal `cargo test`, without a fuzzer.

use tailrace_logformat::fuzzing;
use tailrace_tests::fuzz::{fuzz_dir, inputs, is_seed, replay};

fn json_check(json: &[u8]) {
    if let Err(e) = serde_json::from_slice::<serde_json::Value>(json) {
        panic!(
            "write_json wrote invalid JSON ({e}): {}",
            String::from_utf8_lossy(json)
        );
    }
}

#[test]
fn logformat_compile() {
    replay("logformat_compile", |data| {
        fuzzing::compile(data, &mut json_check)
    });
}

#[test]
fn logformat_parse() {
    replay("logformat_parse", |data| {
        fuzzing::parse(data, &mut json_check)
    });
}

/// The Apache seeds (made by `fuzz/seeds/apache.sh`) each parse with at least one of the
/// target's formats, so the corpus does reach past the first literal.
#[test]
fn parse_seeds_are_real_lines() {
    let formats: Vec<_> = fuzzing::PARSE_FORMATS
        .iter()
        .map(|f| tailrace_logformat::LogFormat::compile(f).expect("fuzz format"))
        .collect();
    let mut parsed = tailrace_logformat::Parsed::new();
    for (path, data) in inputs("logformat_parse") {
        if is_seed(&path) {
            assert!(
                formats.iter().any(|f| f.parse(&data, &mut parsed).is_ok()),
                "{} parses with none of the formats",
                path.display()
            );
        }
    }
}

/// Writes the `logformat_compile` seeds: each fuzz format (and the preset names) followed by
/// a line it parses, taken from the `logformat_parse` seeds. Run by hand after changing
/// `PARSE_FORMATS` or the Apache seeds:
/// `cargo test -p tailrace-logformat --test fuzz_regressions -- --ignored write_compile_seeds`.
#[test]
#[ignore = "writes fuzz/corpus/logformat_compile; run by hand"]
fn write_compile_seeds() {
    let dir = fuzz_dir().join("corpus/logformat_compile");
    std::fs::create_dir_all(&dir).expect("create corpus dir");
    let lines: Vec<Vec<u8>> = inputs("logformat_parse")
        .into_iter()
        .filter(|(p, _)| is_seed(p))
        .map(|(_, d)| d)
        .collect();
    let mut parsed = tailrace_logformat::Parsed::new();
    let specs =
        fuzzing::PARSE_FORMATS
            .iter()
            .copied()
            .chain(["common", "combined", "vhost_combined"]);
    for (i, spec) in specs.enumerate() {
        let format = tailrace_logformat::LogFormat::compile(spec).expect("fuzz format");
        let mut seed = spec.as_bytes().to_vec();
        for line in lines
            .iter()
            .filter(|l| format.parse(l, &mut parsed).is_ok())
            .take(2)
        {
            seed.push(b'\n');
            seed.extend_from_slice(line);
        }
        std::fs::write(dir.join(format!("format-{i}")), seed).expect("write seed");
    }
}
