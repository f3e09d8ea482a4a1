//! Benchmark harness support for tailrace.
//!
//! The binaries in `src/bin/` are the harness: `tailrace-genlog` writes a
//! realistic access log, `tailrace-sink-kinesis` answers PutRecords fast and
//! counts what it received, `tailrace-parse-only` measures parsing alone.
//! `bench/run.sh` ties them to `tailrace replay` and prints the figures that
//! go into `BENCHMARKS.md`. This library holds the pieces they share and that
//! deserve unit tests: a deterministic random generator with a Zipf-like
//! sampler, the Apache time stamp, a small HTTP/1.1 request reader, and the
//! simulated fleet of `tailrace-fleet` ([`fleet`]).

pub mod clftime;
pub mod fleet;
pub mod http;
pub mod rng;
