//! The local stream consumer (`tailrace-aggregator consume`): polls every
//! shard of a stream and feeds the same [`Handler`] as the Lambda, in batches
//! of at most 200 records per shard, with the event source mapping's
//! semantics: when records fail, the shard is re-read from the lowest failed
//! sequence number (after a backoff); records before it are not re-sent.
//!
//! Shards are listed again periodically; a child shard (after a split or
//! merge) is read from its start once its parents are finished. No
//! checkpoints are kept: a new `consume` starts from `TRIM_HORIZON` (or
//! `LATEST`). With `exit_when_idle`, it returns once no shard delivered a
//! record for that long.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_sdk_kinesis::error::ProvideErrorMetadata;
use aws_sdk_kinesis::types::ShardIteratorType;

use crate::entry::handler::Handler;
use crate::ingest::batch::InputRecord;

/// The event source mapping's batch size, and the most `consume` feeds at once.
pub const MAX_BATCH: usize = 200;

/// Where to start reading shards that exist when `consume` starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartPosition {
    /// The oldest record still in the stream.
    TrimHorizon,
    /// Only records written after the start.
    Latest,
}

/// Options of [`consume`].
#[derive(Debug, Clone)]
pub struct ConsumeOptions {
    /// Stream name.
    pub stream: String,
    /// Where to start existing shards.
    pub start: StartPosition,
    /// Records per handler call (1..=200).
    pub batch_size: usize,
    /// Return after this long without a new record.
    pub exit_when_idle: Option<Duration>,
    /// Pause between polling rounds that found nothing.
    pub poll_interval: Duration,
    /// Give up (error) after a batch failed this many times in a row.
    pub max_batch_attempts: u32,
    /// How often to list shards again.
    pub shard_refresh: Duration,
}

impl ConsumeOptions {
    /// Defaults for `stream`.
    pub fn new(stream: impl Into<String>) -> ConsumeOptions {
        ConsumeOptions {
            stream: stream.into(),
            start: StartPosition::TrimHorizon,
            batch_size: MAX_BATCH,
            exit_when_idle: None,
            poll_interval: Duration::from_millis(1000),
            max_batch_attempts: 10,
            shard_refresh: Duration::from_secs(30),
        }
    }
}

/// What a `consume` run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsumeSummary {
    /// Shards read.
    pub shards: usize,
    /// Records handed to the handler (retries included).
    pub records: usize,
    /// Handler calls.
    pub batches: usize,
    /// Handler calls that reported failed records.
    pub failed_batches: usize,
    /// Poison records skipped.
    pub poison: usize,
    /// Partials merged.
    pub partials: usize,
    /// Datums published.
    pub datums: usize,
}

/// `consume` could not go on.
#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    /// A Kinesis call failed for good.
    #[error("Kinesis {operation} on stream {stream}: {message}")]
    Kinesis {
        /// The API.
        operation: &'static str,
        /// The stream.
        stream: String,
        /// The error.
        message: String,
    },
    /// A batch kept failing.
    #[error("shard {shard}: the batch starting at {sequence_number} failed {attempts} times in a row; giving up (nothing after it was handled)")]
    BatchFailed {
        /// The shard.
        shard: String,
        /// First failed record.
        sequence_number: String,
        /// Attempts made.
        attempts: u32,
    },
}

#[derive(Debug, Default)]
struct ShardState {
    parents: Vec<String>,
    iterator: Option<String>,
    /// Where to (re)start when there is no iterator.
    resume: Resume,
    done: bool,
    failures: u32,
}

#[derive(Debug, Default, Clone)]
enum Resume {
    #[default]
    Initial,
    FromStart,
    At(String),
    After(String),
}

