//! Exactly-once counts across Lambda execution environments: durable claims
//! of partials in DynamoDB, with conditional writes and a TTL (the pattern of
//! Powertools for AWS Lambda's idempotency utility: an `INPROGRESS` record
//! with a lease, made `COMPLETED` after the work, taken over only once its
//! lease expired).
//!
//! A failed Kinesis batch is retried by whichever environment is free, and a
//! replay (`replay`) runs in yet another process: the in-process memory
//! (`merge::SeenPartials`) cannot see what they did. Every partial the
//! handler would merge is therefore claimed here first, by its id
//! `(host, flow, sequence, content hash)` (`merge::PartialId`).
//!
//! # Table
//!
//! On-demand, partition key `id` (string), TTL attribute `expiration`
//! (epoch seconds). One item per partial:
//!
//! | attribute | meaning |
//! |---|---|
//! | `id` | `p#` + host, flow (each length-prefixed), sequence, content hash |
//! | `status` | `INPROGRESS`, `PARTLY` or `COMPLETED` |
//! | `owner` | the attempt holding an `INPROGRESS` lease |
//! | `in_progress_expiration` | end of that lease, epoch milliseconds |
//! | `groups` | binary: which client groups were published (`merge::GroupMask`) |
//! | `finished_by` | the attempt whose finish set `PARTLY`/`COMPLETED` |
//! | `expiration` | epoch seconds after which DynamoDB may delete the item |
//!
//! # States of one partial
//!
//! ```text
//!            claim (conditional UpdateItem)
//!  (absent) ───────────────────────────────▶ INPROGRESS(owner, lease, groups)
//!  PARTLY(groups) ─────────────────────────▶      │
//!  INPROGRESS with lease expired ──────────▶      │ publish the groups not in `groups`
//!                                                 ├── every unit published ──▶ COMPLETED
//!                                                 └── some unit failed ──────▶ PARTLY(groups ∪ published)
//!  COMPLETED ── claim ──▶ refused: skip (a duplicate)
//!  INPROGRESS, lease live ── claim ──▶ refused (Busy, with the lease's end): the
//!                                      handler waits for it if it ends before its
//!                                      own deadline, else the record fails, comes back
//!  any item past `expiration` ── claim ──▶ granted as if absent
//! ```
//!
//! - The claim is one `UpdateItem` with the condition `attribute_not_exists(id)
//!   OR expiration < now OR (status <> COMPLETED AND in_progress_expiration
//!   < now)`; it returns the old item, whose `groups` say what an earlier,
//!   partly failed attempt already published. Those groups are left out of
//!   the merge, whatever application the current metadata gives them: the
//!   memory is per client group, so a metadata refresh between an attempt
//!   and its retry neither skips a client nor counts it twice.
//! - The finish is one `UpdateItem` conditioned on `owner = us`: if our lease
//!   ran out and another attempt took the partial over, the finish is refused
//!   and said in the log (both attempts may then have published: the one
//!   double count this scheme can make, and only when an attempt outlives
//!   its lease). A finish refused because it was already stored (the SDK
//!   retried a write whose answer timed out) is told apart by
//!   `finished_by`, and is no lost lease. The lease is the invocation's remaining time plus
//!   [`LEASE_MARGIN`] in Lambda, [`DEFAULT_LEASE`] for the local consumer.
//! - A process that dies between claim and finish leaves `INPROGRESS`:
//!   redeliveries fail until the lease expires, then the next one takes the
//!   partial over. If it died *after* PutMetricData succeeded, the partial is
//!   published again (at-least-once, like a PutMetricData call that timed
//!   out on our side yet was stored: see docs/RELIABILITY.md).
//! - A claim that DynamoDB refuses (throttled, unreachable) fails its record:
//!   retried, never published unclaimed.
//! - `expiration` is [`DEFAULT_RETENTION`] (15 days) after the claim by
//!   default. CloudWatch refuses datums older than two weeks, so a partial
//!   whose claim has expired can no longer be published anyway: a replay, at
//!   any time, cannot count it twice.
//!
//! Cost: two writes per partial (claim, finish), one more per redelivery; a
//! host's window is one partial unless it is larger than a Kinesis record or
//! has late lines. Items are small (the id, ~100 bytes, and n/8 bytes of
//! group mask only when partly published): one write request unit each.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ReturnValue,
    ReturnValuesOnConditionCheckFailure, ScalarAttributeType, TableStatus, TimeToLiveSpecification,
};

use crate::join::merge::{GroupMask, PartialId};

