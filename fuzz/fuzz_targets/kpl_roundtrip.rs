//! KPL aggregate → de-aggregate returns the records that went in. Body:
//! `tailrace_wire::fuzzing::kpl_roundtrip`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tailrace_wire::fuzzing::kpl_roundtrip(data));
