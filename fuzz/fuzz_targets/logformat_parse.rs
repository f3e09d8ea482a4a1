//! The line parser on arbitrary bytes, with the fixed formats of
//! `tailrace_logformat::fuzzing::PARSE_FORMATS`, using every accessor on the
//! result. Body: `tailrace_logformat::fuzzing::parse`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tailrace_logformat::fuzzing::parse(data, &mut |json| {
        if let Err(e) = serde_json::from_slice::<serde_json::Value>(json) {
            panic!(
                "write_json wrote invalid JSON ({e}): {}",
                String::from_utf8_lossy(json)
            );
        }
    });
});