/// One DynamoDB attempt (a claim, a finish) gives up after this.
pub const DYNAMODB_ATTEMPT_TIMEOUT: Duration = Duration::from_millis(1500);
/// One DynamoDB operation, its SDK retries included, gives up after this:
/// the claims' finishes run after the publish, within the handler's
/// `FINISH_BUDGET` (which must not be shorter).
pub const DYNAMODB_OPERATION_TIMEOUT: Duration = Duration::from_secs(3);

/// The table's partition key.
pub const KEY: &str = "id";
/// The table's TTL attribute (epoch seconds).
pub const TTL_ATTRIBUTE: &str = "expiration";
/// How long a claim is kept by default.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(15 * 86_400);
/// Lease of a claim when there is no invocation deadline (local consumer,
/// replay).
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);
/// Added to the invocation's remaining time to make a Lambda claim's lease.
pub const LEASE_MARGIN: Duration = Duration::from_secs(5);

const STATUS: &str = "status";
const OWNER: &str = "owner";
const LEASE: &str = "in_progress_expiration";
const GROUPS: &str = "groups";
/// The attempt whose finish set the status: tells the SDK's retry of a
/// stored finish from a finish refused because another attempt took over.
const FINISHED_BY: &str = "finished_by";
const IN_PROGRESS: &str = "INPROGRESS";
const PARTLY: &str = "PARTLY";
const COMPLETED: &str = "COMPLETED";

/// Errors of the claim table.
#[derive(Debug, thiserror::Error)]
pub enum IdempotencyError {
    /// A DynamoDB call failed.
    #[error("DynamoDB {operation} on table {table}: {message}")]
    DynamoDb {
        /// The operation.
        operation: &'static str,
        /// The table.
        table: String,
        /// What DynamoDB (or the connection) said.
        message: String,
    },
    /// The table did not become active in time.
    #[error("DynamoDB table {0} did not become ACTIVE within 60 s")]
    NotActive(String),
}

/// The answer to a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Ours: publish the groups not in the mask (published by an earlier
    /// attempt), then [`ClaimStore::finish`] with `owner`.
    Granted {
        /// Groups already published.
        done: GroupMask,
        /// The token of this attempt.
        owner: String,
    },
    /// Published whole already: skip.
    Completed,
    /// Another attempt holds a live lease: wait for its end (the handler
    /// does when it ends before its own deadline) or fail the record so it
    /// comes back.
    Busy {
        /// When that lease ends, epoch milliseconds (the holder's clock),
        /// if the item says.
        lease_end_ms: Option<u64>,
    },
}

/// How a finish went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// Recorded.
    Recorded,
    /// Our lease had expired and another attempt owns the partial now.
    LeaseLost,
}

/// The DynamoDB claim table.
#[derive(Debug)]
pub struct ClaimStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
    retention: Duration,
    process: String,
    attempts: AtomicU64,
    writes: AtomicU64,
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// The item key of a partial. Host and flow are length-prefixed so no two
/// ids share a key; a key over 1,024 bytes (DynamoDB allows 2,048) uses a
/// 128-bit hash of host and flow instead.
pub fn item_key(id: &PartialId) -> String {
    let key = format!(
        "p#{}:{}#{}:{}#{}#{:016x}",
        id.host_id.len(),
        id.host_id,
        id.flow.len(),
        id.flow,
        id.sequence,
        id.content
    );
    if key.len() <= 1024 {
        return key;
    }
    let hash = xxhash_rust::xxh3::xxh3_128(format!("{}\0{}", id.host_id, id.flow).as_bytes());
    format!("h#{hash:032x}#{}#{:016x}", id.sequence, id.content)
}

