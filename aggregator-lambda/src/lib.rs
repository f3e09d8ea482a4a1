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

pub mod clients;
pub mod config;
pub mod consume;
pub mod decode;
pub mod handler;
pub mod lambda;
pub mod logging;
pub mod merge;
pub mod metadata;
pub mod metadata_source;
pub mod publish;
