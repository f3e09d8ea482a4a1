//! The KPL de-aggregator. The first byte chooses: odd, the rest is taken as a
//! whole record (magic and MD5 as given); even, the rest is the protobuf body and
//! gets a valid magic and MD5, so the fuzzer gets past the checksum. Bodies:
//! `tailrace_wire::fuzzing::{kpl_deaggregate, kpl_body}`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tailrace_wire::fuzzing::kpl_input(data));