impl ClaimStore {
    /// Claims in `table`, kept for `retention`.
    pub fn new(
        client: aws_sdk_dynamodb::Client,
        table: impl Into<String>,
        retention: Duration,
    ) -> ClaimStore {
        let seed = format!(
            "{}-{}-{:?}",
            std::process::id(),
            now_ms(),
            std::thread::current().id()
        );
        ClaimStore {
            client,
            table: table.into(),
            retention,
            process: format!("{:016x}", xxhash_rust::xxh3::xxh3_64(seed.as_bytes())),
            attempts: AtomicU64::new(0),
            writes: AtomicU64::new(0),
        }
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// DynamoDB writes made so far (claims and finishes, refused or not).
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    fn error(&self, operation: &'static str, e: impl std::fmt::Display) -> IdempotencyError {
        IdempotencyError::DynamoDb {
            operation,
            table: self.table.clone(),
            message: e.to_string(),
        }
    }

    /// Create the table if it does not exist: on demand, key [`KEY`], TTL on
    /// [`TTL_ATTRIBUTE`]; wait until it is active. For the local consumer
    /// (the stack creates the Lambda's table).
    pub async fn ensure_table(&self) -> Result<(), IdempotencyError> {
        let describe = self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await;
        match describe {
            Ok(_) => return self.wait_active().await,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) => {}
            Err(e) => return Err(self.error("DescribeTable", sdk_message(&e))),
        }
        let attribute = AttributeDefinition::builder()
            .attribute_name(KEY)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(|e| self.error("CreateTable", e))?;
        let key = KeySchemaElement::builder()
            .attribute_name(KEY)
            .key_type(KeyType::Hash)
            .build()
            .map_err(|e| self.error("CreateTable", e))?;
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .attribute_definitions(attribute)
            .key_schema(key)
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await;
        match created {
            Ok(_) => {
                tracing::info!(table = %self.table, "created the idempotency table (on demand)")
            }
            // Another process created it meanwhile.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_in_use_exception()) => {}
            Err(e) => return Err(self.error("CreateTable", sdk_message(&e))),
        }
        self.wait_active().await?;
        let ttl = TimeToLiveSpecification::builder()
            .enabled(true)
            .attribute_name(TTL_ATTRIBUTE)
            .build()
            .map_err(|e| self.error("UpdateTimeToLive", e))?;
        if let Err(e) = self
            .client
            .update_time_to_live()
            .table_name(&self.table)
            .time_to_live_specification(ttl)
            .send()
            .await
        {
            // Already enabled by a concurrent creator: fine; anything else is not.
            let msg = sdk_message(&e);
            if !msg.contains("already enabled") {
                return Err(self.error("UpdateTimeToLive", msg));
            }
        }
        Ok(())
    }

