//! LogFormat compiler on arbitrary format strings (the input up to the first `\n`);
//! lines after it are parsed with the compiled format. Body:
//! `tailrace_logformat::fuzzing::compile`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tailrace_logformat::fuzzing::compile(data, &mut |json| {
        if let Err(e) = serde_json::from_slice::<serde_json::Value>(json) {
            panic!(
                "write_json wrote invalid JSON ({e}): {}",
                String::from_utf8_lossy(json)
            );
        }
    });
});
