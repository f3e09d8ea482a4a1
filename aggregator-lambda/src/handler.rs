//! One batch of Kinesis records → metrics, and the list of records that
//! really failed.
//!
//! - A record that cannot be decoded (*poison*) is **not** a failure: it is
//!   skipped, counted and logged with its sequence number; the rest of the
//!   batch goes on. Retrying it could never succeed.
//! - Poison records show in the `PoisonRecords` health metric and in the
//!   `poison record skipped` log event (sequence number, partition key, size,
//!   first bytes, reason); a record redelivered by a retry is counted again.
//! - A partial already seen — in this batch, or (bounded memory) in an
//!   earlier batch handled by this process and published successfully — is
//!   not counted again.
//! - A PutMetricData call that fails after retries fails every record that
//!   contributed to one of its units (window, application). The client
//!   groups of a failed record that *were* published are remembered per
//!   partial, so when the record comes back only the rest is published: no
//!   double count.
//! - With a claim table (`TAILRACE_IDEMPOTENCY_TABLE`, see `idempotency`)
//!   that memory is in DynamoDB: every partial is claimed before it is
//!   merged and finished after the publish, so a retry or a replay handled
//!   by another execution environment or process is not counted twice
//!   either. A partial another attempt is working on (live lease), or whose
//!   claim DynamoDB refused, fails its record: it comes back later. Without
//!   the table the memory lives in the process only: a retry handled by a
//!   fresh Lambda environment publishes the record whole again (over-count,
//!   never a loss; see docs/RELIABILITY.md "Aggregator faults").
//! - If the metadata file was never loaded (S3 unreachable, bucket or object
//!   missing since start), the whole batch fails: retried later rather than
//!   attributed to `unknown` (which would be wrong for good) or dropped. A
//!   table kept after a failed refresh is used and the batch reports
//!   `MetadataStale`.
//!
//! Per window, one structured log event (`tailrace_window`) names the
//! busiest source applications with their contact and the top unknown client
//! addresses: the operator's "who do I call".

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use tailrace_logformat::rfc3339_utc;
use tailrace_wire::Partial;

use crate::decode::{Decoder, Source};
use crate::idempotency::{Claim, ClaimStore, Finish, DEFAULT_LEASE, LEASE_MARGIN};
use crate::merge::{Contributed, GroupMask, Merger, PartialId, Progress, SeenPartials, Window};
use crate::metadata::Metadata;
use crate::metadata_source::MetadataSource;
use crate::publish::calls::Publisher;
use crate::publish::plan::{add_health, UnitKey};
use crate::tally::store::TallyStore;
use crate::tally::TallyBuilder;

