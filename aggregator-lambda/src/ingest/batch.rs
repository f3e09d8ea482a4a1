//! A batch as it comes in: the records ([`InputRecord`]), decoded into
//! partials with poison records skipped, counted and logged
//! ([`decode_batch`]), and each partial's admission ([`Admission`]): from
//! this process's memory ([`local_admissions`]) or from the claims
//! (`crate::ingest::idempotency`, through the handler). The batch's counters
//! ([`BatchStats`]) start here and every stage adds to them.

use std::collections::HashMap;

use serde::Serialize;
use tailrace_wire::Partial;

use crate::ingest::decode::{Decoder, Source};
use crate::join::merge::{GroupMask, PartialId, Progress, SeenPartials};

/// One Kinesis record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputRecord {
    /// Sequence number Kinesis assigned (the `itemIdentifier` of a failure).
    pub sequence_number: String,
    /// Partition key (for logs).
    pub partition_key: String,
    /// The record's data.
    pub data: Vec<u8>,
}

/// Counters of one batch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BatchStats {
    /// Records in the batch.
    pub records: usize,
    /// Records skipped as undecodable.
    pub poison: usize,
    /// Inner records of KPL aggregates.
    pub kpl_inner: usize,
    /// Partials merged (tailrace partials and synthetic ones).
    pub partials: usize,
    /// Tailrace partials among them.
    pub tailrace_partials: usize,
    /// Synthetic partials from raw lines.
    pub raw_partials: usize,
    /// Synthetic partials from Kinesis Agent JSON.
    pub json_partials: usize,
    /// Partials skipped as replays.
    pub duplicates: usize,
    /// Partials merged again without the client groups an earlier, partly
    /// failed attempt already published.
    pub resumed: usize,
    /// Partials another attempt holds a live claim on (their records fail).
    pub busy: usize,
    /// DynamoDB claims or finishes that failed.
    pub claim_errors: usize,
    /// Client tally objects written (`tally`).
    pub tallies: usize,
    /// Client tally objects that could not be written.
    pub tally_errors: usize,
    /// Milliseconds waited for other attempts' leases to end.
    pub lease_wait_ms: u64,
    /// Milliseconds from the end of the publish to the claims' finishes
    /// recorded: while they run, a crash leaves published partials
    /// unrecorded (counted again after their lease).
    pub finish_ms: u64,
    /// Whether the metadata table used is not the current file's.
    pub metadata_stale: bool,
    /// Raw/JSON lines counted.
    pub lines: u64,
    /// Raw/JSON lines and agent-side lines rejected.
    pub rejected_lines: u64,
    /// Windows touched.
    pub windows: usize,
    /// Datums published.
    pub datums: usize,
    /// PutMetricData calls made successfully.
    pub calls: usize,
    /// PutMetricData retries.
    pub retries: usize,
    /// PutMetricData calls that failed after their last attempt.
    pub failed_calls: usize,
    /// Datums not sent because CloudWatch would refuse their timestamp.
    pub unpublishable_datums: usize,
    /// Datums CloudWatch refused as invalid.
    pub dropped_datums: usize,
    /// Units split over calls (too big for one).
    pub split_units: usize,
    /// Records reported as failed.
    pub failed: usize,
}

/// What to do with one partial of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Merge the client groups not in `done`; `owner` is the claim to finish.
    Merge {
        /// Groups an earlier attempt published.
        done: GroupMask,
        /// The claim's owner token (with a claim table).
        owner: Option<String>,
    },
    /// Published whole already: skip it.
    Skip,
    /// Cannot be handled now: fail its record.
    Fail,
}

/// Per record (by batch index), its decoded partials and their ids.
pub type DecodedBatch = Vec<Vec<(Source, Partial, PartialId)>>;

/// Decode every record, skipping (counting, logging) poison records.
pub fn decode_batch(
    decoder: &Decoder,
    records: &[InputRecord],
    stats: &mut BatchStats,
) -> DecodedBatch {
    let mut out: DecodedBatch = Vec::with_capacity(records.len());
    for record in records {
        let decoded = match decoder.decode(&record.data, &record.sequence_number) {
            Ok(d) => d,
            Err(e) => {
                stats.poison += 1;
                tracing::error!(
                    sequence_number = %record.sequence_number,
                    partition_key = %record.partition_key,
                    bytes = record.data.len(),
                    first_bytes = %hex_prefix(&record.data, 16),
                    error = %e,
                    "poison record skipped"
                );
                out.push(Vec::new());
                continue;
            }
        };
        stats.kpl_inner += decoded.kpl_inner;
        stats.lines += decoded.lines;
        stats.rejected_lines += decoded.rejected_lines;
        if decoded.rejected_lines > 0 {
            tracing::warn!(
                sequence_number = %record.sequence_number,
                rejected_lines = decoded.rejected_lines,
                samples = ?decoded.reject_samples,
                "lines of a raw or JSON record did not parse"
            );
        }
        out.push(
            decoded
                .partials
                .into_iter()
                .map(|(source, partial)| {
                    let id = PartialId::of(&partial, &record.data);
                    (source, partial, id)
                })
                .collect(),
        );
    }
    out
}

/// Admissions from this process's memory alone.
pub fn local_admissions(
    seen: &SeenPartials,
    decoded: &DecodedBatch,
) -> HashMap<PartialId, Admission> {
    let mut out = HashMap::new();
    for (_, _, id) in decoded.iter().flatten() {
        let admission = match seen.progress(id) {
            Some(Progress::Complete) => Admission::Skip,
            Some(Progress::Partly(done)) => Admission::Merge {
                done: done.clone(),
                owner: None,
            },
            None => Admission::Merge {
                done: GroupMask::default(),
                owner: None,
            },
        };
        out.insert(id.clone(), admission);
    }
    out
}

fn hex_prefix(data: &[u8], n: usize) -> String {
    data.iter().take(n).map(|b| format!("{b:02x}")).collect()
}
