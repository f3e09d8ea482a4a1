//! tailrace aggregator: the consuming half of the pipeline.
//!
//! Records from the Kinesis stream (tailrace partials, raw access-log lines,
//! Amazon Kinesis Agent `LOGTOJSON` objects, KPL aggregated records) go
//! through three stages, a folder each:
//!
//! - [`ingest`]: records decoded into per-window partial aggregates, and
//!   admitted (skipped when the DynamoDB claims say another attempt counted
//!   them already);
//! - [`join`]: client addresses joined with the S3 metadata file to find the
//!   *source application*, and partials merged per (window, service,
//!   application);
//! - [`publish`]: the metric model, the CloudWatch datums and calls, and the
//!   client tallies of every published unit.
//!
//! [`notify`] turns a CloudWatch alarm into the message a person reads, and
//! re-sends those the Lambda could not send. [`entry`] holds what drives a
//! batch through the stages ([`entry::handler::Handler`]) and the ways in:
//! the Lambda runtime (binary `bootstrap`), the local stream consumer
//! (`tailrace-aggregator consume`), `replay`, and the inventory updater's
//! glue. The set-up is flat: [`config`] (the one front door for settings),
//! [`clients`], [`logging`], [`bounded`].
//!
//! All of that needs the default feature `aws`. Without it
//! (`default-features = false`) only the metadata CSV reader
//! ([`join::metadata`], plain std) is built: the fuzz target for it (`fuzz/`)
//! uses that, so the fuzzer does not compile the AWS SDK.

#[cfg(feature = "aws")]
pub mod bounded;
#[cfg(feature = "aws")]
pub mod clients;
#[cfg(feature = "aws")]
pub mod config;
#[cfg(feature = "aws")]
pub mod entry;
#[cfg(feature = "aws")]
pub mod ingest;
pub mod join;
#[cfg(feature = "aws")]
pub mod logging;
#[cfg(feature = "aws")]
pub mod notify;
#[cfg(feature = "aws")]
pub mod publish;

/// The body of the `metadata_csv` fuzz target (`fuzz/`), shared with its
/// regression test below so the two cannot drift apart. Not part of the API.
#[doc(hidden)]
pub mod fuzzing {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use crate::join::metadata::Metadata;

    /// Target `metadata_csv`: the input (lossy UTF-8) is a metadata file; parse
    /// it and look up a few fixed addresses plus two made from the input.
    pub fn metadata_csv(data: &[u8]) {
        let text = String::from_utf8_lossy(data);
        let parsed = Metadata::parse(&text);
        let lines = text.lines().count().max(1);
        for e in &parsed.errors {
            assert!(
                (1..=lines).contains(&e.row),
                "row {} outside 1..={lines}",
                e.row
            );
            let _ = e.to_string();
        }
        let m = &parsed.metadata;
        let _ = (m.len(), m.is_empty(), m.unknown());
        let mut v4 = [0u8; 4];
        let mut v6 = [0u8; 16];
        for (i, b) in data.iter().enumerate() {
            v4[i % 4] ^= b;
            v6[i % 16] ^= b;
        }
        let ips = [
            IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)),
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V4(Ipv4Addr::BROADCAST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
            IpAddr::V6(Ipv4Addr::new(10, 1, 2, 3).to_ipv6_mapped()),
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
            IpAddr::V4(Ipv4Addr::from(v4)),
            IpAddr::V6(Ipv6Addr::from(v6)),
        ];
        for ip in ips {
            let resolved = m.resolve(Some(ip));
            assert_eq!(resolved, m.lookup(ip).unwrap_or(m.unknown()));
        }
        let _ = m.resolve(None);
    }

    #[cfg(test)]
    mod tests {
        /// Every seed (`fuzz/corpus/metadata_csv/`) and every case the fuzzer
        /// found (`fuzz/regressions/metadata_csv/`) goes through the target's
        /// body without a panic.
        #[test]
        fn fuzz_corpus_and_regressions() {
            let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
            let mut seen = 0;
            for dir in ["corpus", "regressions"] {
                let dir = root.join(dir).join("metadata_csv");
                let Ok(entries) = std::fs::read_dir(&dir) else {
                    // Only the corpus must exist; regressions/ appears with the first find.
                    assert!(dir.starts_with(root.join("regressions")), "{dir:?} missing");
                    continue;
                };
                for entry in entries {
                    let path = entry.expect("directory entry").path();
                    if path.is_file() {
                        let data = std::fs::read(&path).expect("read fuzz input");
                        eprintln!("{}", path.display());
                        super::metadata_csv(&data);
                        seen += 1;
                    }
                }
            }
            assert!(seen > 0, "no fuzz inputs found under {root:?}");
        }
    }
}
