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

use crate::ingest::batch::{decode_batch, local_admissions, Admission, BatchStats, InputRecord};
use crate::ingest::decode::Decoder;
use crate::ingest::idempotency::{Claim, ClaimStore, Finish, DEFAULT_LEASE, LEASE_MARGIN};
use crate::join::batch::{log_window, merge_admitted, MergedBatch};
use crate::join::merge::{GroupMask, PartialId, Progress, SeenPartials, Window};
use crate::join::metadata_source::MetadataSource;
use crate::publish::calls::Publisher;
use crate::publish::plan::{add_health, UnitKey};
use crate::publish::tally::store::TallyStore;
use crate::publish::tally::TallyBuilder;

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
    FINISH_BUDGET.as_millis() >= crate::ingest::idempotency::DYNAMODB_OPERATION_TIMEOUT.as_millis(),
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
        Result<Claim, crate::ingest::idempotency::IdempotencyError>,
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
    let wait = Duration::from_millis(last?.saturating_sub(crate::ingest::idempotency::now_ms()))
        + LEASE_SLACK;
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
