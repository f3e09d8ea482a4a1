//! Benchmark harness support for tailrace.
//!
//! The binaries in `src/bin/` are the harness: `tailrace-genlog` writes a
//! realistic access log, `tailrace-sink-kinesis` answers PutRecords fast and
//! counts what it received, `tailrace-parse-only` measures parsing alone.
//! `bench/run.sh` ties them to `tailrace replay` and prints the figures that
//! go into `BENCHMARKS.md`. This library holds the pieces they share and that
//! deserve unit tests: a deterministic random generator with a Zipf-like
//! sampler and the simulated fleet of `tailrace-fleet` ([`fleet`]). The
//! Apache time stamp is `tailrace_logformat::LogTime::write_clf`, and the
//! sink's HTTP/1.1 reader is the test kit's (`tailrace_tests::http`): one
//! copy of each for the tests and the bench.

pub mod fleet;
pub mod rng;