/// Applications named in the per-window log line.
pub const TOP_APPLICATIONS: usize = 10;
/// Unknown client addresses named in the per-window log line.
pub const TOP_UNKNOWN_CLIENTS: usize = 10;
/// Partial ids remembered across batches.
pub const SEEN_CAPACITY: usize = 200_000;
/// DynamoDB claims or finishes in flight at once.
pub const CLAIM_CONCURRENCY: usize = 32;
/// Time reserved, before the invocation's deadline, for the bookkeeping that
/// follows the publish: the claim finishes (and any write made beside them).
/// Publishing stops this much, plus the publisher's `DEADLINE_MARGIN`,
/// before the deadline: a slow batch is then reported (its unpublished
/// records failed, its published partials finished) instead of timing out
/// after its metrics were stored, which would fail the whole batch and,
/// once the claims' leases end, publish it again (PutMetricData has no
/// idempotency token). It covers one DynamoDB operation's whole timeout
/// (`idempotency::DYNAMODB_OPERATION_TIMEOUT`, retries included); the finishes
/// run [`CLAIM_CONCURRENCY`] at a time.
pub const FINISH_BUDGET: Duration = Duration::from_secs(3);
const _: () = assert!(
    FINISH_BUDGET.as_millis() >= crate::idempotency::DYNAMODB_OPERATION_TIMEOUT.as_millis(),
    "FINISH_BUDGET must cover one DynamoDB operation"
);
/// The bookkeeping is cut this long before the deadline, so the handler
/// still answers (a finish not recorded then leaves its claim leased).
pub const ANSWER_MARGIN: Duration = Duration::from_millis(300);
/// Waited past a busy claim's lease end before claiming it again (clocks
/// of two environments differ a little).
pub const LEASE_SLACK: Duration = Duration::from_millis(200);
/// Time a batch still needs after a wait for a busy lease (merge, publish)
/// for the wait to be worth it; else its records fail and come back.
pub const WORK_AFTER_WAIT: Duration = Duration::from_secs(5);

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
    claims: Option<Arc<ClaimStore>>,
    lease: Duration,
    tallies: Option<TallyStore>,
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
            claims: None,
            lease: DEFAULT_LEASE,
            tallies: None,
        }
    }

    /// Write the client tallies of every published unit to `store` (the
    /// notifier's top addresses; see `tally`).
    pub fn with_tallies(mut self, store: TallyStore) -> Handler {
        self.tallies = Some(store);
        self
    }

    /// Claim every partial in `store` before publishing it (exactly-once
    /// across processes; see `idempotency`). `lease` bounds a claim when
    /// the batch has no deadline (the Lambda's claims last until the
    /// invocation's deadline plus `idempotency::LEASE_MARGIN`).
    pub fn with_claims(mut self, store: ClaimStore, lease: Duration) -> Handler {
        self.claims = Some(Arc::new(store));
        self.lease = lease;
        self
    }

    /// The claim table, if any.
    pub fn claims(&self) -> Option<&ClaimStore> {
        self.claims.as_deref()
    }

    /// The metadata source (for status reports).
    pub fn metadata(&self) -> &MetadataSource {
        &self.metadata
    }

    /// Handle one batch.
    pub async fn handle(&self, records: &[InputRecord]) -> Outcome {
        self.handle_until(records, None).await
    }

    /// Handle one batch, publishing before `deadline` (the Lambda
    /// invocation's): what cannot be published in time is reported failed.
    pub async fn handle_until(
        &self,
        records: &[InputRecord],
        deadline: Option<Instant>,
    ) -> Outcome {
        let started = Instant::now();
        let mut stats = BatchStats {
            records: records.len(),
            ..BatchStats::default()
        };
        if records.is_empty() {
            return Outcome::default();
        }
        let metadata = match self.metadata.serve().await {
            Ok(served) => {
                if let Some(why) = &served.stale {
                    stats.metadata_stale = true;
                    tracing::warn!(reason = %why, "using a stale metadata table");
                }
                served.table
            }
            Err(e) => {
                tracing::error!(error = %e, records = records.len(), "no metadata: failing the batch so it is retried");
                stats.failed = records.len();
                return Outcome {
                    failed: records.iter().map(|r| r.sequence_number.clone()).collect(),
                    stats,
                };
            }
        };

        let decoded = decode_batch(&self.decoder, records, &mut stats);
        let mut failed: BTreeSet<usize> = BTreeSet::new();
        let admissions = {
            let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            local_admissions(&seen, &decoded)
        };
        let admissions = match &self.claims {
            Some(store) => {
                let lease = deadline.map_or(self.lease, |d| {
                    d.saturating_duration_since(Instant::now()) + LEASE_MARGIN
                });
                self.claim_all(store, admissions, lease, deadline, &mut stats)
                    .await
            }
            None => admissions,
        };
        let MergedBatch {
            merger,
            contributions,
        } = merge_admitted(&decoded, &admissions, &metadata, &mut stats);
        for (index, partials) in decoded.iter().enumerate() {
            if partials
                .iter()
                .any(|(_, _, id)| matches!(admissions.get(id), Some(Admission::Fail)))
            {
                failed.insert(index);
            }
        }

        let windows = merger.windows();
        stats.windows = windows.len();
        for (window, report) in &windows {
            log_window(*window, report);
        }

        let entries = merger.entries();
        let now = SystemTime::now();
        let mut plan = self.publisher.plan(&entries, now);
        add_health(
            &mut plan,
            stats.poison,
            stats.rejected_lines,
            stats.metadata_stale,
            now,
        );
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
        // Stop publishing in time for the bookkeeping after it (FINISH_BUDGET).
        let publish_deadline = deadline.map(|d| d.checked_sub(FINISH_BUDGET).unwrap_or(d));
        let published = self.publisher.publish_until(&plan, publish_deadline).await;
        let finish_started = Instant::now();
        stats.datums = published.datums;
        stats.calls = published.calls;
        stats.retries = published.retries;
        stats.failed_calls = published.failed_calls;
        stats.dropped_datums = published.dropped_datums;
        stats.split_units = published.split_units;

        // A record fails if a unit it contributed to failed; per partial, the
        // client groups that were published are remembered.
        let mut failed_units: HashSet<(Window, &str)> = HashSet::new();
        for unit in published
            .failed_units
            .iter()
            .filter_map(|&i| plan.units.get(i))
        {
            failed.extend(unit.contributors.iter().copied());
            if let UnitKey::Metrics {
                window,
                application,
            } = &unit.key
            {
                failed_units.insert((*window, application));
            }
        }
        let tallies = self.tallies.as_ref().map(|_| {
            let mut builder = TallyBuilder::new();
            for (index, contributed) in contributions.iter().enumerate() {
                for c in contributed {
                    let partial = decoded
                        .get(index)
                        .and_then(|ps| ps.iter().find(|(_, _, id)| *id == c.id));
                    if let Some((_, partial, id)) = partial {
                        builder.add(partial, id, &c.contributed, |app| {
                            !failed_units.contains(&(c.window, app))
                        });
                    }
                }
            }
            builder.finish()
        });
        let mut finishes = Vec::new();
        {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            for c in contributions.into_iter().flatten() {
                let done = c.contributed.settled(&c.published_before, |app| {
                    failed_units.contains(&(c.window, app))
                });
                let complete = done.is_full(c.contributed.groups());
                if let Some(owner) = c.owner {
                    finishes.push((c.id.clone(), owner, done.clone(), complete));
                }
                seen.set(
                    c.id,
                    if complete {
                        Progress::Complete
                    } else {
                        Progress::Partly(done)
                    },
                );
            }
        }
        // The claims' finishes and the client tallies go out side by side:
        // both are bookkeeping of what was just published, within
        // FINISH_BUDGET, cut short of the deadline.
        let cut = deadline.map(|d| d.checked_sub(ANSWER_MARGIN).unwrap_or(d));
        let finish = async {
            let Some(store) = &self.claims else {
                return;
            };
            let pending = finishes.len();
            let finish = self.finish_all(store, finishes, &mut stats);
            match cut {
                Some(cut) => {
                    if tokio::time::timeout_at(cut.into(), finish).await.is_err() {
                        stats.claim_errors += pending;
                        tracing::error!(pending, "the deadline came before every published partial was recorded: their claims stay leased, and a redelivery after the lease may count them again");
                    }
                }
                None => finish.await,
            }
        };
        let write_tallies = async {
            let (Some(store), Some(tallies)) = (&self.tallies, tallies) else {
                return (0, 0);
            };
            let n = tallies.len();
            let put = store.put_all(tallies);
            let errors = match cut {
                Some(cut) => match tokio::time::timeout_at(cut.into(), put).await {
                    Ok(errors) => errors.into_iter().map(|e| e.to_string()).collect(),
                    Err(_) => vec![format!("{n} tallies not all written before the deadline")],
                },
                None => put
                    .await
                    .into_iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>(),
            };
            for e in &errors {
                tracing::error!(error = %e, "client tally not written: notifications of its window list fewer addresses");
            }
            (n.saturating_sub(errors.len()), errors.len())
        };
        let ((), (written, unwritten)) = tokio::join!(finish, write_tallies);
        stats.tallies = written;
        stats.tally_errors = unwritten;
        stats.finish_ms = finish_started.elapsed().as_millis() as u64;
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

impl Handler {
    /// Claim every partial admitted locally (not known complete here). A
    /// partial another attempt holds (a timed-out invocation's claim, leased
    /// until its deadline plus `LEASE_MARGIN`) is waited for when the lease
    /// ends early enough to leave [`WORK_AFTER_WAIT`] and [`FINISH_BUDGET`]
    /// before `deadline`, then claimed once more; otherwise its record fails
    /// and comes back (the retries are bounded by record age, not a count).
    async fn claim_all(
        &self,
        store: &Arc<ClaimStore>,
        mut admissions: HashMap<PartialId, Admission>,
        lease: Duration,
        deadline: Option<Instant>,
        stats: &mut BatchStats,
    ) -> HashMap<PartialId, Admission> {
        let ids: Vec<PartialId> = admissions
            .iter()
            .filter(|(_, a)| matches!(a, Admission::Merge { .. }))
            .map(|(id, _)| id.clone())
            .collect();
        let claim = |ids: Vec<PartialId>, lease: Duration| {
            concurrently(ids, move |id| {
                let store = store.clone();
                async move {
                    let claim = store.claim(&id, lease).await;
                    (id, claim)
                }
            })
        };
        let mut results = claim(ids, lease).await;
        if let Some(wait) = busy_wait(&results, deadline) {
            let busy: Vec<PartialId> = results
                .iter()
                .filter(|(_, c)| matches!(c, Ok(Claim::Busy { .. })))
                .map(|(id, _)| id.clone())
                .collect();
            tracing::info!(
                partials = busy.len(),
                wait_ms = wait.as_millis() as u64,
                "partials claimed by another attempt whose lease ends before our deadline: waiting for it"
            );
            tokio::time::sleep(wait).await;
            stats.lease_wait_ms += wait.as_millis() as u64;
            let lease = deadline.map_or(lease, |d| {
                d.saturating_duration_since(Instant::now()) + LEASE_MARGIN
            });
            results.retain(|(_, c)| !matches!(c, Ok(Claim::Busy { .. })));
            results.extend(claim(busy, lease).await);
        }
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        for (id, claim) in results {
            let admission = match claim {
                Ok(Claim::Granted { done, owner }) => Admission::Merge {
                    done,
                    owner: Some(owner),
                },
                Ok(Claim::Completed) => {
                    seen.set(id.clone(), Progress::Complete);
                    Admission::Skip
                }
                Ok(Claim::Busy { .. }) => {
                    stats.busy += 1;
                    tracing::warn!(
                        host_id = %id.host_id,
                        flow = %id.flow,
                        sequence = id.sequence,
                        "partial claimed by another attempt (live lease): its record fails and comes back"
                    );
                    Admission::Fail
                }
                Err(e) => {
                    stats.claim_errors += 1;
                    tracing::error!(error = %e, host_id = %id.host_id, flow = %id.flow, sequence = id.sequence, "claim failed: its record fails and comes back");
                    Admission::Fail
                }
            };
            admissions.insert(id, admission);
        }
        admissions
    }

    /// Record in the claim table what was published of every claimed partial.
    async fn finish_all(
        &self,
        store: &Arc<ClaimStore>,
        finishes: Vec<(PartialId, String, GroupMask, bool)>,
        stats: &mut BatchStats,
    ) {
        let results = concurrently(finishes, |(id, owner, done, complete)| {
            let store = store.clone();
            async move {
                let r = store.finish(&id, &owner, &done, complete).await;
                (id, r)
            }
        })
        .await;
        for (id, r) in results {
            match r {
                Ok(Finish::Recorded) => {}
                Ok(Finish::LeaseLost) => tracing::error!(
                    host_id = %id.host_id,
                    flow = %id.flow,
                    sequence = id.sequence,
                    "claim lease expired before the publish was recorded: another attempt may have counted this partial too"
                ),
                Err(e) => {
                    stats.claim_errors += 1;
                    // The metrics are out: failing the record would publish
                    // them again. The claim stays INPROGRESS until its lease
                    // ends; this process remembers the partial.
                    tracing::error!(error = %e, host_id = %id.host_id, flow = %id.flow, sequence = id.sequence, "could not record a published partial: a redelivery after the lease may count it again");
                }
            }
        }
    }
}

/// How long to wait for the busy claims among `results` to be free: until
/// the last lease ends (plus [`LEASE_SLACK`]), if that leaves
/// [`WORK_AFTER_WAIT`] and [`FINISH_BUDGET`] before `deadline`. `None`:
/// nothing is busy, a lease end is unknown, or there is no deadline (the
/// local consumer and replay retry on their own).
fn busy_wait(
    results: &[(
        PartialId,
        Result<Claim, crate::idempotency::IdempotencyError>,
    )],
    deadline: Option<Instant>,
) -> Option<Duration> {
    let deadline = deadline?;
    let mut last = None;
    for (_, c) in results {
        if let Ok(Claim::Busy { lease_end_ms }) = c {
            last = Some(last.unwrap_or(0).max((*lease_end_ms)?));
        }
    }
    let wait =
        Duration::from_millis(last?.saturating_sub(crate::idempotency::now_ms())) + LEASE_SLACK;
    let needed = wait + WORK_AFTER_WAIT + FINISH_BUDGET;
    (Instant::now() + needed <= deadline).then_some(wait)
}

/// Run `f` on every item, at most [`CLAIM_CONCURRENCY`] at once.
async fn concurrently<T, F, Fut, R>(items: Vec<T>, f: F) -> Vec<R>
where
    F: Fn(T) -> Fut,
    Fut: std::future::Future<Output = R> + Send + 'static,
    R: Send + 'static,
{
    crate::bounded::map_bounded(CLAIM_CONCURRENCY, items, f).await
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
/// the part of [`Handler::handle`] that needs no I/O. Counts go to `stats`.
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

fn hex_prefix(data: &[u8], n: usize) -> String {
    data.iter().take(n).map(|b| format!("{b:02x}")).collect()
}
