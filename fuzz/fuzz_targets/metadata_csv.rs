//! The aggregator's metadata CSV reader (built without the AWS parts). Body:
//! `tailrace_aggregator::fuzzing::metadata_csv`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tailrace_aggregator::fuzzing::metadata_csv(data));
