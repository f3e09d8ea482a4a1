//! tailrace aggregator: the consuming half of the pipeline.
//!
//! Records from the Kinesis stream (tailrace partials, raw access-log lines,
//! Amazon Kinesis Agent `LOGTOJSON` objects, KPL aggregated records) are
//! decoded into per-window partial aggregates ([`decode`]), their client
//! addresses joined with an S3 metadata file to find the *source application*
//! ([`metadata`], [`metadata_source`]), merged per (window, service,
//! application) ([`merge`]) and published as CloudWatch metrics ([`publish`]).
//!
//! [`handler::Handler`] ties these together for one batch of records; it is
//! driven either by the Lambda runtime ([`lambda`], binary `bootstrap`) or by
//! the local stream consumer ([`consume`], `tailrace-aggregator consume`).
//! The same Lambda also takes CloudWatch alarm notifications from SNS and
//! writes the message a person reads ([`notify`]); those it could not send
//! are re-sent from its failure queue by [`resend`].
//!
//! All of that needs the default feature `aws`. Without it
//! (`default-features = false`) only the metadata CSV reader ([`metadata`],
//! plain std) is built: the fuzz target for it (`fuzz/`) uses that, so the
//! fuzzer does not compile the AWS SDK.

#[cfg(feature = "aws")]
pub mod bounded;
#[cfg(feature = "aws")]
pub mod clients;
#[cfg(feature = "aws")]
pub mod config;
#[cfg(feature = "aws")]
pub mod consume;
#[cfg(feature = "aws")]
pub mod decode;
#[cfg(feature = "aws")]
pub mod handler;
#[cfg(feature = "aws")]
pub mod idempotency;
#[cfg(feature = "inventory")]
pub mod inventory;
#[cfg(feature = "aws")]
pub mod lambda;
#[cfg(feature = "aws")]
pub mod logging;
#[cfg(feature = "aws")]
pub mod merge;
pub mod metadata;
#[cfg(feature = "aws")]
pub mod metadata_source;
#[cfg(feature = "aws")]
pub mod model;
#[cfg(feature = "aws")]
pub mod notify;
#[cfg(feature = "aws")]
pub mod publish;
#[cfg(feature = "aws")]
pub mod replay;
#[cfg(feature = "aws")]
pub mod resend;
#[cfg(feature = "aws")]
pub mod tally;

/// The body of the `metadata_csv` fuzz target (`fuzz/`), shared with its
/// regression test below so the two cannot drift apart. Not part of the API.
#[doc(hidden)]
pub mod fuzzing {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use crate::metadata::Metadata;

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
