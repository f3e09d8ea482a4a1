//! An admitted batch joined and merged: each partial's client addresses
//! joined with the metadata table and merged per (window, service,
//! application) ([`merge_admitted`]; [`merge_batch`] is the whole of it
//! without I/O, for benches and tests), with what each partial contributed
//! ([`Contribution`]), so a failed publish fails exactly the records behind
//! it; and per window the "who do I call" log line ([`log_window`]).

use std::collections::HashMap;

use serde::Serialize;
use tailrace_logformat::rfc3339_utc;

use crate::ingest::batch::{
    decode_batch, local_admissions, Admission, BatchStats, DecodedBatch, InputRecord,
};
use crate::ingest::decode::{Decoder, Source};
use crate::join::merge::{Contributed, GroupMask, Merger, PartialId, SeenPartials, Window};
use crate::join::metadata::Metadata;

/// Applications named in the per-window log line.
pub const TOP_APPLICATIONS: usize = 10;

/// Unknown client addresses named in the per-window log line.
pub const TOP_UNKNOWN_CLIENTS: usize = 10;

#[derive(Serialize)]
struct TopApp<'a> {
    application: &'a str,
    contact: &'a str,
    requests: u64,
    bytes: u64,
    client_errors: u64,
    server_errors: u64,
}

#[derive(Serialize)]
struct TopClient<'a> {
    client: &'a str,
    requests: u64,
    bytes: u64,
}

/// What one partial added to a batch's merge.
#[derive(Debug, Clone)]
pub struct Contribution {
    /// The partial.
    pub id: PartialId,
    /// Its window.
    pub window: Window,
    /// What it added in this batch.
    pub contributed: Contributed,
    /// The client groups an earlier, partly failed attempt already published.
    pub published_before: GroupMask,
    /// The owner of its claim (with a claim table).
    pub owner: Option<String>,
}

/// A batch decoded and merged, before publishing.
pub struct MergedBatch {
    /// The merged metrics and per-window reports.
    pub merger: Merger,
    /// Per record (by batch index), what its partials contributed.
    pub contributions: Vec<Vec<Contribution>>,
}

/// Decode every record, join client addresses with `metadata` and merge,
/// skipping poison records and partials in `seen` or repeated in the batch:
/// the part of `Handler::handle` that needs no I/O. Counts go to `stats`.
pub fn merge_batch(
    decoder: &Decoder,
    seen: &SeenPartials,
    records: &[InputRecord],
    metadata: &Metadata,
    stats: &mut BatchStats,
) -> MergedBatch {
    let decoded = decode_batch(decoder, records, stats);
    let admissions = local_admissions(seen, &decoded);
    merge_admitted(&decoded, &admissions, metadata, stats)
}

/// Join and merge the partials `admissions` let in.
pub fn merge_admitted(
    decoded: &DecodedBatch,
    admissions: &HashMap<PartialId, Admission>,
    metadata: &Metadata,
    stats: &mut BatchStats,
) -> MergedBatch {
    let mut merger = Merger::new();
    let mut contributions: Vec<Vec<Contribution>> = vec![Vec::new(); decoded.len()];
    for (index, partials) in decoded.iter().enumerate() {
        for (source, partial, id) in partials {
            let (before, owner) = match admissions.get(id) {
                Some(Admission::Merge { done, owner }) => (done, owner),
                Some(Admission::Fail) => continue,
                Some(Admission::Skip) | None => {
                    stats.duplicates += 1;
                    tracing::info!(
                        host_id = %partial.host_id,
                        flow = %partial.flow,
                        sequence = partial.sequence,
                        "replayed partial skipped"
                    );
                    continue;
                }
            };
            let Some(contributed) = merger.add_except(index, id.clone(), partial, metadata, before)
            else {
                stats.duplicates += 1;
                tracing::info!(
                    host_id = %partial.host_id,
                    flow = %partial.flow,
                    sequence = partial.sequence,
                    "partial repeated in the batch skipped"
                );
                continue;
            };
            // Resumed: some group with requests was published before (an
            // empty overflow counts as done from the start, not as resumed).
            let overflow = partial.groups.len();
            let published_before = (0..overflow).any(|i| before.contains(i))
                || (partial.overflow.requests > 0 && before.contains(overflow));
            if published_before {
                stats.resumed += 1;
                tracing::info!(
                    host_id = %partial.host_id,
                    flow = %partial.flow,
                    sequence = partial.sequence,
                    "partly published partial: merging the rest only"
                );
            }
            stats.partials += 1;
            stats.rejected_lines += partial.rejected_lines;
            match source {
                Source::Partial => stats.tailrace_partials += 1,
                Source::RawLines => stats.raw_partials += 1,
                Source::AgentJson => stats.json_partials += 1,
            }
            contributions[index].push(Contribution {
                id: id.clone(),
                window: Window {
                    start: partial.window_start,
                    secs: partial.window_secs,
                },
                contributed,
                published_before: before.clone(),
                owner: owner.clone(),
            });
        }
    }
    MergedBatch {
        merger,
        contributions,
    }
}

/// Log the window's busiest applications with their contact and its top
/// unknown client addresses: the operator's "who do I call".
pub fn log_window(window: Window, report: &crate::join::merge::WindowReport) {
    let apps: Vec<TopApp<'_>> = report
        .top_applications(TOP_APPLICATIONS)
        .into_iter()
        .map(|(application, t)| TopApp {
            application,
            contact: &t.contact,
            requests: t.requests,
            bytes: t.bytes,
            client_errors: t.client_errors,
            server_errors: t.server_errors,
        })
        .collect();
    let unknown: Vec<TopClient<'_>> = report
        .top_unknown_clients(TOP_UNKNOWN_CLIENTS)
        .into_iter()
        .map(|(client, t)| TopClient {
            client,
            requests: t.requests,
            bytes: t.bytes,
        })
        .collect();
    tracing::info!(
        target: "tailrace_window",
        window_start = window.start,
        window_time = %rfc3339_utc(window.start),
        window_secs = window.secs,
        requests = report.requests(),
        applications = report.applications.len(),
        top_applications = %serde_json::to_string(&apps).unwrap_or_default(),
        top_unknown_clients = %serde_json::to_string(&unknown).unwrap_or_default(),
        unknown_clients = report.unknown_clients.len(),
        overflow_requests = report.overflow_requests,
        partials = report.partials,
        late_partials = report.late_partials,
        hosts = report.hosts.len(),
        rejected_lines = report.rejected_lines,
        "who do I call"
    );
}