/// Read the stream and handle every record until idle (or forever).
pub async fn consume(
    kinesis: &aws_sdk_kinesis::Client,
    handler: &Handler,
    opts: &ConsumeOptions,
) -> Result<ConsumeSummary, ConsumeError> {
    let batch_size = opts.batch_size.clamp(1, MAX_BATCH) as i32;
    let mut shards: BTreeMap<String, ShardState> = BTreeMap::new();
    let mut summary = ConsumeSummary::default();
    let mut last_listed: Option<Instant> = None;
    let mut last_record = Instant::now();
    let mut kinesis_errors = 0u32;

    loop {
        if last_listed.is_none_or(|t| t.elapsed() >= opts.shard_refresh) {
            let first = last_listed.is_none();
            for (id, parents) in list_shards(kinesis, &opts.stream).await? {
                shards.entry(id.clone()).or_insert_with(|| {
                    tracing::info!(stream = %opts.stream, shard = %id, "reading shard");
                    ShardState {
                        parents,
                        resume: if first {
                            Resume::Initial
                        } else {
                            Resume::FromStart
                        },
                        ..ShardState::default()
                    }
                });
            }
            summary.shards = shards.len();
            last_listed = Some(Instant::now());
        }

        let mut got_any = false;
        let ids: Vec<String> = shards.keys().cloned().collect();
        for id in ids {
            let parents_done = {
                let state = &shards[&id];
                if state.done {
                    continue;
                }
                state
                    .parents
                    .iter()
                    .all(|p| shards.get(p).is_none_or(|s| s.done))
            };
            if !parents_done {
                continue;
            }
            let state = shards.get_mut(&id).expect("listed above");
            if state.iterator.is_none() {
                state.iterator = Some(
                    shard_iterator(kinesis, &opts.stream, &id, &state.resume, opts.start).await?,
                );
            }
            let Some(iterator) = state.iterator.clone() else {
                continue;
            };
            let out = match kinesis
                .get_records()
                .shard_iterator(iterator)
                .limit(batch_size)
                .send()
                .await
            {
                Ok(out) => {
                    kinesis_errors = 0;
                    out
                }
                Err(err) => {
                    let code = err.code().unwrap_or("").to_string();
                    let message = aws_sdk_kinesis::error::DisplayErrorContext(&err).to_string();
                    if code == "ExpiredIteratorException" {
                        state.iterator = None;
                        continue;
                    }
                    kinesis_errors += 1;
                    if kinesis_errors > 20 {
                        return Err(ConsumeError::Kinesis {
                            operation: "GetRecords",
                            stream: opts.stream.clone(),
                            message,
                        });
                    }
                    tracing::warn!(shard = %id, error = %message, "GetRecords failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200) * kinesis_errors.min(10)).await;
                    continue;
                }
            };
            let records: Vec<InputRecord> = out
                .records()
                .iter()
                .map(|r| InputRecord {
                    sequence_number: r.sequence_number().to_string(),
                    partition_key: r.partition_key().unwrap_or_default().to_string(),
                    data: r.data().as_ref().to_vec(),
                })
                .collect();
            let next = out.next_shard_iterator().map(str::to_string);
            if records.is_empty() {
                state.iterator = next;
                if state.iterator.is_none() {
                    tracing::info!(shard = %id, "shard closed and fully read");
                    state.done = true;
                }
                continue;
            }
            got_any = true;
            last_record = Instant::now();
            let outcome = handler.handle(&records).await;
            summary.records += records.len();
            summary.batches += 1;
            summary.poison += outcome.stats.poison;
            summary.partials += outcome.stats.partials;
            summary.datums += outcome.stats.datums;
            if outcome.failed.is_empty() {
                state.failures = 0;
                if let Some(last) = records.last() {
                    state.resume = Resume::After(last.sequence_number.clone());
                }
                state.iterator = next;
                if state.iterator.is_none() {
                    state.done = true;
                }
            } else {
                summary.failed_batches += 1;
                state.failures += 1;
                // The lowest failed record, in shard order (= batch order).
                let first_failed = records
                    .iter()
                    .find(|r| outcome.failed.contains(&r.sequence_number))
                    .map(|r| r.sequence_number.clone())
                    .unwrap_or_else(|| records[0].sequence_number.clone());
                if state.failures >= opts.max_batch_attempts {
                    return Err(ConsumeError::BatchFailed {
                        shard: id,
                        sequence_number: first_failed,
                        attempts: state.failures,
                    });
                }
                let delay = Duration::from_millis(500) * (1 << state.failures.min(6));
                tracing::warn!(
                    shard = %id,
                    failed = outcome.failed.len(),
                    from = %first_failed,
                    attempt = state.failures,
                    delay_ms = delay.as_millis() as u64,
                    "batch had failed records; re-reading from the first one"
                );
                state.resume = Resume::At(first_failed);
                state.iterator = None;
                tokio::time::sleep(delay).await;
            }
        }

        if shards.values().all(|s| s.done) && !shards.is_empty() {
            tracing::info!(stream = %opts.stream, "every shard is closed and read");
            return Ok(summary);
        }
        if !got_any {
            if let Some(idle) = opts.exit_when_idle {
                if last_record.elapsed() >= idle {
                    tracing::info!(stream = %opts.stream, idle_ms = idle.as_millis() as u64, "idle: exiting");
                    return Ok(summary);
                }
            }
            tokio::time::sleep(opts.poll_interval).await;
        }
    }
}

async fn list_shards(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
) -> Result<Vec<(String, Vec<String>)>, ConsumeError> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let req = match &token {
            Some(t) => kinesis.list_shards().next_token(t),
            None => kinesis.list_shards().stream_name(stream),
        };
        let resp = req.send().await.map_err(|e| ConsumeError::Kinesis {
            operation: "ListShards",
            stream: stream.into(),
            message: aws_sdk_kinesis::error::DisplayErrorContext(&e).to_string(),
        })?;
        for shard in resp.shards() {
            let parents = shard
                .parent_shard_id()
                .into_iter()
                .chain(shard.adjacent_parent_shard_id())
                .map(str::to_string)
                .collect();
            out.push((shard.shard_id().to_string(), parents));
        }
        token = resp.next_token().map(str::to_string);
        if token.is_none() {
            return Ok(out);
        }
    }
}

async fn shard_iterator(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    shard: &str,
    resume: &Resume,
    start: StartPosition,
) -> Result<String, ConsumeError> {
    let mut req = kinesis
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id(shard);
    req = match resume {
        Resume::Initial => req.shard_iterator_type(match start {
            StartPosition::TrimHorizon => ShardIteratorType::TrimHorizon,
            StartPosition::Latest => ShardIteratorType::Latest,
        }),
        Resume::FromStart => req.shard_iterator_type(ShardIteratorType::TrimHorizon),
        Resume::At(seq) => req
            .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
            .starting_sequence_number(seq),
        Resume::After(seq) => req
            .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
            .starting_sequence_number(seq),
    };
    let resp = req.send().await.map_err(|e| ConsumeError::Kinesis {
        operation: "GetShardIterator",
        stream: stream.into(),
        message: aws_sdk_kinesis::error::DisplayErrorContext(&e).to_string(),
    })?;
    resp.shard_iterator()
        .map(str::to_string)
        .ok_or_else(|| ConsumeError::Kinesis {
            operation: "GetShardIterator",
            stream: stream.into(),
            message: format!("no iterator returned for shard {shard}"),
        })
}
