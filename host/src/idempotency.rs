//! The idempotency store: remembers which records are done, so a record its event source
//! delivers again (a Kinesis batch retried from its lowest failed record, an SQS message
//! back after its visibility timeout, an S3 notification sent twice, a DLQ entry
//! reprocessed after a crash) is not delivered twice.
//!
//! One DynamoDB item per record identity (its source position, see `Item::position`):
//! - **claim** before the plugin runs: a conditional put that succeeds when no item is
//!   there, or the one there is a claim past its expiry (its holder died) or a done mark
//!   past its TTL (DynamoDB deletes expired items late);
//! - **done** once the record has its final verdict (delivered, dropped, dead-lettered),
//!   kept for the TTL;
//! - **release** (a delete, if the claim is still this process's) when the record is
//!   handed back for a retry, so the retry can claim it at once.
//!
//! A claim expires when its holder's time does (the Lambda invocation's deadline, else
//! `dedup-claim-seconds`): a host killed mid-batch blocks the retry of its records only
//! until then.
//!
//! Claims are parallel conditional `PutItem`s: each record's answer is its own (a
//! `TransactWriteItems` group fails whole on one done record and must be sent again
//! without it), and `./dev bench` measured them faster against the emulator
//! (BENCHMARKS.md, "Idempotency store").

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, PutRequest, ReturnValuesOnConditionCheckFailure, WriteRequest,
};
use futures_util::StreamExt as _;

use crate::aws::{AwsError, describe_error};
use crate::limits::{RetryPolicy, backoff};

/// Claims in flight at once.
const CONCURRENCY: usize = 32;
/// Items per `BatchWriteItem` (the service's limit).
const WRITE_BATCH: usize = 25;
/// Identities longer than this are stored by their hash (a key may have 2048 bytes).
const LONGEST_KEY: usize = 1024;

/// Where the store is: `dynamodb://TABLE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSpec {
    /// The table; its partition key is the string attribute `id`.
    pub table: String,
}

impl std::str::FromStr for StoreSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let table = s
            .strip_prefix("dynamodb://")
            .ok_or_else(|| format!("{s:?}: expected dynamodb://TABLE"))?;
        let valid = (3..=255).contains(&table.len())
            && table
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !valid {
            return Err(format!(
                "{table:?}: a table name is 3 to 255 of a-z, A-Z, 0-9, '_', '-', '.'"
            ));
        }
        Ok(Self {
            table: table.to_owned(),
        })
    }
}

impl std::fmt::Display for StoreSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "dynamodb://{}", self.table)
    }
}

/// What a claim found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Claimed by this run: process the record, then mark it done or release it.
    Ours,
    /// Done by an earlier delivery: a duplicate, not processed again.
    Done,
    /// Claimed by another run whose claim has not expired.
    Busy,
}

/// The store, and how long its marks last.
#[derive(Debug, Clone)]
pub struct Store {
    client: aws_sdk_dynamodb::Client,
    table: String,
    /// How long a done mark is kept.
    ttl: Duration,
    /// Longest a claim lasts (shortened to the run's deadline).
    claim: Duration,
    /// Names this process in its claims (for the logs of whoever finds them).
    owner: String,
}

/// Seconds since the epoch, as DynamoDB's TTL wants them.
fn epoch(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn number(n: u64) -> AttributeValue {
    AttributeValue::N(n.to_string())
}

/// The store's key for an identity: itself, or its hash when too long.
pub fn key_of(identity: &str) -> String {
    if identity.len() <= LONGEST_KEY {
        return identity.to_owned();
    }
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(identity)))
}

impl Store {
    /// The store in `spec`'s table.
    pub fn new(
        client: aws_sdk_dynamodb::Client,
        spec: &StoreSpec,
        ttl: Duration,
        claim: Duration,
    ) -> Self {
        let owner = format!(
            "{}:{}:{:08x}",
            std::env::var("AWS_LAMBDA_LOG_STREAM_NAME").unwrap_or_else(|_| "host".into()),
            std::process::id(),
            fastrand::u32(..)
        );
        Self {
            client,
            table: spec.table.clone(),
            ttl,
            claim,
            owner,
        }
    }