    async fn wait_active(&self) -> Result<(), IdempotencyError> {
        for _ in 0..60 {
            let out = self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await
                .map_err(|e| self.error("DescribeTable", sdk_message(&e)))?;
            if out.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        Err(IdempotencyError::NotActive(self.table.clone()))
    }

    /// Claim `id` for `lease`.
    pub async fn claim(&self, id: &PartialId, lease: Duration) -> Result<Claim, IdempotencyError> {
        let now = now_ms();
        let owner = format!(
            "{}-{}",
            self.process,
            self.attempts.fetch_add(1, Ordering::Relaxed)
        );
        let expiration = (now / 1000).saturating_add(self.retention.as_secs());
        self.writes.fetch_add(1, Ordering::Relaxed);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY, AttributeValue::S(item_key(id)))
            .update_expression("SET #s = :inprogress, #o = :owner, #l = :lease, #e = :expiration")
            .condition_expression(
                "attribute_not_exists(#k) OR #e < :now_s OR (#s <> :completed AND #l < :now_ms)",
            )
            .expression_attribute_names("#k", KEY)
            .expression_attribute_names("#s", STATUS)
            .expression_attribute_names("#o", OWNER)
            .expression_attribute_names("#l", LEASE)
            .expression_attribute_names("#e", TTL_ATTRIBUTE)
            .expression_attribute_values(":inprogress", AttributeValue::S(IN_PROGRESS.into()))
            .expression_attribute_values(":completed", AttributeValue::S(COMPLETED.into()))
            .expression_attribute_values(":owner", AttributeValue::S(owner.clone()))
            .expression_attribute_values(":lease", n(now.saturating_add(lease.as_millis() as u64)))
            .expression_attribute_values(":expiration", n(expiration))
            .expression_attribute_values(":now_s", n(now / 1000))
            .expression_attribute_values(":now_ms", n(now))
            .return_values(ReturnValue::AllOld)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(out) => {
                let old = out.attributes();
                // An expired item is as good as absent: its groups are void.
                let expired = old
                    .and_then(|a| number(a, TTL_ATTRIBUTE))
                    .is_some_and(|e| e < now / 1000);
                let done = match old.and_then(|a| a.get(GROUPS)) {
                    Some(AttributeValue::B(b)) if !expired => {
                        GroupMask::from_bytes(b.as_ref().to_vec())
                    }
                    _ => GroupMask::default(),
                };
                Ok(Claim::Granted { done, owner })
            }
            Err(e) if is_condition_failed(&e) => {
                let item = self.refused_item(id, &e).await?;
                let status = item.as_ref().and_then(|i| match i.get(STATUS) {
                    Some(AttributeValue::S(s)) => Some(s.as_str()),
                    _ => None,
                });
                Ok(if status == Some(COMPLETED) {
                    Claim::Completed
                } else {
                    Claim::Busy {
                        lease_end_ms: item.as_ref().and_then(|i| number(i, LEASE)),
                    }
                })
            }
            Err(e) => Err(self.error("UpdateItem", sdk_message(&e))),
        }
    }

    /// The item a conditional UpdateItem was refused on: the one the
    /// refusal returned (`ReturnValuesOnConditionCheckFailure`), else read
    /// (not every emulator returns it).
    async fn refused_item<R>(
        &self,
        id: &PartialId,
        e: &SdkError<UpdateItemError, R>,
    ) -> Result<Option<HashMap<String, AttributeValue>>, IdempotencyError> {
        match e.as_service_error() {
            Some(UpdateItemError::ConditionalCheckFailedException(c)) if c.item().is_some() => {
                Ok(c.item().cloned())
            }
            _ => self.read(id).await,
        }
    }

    async fn read(
        &self,
        id: &PartialId,
    ) -> Result<Option<HashMap<String, AttributeValue>>, IdempotencyError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(KEY, AttributeValue::S(item_key(id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.error("GetItem", sdk_message(&e)))?;
        Ok(out.item().cloned())
    }

    /// Record what the attempt `owner` published of `id`: `done` groups, all
    /// of them if `complete`. Releases the lease either way.
    pub async fn finish(
        &self,
        id: &PartialId,
        owner: &str,
        done: &GroupMask,
        complete: bool,
    ) -> Result<Finish, IdempotencyError> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        let status = if complete { COMPLETED } else { PARTLY };
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY, AttributeValue::S(item_key(id)))
            .update_expression("SET #s = :status, #g = :groups, #l = :zero, #f = :owner REMOVE #o")
            .condition_expression("#o = :owner")
            .expression_attribute_names("#s", STATUS)
            .expression_attribute_names("#g", GROUPS)
            .expression_attribute_names("#l", LEASE)
            .expression_attribute_names("#o", OWNER)
            .expression_attribute_names("#f", FINISHED_BY)
            .expression_attribute_values(":status", AttributeValue::S(status.into()))
            .expression_attribute_values(
                ":groups",
                AttributeValue::B(Blob::new(if complete {
                    Vec::new()
                } else {
                    done.as_bytes().to_vec()
                })),
            )
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":owner", AttributeValue::S(owner.into()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(Finish::Recorded),
            Err(e) if is_condition_failed(&e) => {
                let item = self.refused_item(id, &e).await?;
                // The SDK retries a write whose answer timed out: when the
                // first try was stored, the retry finds its own finish (the
                // owner removed, `finished_by` us), not a lost lease.
                let ours = item.as_ref().is_some_and(|i| {
                    !i.contains_key(OWNER)
                        && matches!(i.get(FINISHED_BY), Some(AttributeValue::S(f)) if f == owner)
                });
                Ok(if ours {
                    Finish::Recorded
                } else {
                    Finish::LeaseLost
                })
            }
            Err(e) => Err(self.error("UpdateItem", sdk_message(&e))),
        }
    }
}

fn number(item: &HashMap<String, AttributeValue>, name: &str) -> Option<u64> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v.parse().ok(),
        _ => None,
    }
}

fn is_condition_failed<R>(e: &SdkError<UpdateItemError, R>) -> bool {
    e.as_service_error()
        .is_some_and(|s| s.is_conditional_check_failed_exception())
}

/// An SDK error with the service's code and message, not just "service error".
fn sdk_message<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    e: &SdkError<E, R>,
) -> String {
    match e.as_service_error() {
        Some(s) => format!(
            "{}: {}",
            s.code().unwrap_or("unknown error"),
            s.message().unwrap_or_default()
        ),
        None => format!("{}", aws_sdk_dynamodb::error::DisplayErrorContext(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(host: &str, flow: &str) -> PartialId {
        PartialId {
            host_id: host.into(),
            flow: flow.into(),
            sequence: 3,
            content: 0xabc,
        }
    }

    #[test]
    fn item_keys_are_unambiguous_and_bounded() {
        assert_ne!(item_key(&id("a#1", "b")), item_key(&id("a", "1#b")));
        assert_eq!(item_key(&id("h", "f")), "p#1:h#1:f#3#0000000000000abc");
        let long = item_key(&id(&"x".repeat(3000), "f"));
        assert!(long.len() < 100 && long.starts_with("h#"), "{long}");
        assert_ne!(long, item_key(&id(&"x".repeat(3001), "f")));
    }
}
