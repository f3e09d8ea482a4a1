//! One Kinesis record's data as the aggregator sees it: classify, partial decode
//! (and re-encode round trip), raw lines, KPL. Body: `tailrace_wire::fuzzing::decode`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tailrace_wire::fuzzing::decode(data));