    /// Longest a claim lasts.
    pub fn claim_time(&self) -> Duration {
        self.claim
    }

    fn what(&self) -> String {
        format!("idempotency store dynamodb://{}", self.table)
    }

    /// Claims each identity, until `time_left` at most (the run's deadline): one answer
    /// per identity, in order. An error is the store's, for the whole batch: the claims
    /// this call did make are released first.
    pub async fn claim(
        &self,
        identities: &[String],
        time_left: Option<Duration>,
    ) -> Result<Vec<Claim>, AwsError> {
        let now = SystemTime::now();
        let hold = time_left.map_or(self.claim, |left| left.min(self.claim));
        let expires = epoch(now + hold).max(epoch(now) + 1);
        let answers = futures_util::stream::iter(identities)
            .map(|identity| self.claim_one(identity, epoch(now), expires))
            .buffered(CONCURRENCY)
            .collect::<Vec<_>>()
            .await;
        let Some(error) = answers.iter().find_map(|a| a.as_ref().err()).cloned() else {
            return Ok(answers.into_iter().flatten().collect());
        };
        let made: Vec<String> = identities
            .iter()
            .zip(&answers)
            .filter(|(_, a)| matches!(a, Ok(Claim::Ours)))
            .map(|(identity, _)| identity.clone())
            .collect();
        if let Err(e) = self.release(&made).await {
            tracing::error!(error = %e, records = made.len(), "cannot release the claims of a failed claim call; they expire");
        }
        Err(error)
    }

