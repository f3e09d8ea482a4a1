//! The bodies of the fuzz targets (`fuzz/fuzz_targets/logformat_*.rs`), shared with the
//! regression test (`tests/fuzz_regressions.rs`) so that what the fuzzer ran and what
//! `cargo test` replays cannot drift apart. Not part of the API: hidden from the docs,
//! no stability promise.
//!
//! Each body feeds hostile bytes through the public API and asserts only what must hold
//! for any input: no panic, errors point inside the input, and `write_json` output is
//! valid JSON (checked by the caller's `json_check`, which has a JSON parser).

use std::sync::OnceLock;

use crate::{split_request, LogFormat, Parsed, COMBINED, COMMON, VHOST_COMBINED};

/// The formats the `logformat_parse` target runs every input through: the presets, a
/// house format with durations, headers and strftime/epoch time parts, and one with
/// fields directly next to each other (the parser's backtracking path).
pub const PARSE_FORMATS: [&str; 5] = [
    COMMON,
    COMBINED,
    VHOST_COMBINED,
    r#"%a %{X-Forwarded-For}i %l %u [%{%d/%b/%Y:%H:%M:%S}t.%{msec_frac}t %{%z}t] "%r" %>s %b %D %T %{ms}T "%{Referer}i" "%{User-Agent}i" %{end:usec}t %X"#,
    r#"%{Host}i%U%q %h%l %>s %B %{us}T %{%F %T}t%{%z}t %{sec}t"#,
];

fn parse_formats() -> &'static [LogFormat] {
    static FORMATS: OnceLock<Vec<LogFormat>> = OnceLock::new();
    FORMATS.get_or_init(|| {
        PARSE_FORMATS
            .iter()
            .map(|f| match LogFormat::compile(f) {
                Ok(f) => f,
                Err(e) => panic!("fuzz format {f:?} does not compile: {e}"),
            })
            .collect()
    })
}

/// Target `logformat_compile`: the input up to the first `\n` is a LogFormat string
/// (lossily decoded as UTF-8); if it compiles, every following line is parsed with it.
pub fn compile(data: &[u8], json_check: &mut dyn FnMut(&[u8])) {
    let (spec, lines) = match memchr::memchr(b'\n', data) {
        Some(nl) => (&data[..nl], Some(&data[nl + 1..])),
        None => (data, None),
    };
    let spec = String::from_utf8_lossy(spec);
    match LogFormat::compile(&spec) {
        Ok(format) => {
            let _ = format.spec();
            let _ = (format.has_time(), format.has_latency());
            let names: Vec<&str> = format.field_names().collect();
            assert_eq!(names.len(), format.field_count());
            for (i, name) in names.iter().enumerate() {
                // Names are unique, so each finds its own index.
                assert_eq!(format.field_index(name), Some(i), "field name {name:?}");
            }
            let mut parsed = Parsed::new();
            for line in lines.into_iter().flat_map(|l| l.split(|&b| b == b'\n')) {
                exercise(&format, line, &mut parsed, json_check);
            }
        }
        Err(e) => {
            let _ = e.to_string();
            assert!(
                e.column <= spec.chars().count(),
                "error column {} past the end of a {}-char format",
                e.column,
                spec.chars().count()
            );
        }
    }
}

/// Target `logformat_parse`: the whole input is one line, parsed with each of
/// [`PARSE_FORMATS`].
pub fn parse(data: &[u8], json_check: &mut dyn FnMut(&[u8])) {
    let mut parsed = Parsed::new();
    for format in parse_formats() {
        exercise(format, data, &mut parsed, json_check);
    }
}

/// Parse `line` and use every accessor on the result (also after an error, when
/// `parsed` holds partial results).
fn exercise(
    format: &LogFormat,
    line: &[u8],
    parsed: &mut Parsed,
    json_check: &mut dyn FnMut(&[u8]),
) {
    let result = format.parse(line, parsed);
    if let Err(e) = &result {
        let _ = e.to_string();
        assert!(
            e.column <= line.len(),
            "error column {} past the end of a {}-byte line",
            e.column,
            line.len()
        );
    }
    let _ = parsed.client(line);
    for i in 0..=format.field_count() {
        if let Some(v) = parsed.field(line, i) {
            let _ = split_request(v);
        }
    }
    if let Some(t) = parsed.time() {
        assert!(t.nanos < 1_000_000_000, "nanos {} out of range", t.nanos);
        let mut out = Vec::new();
        t.write_rfc3339(&mut out);
        t.write_clf(&mut out);
    }
    let _ = (
        parsed.status(),
        parsed.response_bytes(),
        parsed.duration_us(),
    );
    let mut json = Vec::new();
    parsed.write_json(format, line, &mut json);
    if result.is_ok() {
        json_check(&json);
    }
}
