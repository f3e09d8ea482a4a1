//! One batch of Kinesis records → metrics, and the list of records that
//! really failed.
//!
//! - A record that cannot be decoded (*poison*) is **not** a failure: it is
//!   skipped, counted and logged with its sequence number; the rest of the
//!   batch goes on. Retrying it could never succeed.
//! - A partial already seen — in this batch, or (bounded memory) in an
//!   earlier batch handled by this process and published successfully — is
//!   not counted again.
//! - A PutMetricData call that fails after retries fails every record that
//!   contributed to one of its datums.
//! - If the metadata file was never loaded (S3 unreachable since start), the
//!   whole batch fails: retried later rather than attributed to `unknown`.
//!
//! Per window, one structured log event (`tailrace_window`) names the
//! busiest source applications with their contact and the top unknown client
//! addresses: the operator's "who do I call".

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Instant, SystemTime};

use serde::Serialize;

use crate::decode::{Decoder, Source};
use crate::merge::{Merger, PartialId, SeenPartials, Window};
use crate::metadata::Metadata;
use crate::metadata_source::MetadataSource;
use crate::publish::{plan, Publisher};

/// Applications named in the per-window log line.
pub const TOP_APPLICATIONS: usize = 10;
/// Unknown client addresses named in the per-window log line.
pub const TOP_UNKNOWN_CLIENTS: usize = 10;
/// Partial ids remembered across batches.
pub const SEEN_CAPACITY: usize = 200_000;

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
    /// Datums not sent because CloudWatch would refuse their timestamp.
    pub unpublishable_datums: usize,
    /// Datums CloudWatch refused as invalid.
    pub dropped_datums: usize,
    /// Records reported as failed.
    pub failed: usize,
}

/// The result of handling a batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Sequence numbers of the records that really failed, in batch order.
    pub failed: Vec<String>,
    /// Counters.
    pub stats: BatchStats,
}

/// Decodes, joins, merges and publishes batches.
pub struct Handler {
    decoder: Decoder,
    metadata: MetadataSource,
    publisher: Publisher,
    seen: Mutex<SeenPartials>,
}

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

impl Handler {
    /// A handler from its parts.
    pub fn new(decoder: Decoder, metadata: MetadataSource, publisher: Publisher) -> Handler {
        Handler {
            decoder,
            metadata,
            publisher,
            seen: Mutex::new(SeenPartials::new(SEEN_CAPACITY)),
        }
    }

    /// The metadata source (for status reports).
    pub fn metadata(&self) -> &MetadataSource {
        &self.metadata
    }

    /// Handle one batch.
    pub async fn handle(&self, records: &[InputRecord]) -> Outcome {
        let started = Instant::now();
        let mut stats = BatchStats {
            records: records.len(),
            ..BatchStats::default()
        };
        if records.is_empty() {
            return Outcome::default();
        }
        let metadata = match self.metadata.current().await {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(error = %e, records = records.len(), "no metadata: failing the batch so it is retried");
                stats.failed = records.len();
                return Outcome {
                    failed: records.iter().map(|r| r.sequence_number.clone()).collect(),
                    stats,
                };
            }
        };

        let MergedBatch {
            merger,
            ids_per_record,
        } = {
            let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            merge_batch(&self.decoder, &seen, records, &metadata, &mut stats)
        };

        let windows = merger.windows();
        stats.windows = windows.len();
        for (window, report) in &windows {
            log_window(*window, report);
        }

        let entries = merger.entries();
        let plan = plan(&entries, SystemTime::now());
        for u in &plan.unpublishable {
            tracing::error!(
                window_start = u.window.start,
                window_secs = u.window.secs,
                service = u.service.as_deref().unwrap_or("*"),
                application = %u.application,
                reason = %u.reason,
                "metrics NOT published: CloudWatch would refuse the timestamp"
            );
        }
        stats.unpublishable_datums = plan.unpublishable_datums;
        let published = self.publisher.publish(&plan).await;
        stats.datums = published.datums;
        stats.calls = published.calls;
        stats.retries = published.retries;
        stats.dropped_datums = published.dropped_datums;

        let failed: BTreeSet<usize> = published.failed_records;
        {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            for (index, ids) in ids_per_record.into_iter().enumerate() {
                if !failed.contains(&index) {
                    for id in ids {
                        seen.insert(id);
                    }
                }
            }
        }
        stats.failed = failed.len();
        let outcome = Outcome {
            failed: failed
                .iter()
                .filter_map(|&i| records.get(i).map(|r| r.sequence_number.clone()))
                .collect(),
            stats,
        };
        tracing::info!(
            stats = %serde_json::to_string(&outcome.stats).unwrap_or_default(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "batch handled"
        );
        outcome
    }
}

/// A batch decoded and merged, before publishing.
pub struct MergedBatch {
    /// The merged metrics and per-window reports.
    pub merger: Merger,
    /// Per record (by batch index), the ids of the partials it contributed.
    pub ids_per_record: Vec<Vec<PartialId>>,
}

/// Decode every record, join client addresses with `metadata` and merge,
/// skipping poison records and partials in `seen` or repeated in the batch:
/// the part of [`Handler::handle`] that needs no I/O. Counts go to `stats`.
pub fn merge_batch(
    decoder: &Decoder,
    seen: &SeenPartials,
    records: &[InputRecord],
    metadata: &Metadata,
    stats: &mut BatchStats,
) -> MergedBatch {
    let mut merger = Merger::new();
    let mut ids_per_record: Vec<Vec<PartialId>> = vec![Vec::new(); records.len()];
    for (index, record) in records.iter().enumerate() {
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
        for (source, partial) in &decoded.partials {
            let id = PartialId::of(partial, &record.data);
            if seen.contains(&id) || !merger.add(index, id.clone(), partial, metadata) {
                stats.duplicates += 1;
                tracing::info!(
                    sequence_number = %record.sequence_number,
                    host_id = %partial.host_id,
                    flow = %partial.flow,
                    sequence = partial.sequence,
                    "replayed partial skipped"
                );
                continue;
            }
            stats.partials += 1;
            stats.rejected_lines += partial.rejected_lines;
            match source {
                Source::Partial => stats.tailrace_partials += 1,
                Source::RawLines => stats.raw_partials += 1,
                Source::AgentJson => stats.json_partials += 1,
            }
            ids_per_record[index].push(id);
        }
    }
    MergedBatch {
        merger,
        ids_per_record,
    }
}

fn log_window(window: Window, report: &crate::merge::WindowReport) {
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
        window_time = %rfc3339(window.start),
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

fn hex_prefix(data: &[u8], n: usize) -> String {
    data.iter().take(n).map(|b| format!("{b:02x}")).collect()
}

/// `secs` since the epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(971_211_336), "2000-10-10T20:55:36Z");
        assert_eq!(rfc3339(1_709_164_800), "2024-02-29T00:00:00Z");
    }
}