    async fn claim_one(&self, identity: &str, now: u64, expires: u64) -> Result<Claim, AwsError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("id", AttributeValue::S(key_of(identity)))
            .item("state", AttributeValue::S("claimed".into()))
            .item("owner", AttributeValue::S(self.owner.clone()))
            .item("expires", number(expires))
            .item("ttl", number(expires + self.ttl.as_secs()))
            .condition_expression(
                "attribute_not_exists(id) OR (#state = :claimed AND expires < :now) OR #ttl < :now",
            )
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":claimed", AttributeValue::S("claimed".into()))
            .expression_attribute_values(":now", number(now))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let error = match result {
            Ok(_) => return Ok(Claim::Ours),
            Err(e) => e,
        };
        let failed = match error.as_service_error() {
            Some(PutItemError::ConditionalCheckFailedException(failed)) => failed,
            _ => return Err(AwsError::of(self.what(), &error)),
        };
        let state = match failed.item() {
            Some(item) => item.get("state").and_then(|v| v.as_s().ok()).cloned(),
            // Not every implementation returns the item that failed the condition.
            None => self.state(identity).await?,
        };
        Ok(match state.as_deref() {
            Some("done") => Claim::Done,
            // Claimed by another run (or gone since: the next delivery claims it).
            _ => Claim::Busy,
        })
    }

    /// The state stored for `identity`, read consistently.
    async fn state(&self, identity: &str) -> Result<Option<String>, AwsError> {
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("id", AttributeValue::S(key_of(identity)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| AwsError::of(self.what(), &e))?;
        Ok(item
            .item()
            .and_then(|item| item.get("state"))
            .and_then(|v| v.as_s().ok())
            .cloned())
    }

    /// Marks identities done (their records have their final verdict), kept for the TTL.
    pub async fn done(&self, identities: &[String], retry: RetryPolicy) -> Result<(), AwsError> {
        let expires = number(epoch(SystemTime::now() + self.ttl));
        let requests = identities.iter().map(|identity| {
            let item = HashMap::from([
                ("id".to_owned(), AttributeValue::S(key_of(identity))),
                ("state".to_owned(), AttributeValue::S("done".into())),
                ("ttl".to_owned(), expires.clone()),
            ]);
            PutRequest::builder()
                .set_item(Some(item))
                .build()
                .map(|put| WriteRequest::builder().put_request(put).build())
        });
        let requests = requests
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| AwsError::of(self.what(), &e))?;
        self.write_all(requests, retry).await
    }

    /// Removes this process's claims on identities (handed back for a retry, or held
    /// while waiting). A claim that expired and was taken over is another run's now: the
    /// delete is conditional on the owner, and leaves it.
    pub async fn release(&self, identities: &[String]) -> Result<(), AwsError> {
        let answers = futures_util::stream::iter(identities)
            .map(|identity| async move {
                let deleted = self
                    .client
                    .delete_item()
                    .table_name(&self.table)
                    .key("id", AttributeValue::S(key_of(identity)))
                    .condition_expression("#owner = :me")
                    .expression_attribute_names("#owner", "owner")
                    .expression_attribute_values(":me", AttributeValue::S(self.owner.clone()))
                    .send()
                    .await;
                match deleted {
                    Ok(_) => Ok(()),
                    Err(e)
                        if e.as_service_error().is_some_and(|e| {
                            matches!(e, DeleteItemError::ConditionalCheckFailedException(_))
                        }) =>
                    {
                        Ok(())
                    }
                    Err(e) => Err(AwsError::of(self.what(), &e)),
                }
            })
            .buffered(CONCURRENCY)
            .collect::<Vec<_>>()
            .await;
        answers.into_iter().collect()
    }

    /// `BatchWriteItem` in groups of 25, sending what the service left unprocessed
    /// again with backoff.
    async fn write_all(
        &self,
        requests: Vec<WriteRequest>,
        retry: RetryPolicy,
    ) -> Result<(), AwsError> {
        for chunk in requests.chunks(WRITE_BATCH) {
            let mut pending = chunk.to_vec();
            let mut attempt = 0;
            while !pending.is_empty() {
                attempt += 1;
                let call = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, pending.clone())
                    .send();
                let Ok(answer) = retry.budget.bound(call).await else {
                    return Err(AwsError {
                        what: self.what(),
                        reason: format!(
                            "{} writes left unprocessed: {}",
                            pending.len(),
                            crate::limits::CallOutOfTime
                        ),
                        out_of_time: true,
                    });
                };
                match answer {
                    Ok(out) => {
                        pending = out
                            .unprocessed_items
                            .and_then(|mut left| left.remove(&self.table))
                            .unwrap_or_default();
                        if pending.is_empty() {
                            break;
                        }
                    }
                    Err(e) if attempt >= retry.max_attempts => {
                        return Err(AwsError::of(self.what(), &e));
                    }
                    Err(e) => {
                        tracing::warn!(error = %describe_error(&e), attempt, "idempotency store write failed; retrying")
                    }
                }
                if attempt >= retry.max_attempts {
                    return Err(AwsError {
                        what: self.what(),
                        reason: format!(
                            "{} writes left unprocessed after {attempt} attempts",
                            pending.len()
                        ),
                        out_of_time: false,
                    });
                }
                let delay = backoff(retry.base_delay, attempt);
                if !retry.budget.allows_wait(delay) {
                    return Err(AwsError {
                        what: self.what(),
                        reason: format!("{} writes left unprocessed (out of time)", pending.len()),
                        out_of_time: true,
                    });
                }
                tokio::time::sleep(delay).await;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_names_a_table() {
        let spec: StoreSpec = "dynamodb://pipeline-dedup".parse().expect("valid");
        assert_eq!(spec.table, "pipeline-dedup");
        assert_eq!(spec.to_string(), "dynamodb://pipeline-dedup");
        let err = "s3://bucket"
            .parse::<StoreSpec>()
            .expect_err("not dynamodb");
        assert!(err.contains("dynamodb://TABLE"), "{err}");
        let err = "dynamodb://a b".parse::<StoreSpec>().expect_err("bad name");
        assert!(err.contains("a table name"), "{err}");
    }

    #[test]
    fn long_identities_are_stored_by_hash() {
        assert_eq!(key_of("kinesis/s/shard-1/42"), "kinesis/s/shard-1/42");
        let long = "x".repeat(5000);
        let key = key_of(&long);
        assert!(key.starts_with("sha256:") && key.len() == 7 + 64, "{key}");
        assert_eq!(key, key_of(&long));
    }
}
