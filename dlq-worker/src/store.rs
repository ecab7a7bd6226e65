//! The DLQ's read model: every record of `plexica.dlq` folded into `dlq.dead_letters` (one
//! row per dead letter, with its status), `dlq.parked_keys` (the keys each consumer parks)
//! and `dlq.audit` (every record that is not a new dead letter: who did what, when).
//!
//! Statuses: `RETRY_SCHEDULED` (due at `next_retry_at`), `RETRYING` (sent back to its
//! consumer), `FAILED` (waits for an admin: permanent, or out of automatic retries), `PARKED`
//! (behind an earlier dead letter of its key), `RESOLVED`, `DISCARDED`.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use event_schemas::Codec;
use event_schemas::envelope::header_str;
use event_schemas::topics::takes_retries;
use futures::future::BoxFuture;
use infra::config::DlqConfig;
use infra::consumer::{HandlerError, Record, RecordHandler};
use infra::dead_letter::{header, record};
use rdkafka::Message;
use rdkafka::message::Headers;
use sqlx::PgConnection;

use crate::SCHEMA;
use crate::fingerprint::fingerprint;

pub struct DeadLetterStore {
    policy: DlqConfig,
    codec: Arc<Codec>,
}

impl DeadLetterStore {
    pub fn new(policy: DlqConfig, codec: Arc<Codec>) -> Self {
        Self { policy, codec }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("DLQ record without the `{0}` header")]
struct MissingContext(&'static str);

fn missing(name: &'static str) -> HandlerError {
    HandlerError::Permanent(Box::new(MissingContext(name)))
}

/// Text as Postgres can hold it: `text` and `jsonb` refuse NUL (SQLSTATE 22021, 22P05), so a
/// NUL becomes U+FFFD. What this changes is kept as bytes beside it (the payload always is,
/// the key in `record_key_bytes`).
fn pg_text(text: &str) -> String {
    text.replace('\0', "\u{FFFD}")
}

/// A record key as text; see [`pg_text`].
fn key_text(key: &[u8]) -> String {
    pg_text(&String::from_utf8_lossy(key))
}

/// The raw key when its text form is not faithful (not UTF-8, or holding a NUL).
fn key_bytes(key: &[u8]) -> Option<&[u8]> {
    std::str::from_utf8(key)
        .map_or(true, |text| text.contains('\0'))
        .then_some(key)
}

/// A decoded payload as `jsonb` can hold it: NUL in strings and names replaced.
fn pg_json(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::String(text) => Value::String(pg_text(&text)),
        Value::Array(items) => Value::Array(items.into_iter().map(pg_json).collect()),
        Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .map(|(name, value)| (pg_text(&name), pg_json(value)))
                .collect(),
        ),
        other => other,
    }
}

/// The headers of a record, by name, as text Postgres can hold.
fn headers_text(
    headers: &rdkafka::message::BorrowedHeaders,
    keep: impl Fn(&str) -> bool,
) -> BTreeMap<String, String> {
    headers
        .iter()
        .filter(|h| keep(h.key))
        .map(|h| {
            let value = h.value.map(String::from_utf8_lossy).unwrap_or_default();
            (pg_text(h.key), pg_text(&value))
        })
        .collect()
}

/// A random number in `[0, 1)` for the jitter, from a v4 UUID's random bits (the workspace
/// has no other source of randomness, and this needs no quality beyond spreading retries).
fn random_unit() -> f64 {
    (uuid::Uuid::new_v4().as_u128() >> 75) as f64 / (1u64 << 53) as f64
}

impl DeadLetterStore {
    /// When retry `round` of a dead letter whose last failure was at `failed_at` is due.
    fn due(&self, round: u32, failed_at: DateTime<Utc>) -> DateTime<Utc> {
        let wait = self.policy.backoff(round, random_unit());
        failed_at + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::zero())
    }
}

impl RecordHandler for DeadLetterStore {
    fn ddl(&self, schema: &str) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {schema}.dead_letters (
                 id uuid PRIMARY KEY,
                 consumer text NOT NULL,
                 original_topic text NOT NULL,
                 original_partition integer NOT NULL,
                 original_offset bigint NOT NULL,
                 original_timestamp timestamptz,
                 record_key text,
                 event_type text,
                 error_class text NOT NULL,
                 error_message text NOT NULL,
                 error_causes jsonb NOT NULL DEFAULT '[]',
                 attempts integer NOT NULL,
                 first_failure_at timestamptz,
                 status text NOT NULL DEFAULT 'PARKED',
                 payload bytea,
                 headers jsonb NOT NULL,
                 dlq_partition integer NOT NULL,
                 dlq_offset bigint NOT NULL,
                 dead_lettered_at timestamptz NOT NULL DEFAULT now(),
                 UNIQUE (consumer, original_topic, original_partition, original_offset)
             );
             CREATE INDEX IF NOT EXISTS dead_letters_consumer_status
                 ON {schema}.dead_letters (consumer, status);
             ALTER TABLE {schema}.dead_letters
                 ADD COLUMN IF NOT EXISTS failing_stage text NOT NULL DEFAULT 'handler',
                 ADD COLUMN IF NOT EXISTS fingerprint text NOT NULL DEFAULT '',
                 ADD COLUMN IF NOT EXISTS tenant_id text,
                 ADD COLUMN IF NOT EXISTS parked_behind uuid,
                 ADD COLUMN IF NOT EXISTS key_parked boolean NOT NULL DEFAULT false,
                 ADD COLUMN IF NOT EXISTS retry_round integer NOT NULL DEFAULT 0,
                 ADD COLUMN IF NOT EXISTS next_retry_at timestamptz,
                 ADD COLUMN IF NOT EXISTS resolved_at timestamptz,
                 ADD COLUMN IF NOT EXISTS discard_reason text,
                 ADD COLUMN IF NOT EXISTS updated_at timestamptz NOT NULL DEFAULT now(),
                 -- The payload decoded (Avro to JSON) when it decodes, for admins to read.
                 ADD COLUMN IF NOT EXISTS payload_json jsonb,
                 -- The key as written, when its text in record_key is not faithful (a NUL).
                 ADD COLUMN IF NOT EXISTS record_key_bytes bytea;
             CREATE INDEX IF NOT EXISTS dead_letters_due
                 ON {schema}.dead_letters (next_retry_at) WHERE status = 'RETRY_SCHEDULED';
             CREATE INDEX IF NOT EXISTS dead_letters_key
                 ON {schema}.dead_letters (consumer, record_key, dlq_partition, dlq_offset);
             -- The admin list's order: a page reads 50 rows, not the whole DLQ.
             CREATE INDEX IF NOT EXISTS dead_letters_received
                 ON {schema}.dead_letters (dlq_partition, dlq_offset);
             CREATE TABLE IF NOT EXISTS {schema}.parked_keys (
                 consumer text NOT NULL,
                 record_key text NOT NULL,
                 head_id uuid NOT NULL,
                 last_id uuid NOT NULL,
                 status text NOT NULL,
                 parked_at timestamptz NOT NULL,
                 released_at timestamptz,
                 PRIMARY KEY (consumer, record_key)
             );
             CREATE TABLE IF NOT EXISTS {schema}.audit (
                 dlq_partition integer NOT NULL,
                 dlq_offset bigint NOT NULL,
                 record text NOT NULL,
                 dead_letter_id uuid,
                 consumer text,
                 record_key text,
                 actor text,
                 detail jsonb NOT NULL,
                 recorded_at timestamptz NOT NULL,
                 PRIMARY KEY (dlq_partition, dlq_offset)
             );"
        )
    }

    /// A dead letter is stored as it came: its headers are read in `apply`, where a missing
    /// one is that record's permanent failure.
    type Decoded = ();

    fn decode<'a>(&'a mut self, _: &'a Record<'a>) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async { Ok(()) })
    }

    fn apply<'a>(
        &'a mut self,
        tx: &'a mut PgConnection,
        record: &'a Record<'a>,
        (): (),
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            let message = record.message;
            let Some(headers) = message.headers() else {
                return Err(missing(header::RECORD));
            };
            let kind =
                header_str(headers, header::RECORD).ok_or_else(|| missing(header::RECORD))?;
            let at = message
                .timestamp()
                .to_millis()
                .and_then(DateTime::from_timestamp_millis)
                .unwrap_or_else(Utc::now);
            if kind == record::DEAD_LETTERED {
                return self.dead_lettered(tx, message, headers, at).await;
            }
            audit(tx, message, headers, kind, at).await?;
            let text = |name: &str| header_str(headers, name).map(pg_text);
            let id = text(header::ID).and_then(|id| uuid::Uuid::parse_str(&id).ok());
            let round: Option<i32> = text(header::RETRY_ROUND).and_then(|r| r.parse().ok());
            match kind {
                record::RETRY_SCHEDULED => {
                    let id = id.ok_or_else(|| missing(header::ID))?;
                    let due = text(header::NEXT_RETRY_AT)
                        .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
                        .map_or(at, |t| t.with_timezone(&Utc));
                    sqlx::query(&format!(
                        "UPDATE {SCHEMA}.dead_letters
                         SET status = 'RETRY_SCHEDULED', next_retry_at = $2, updated_at = $3
                         WHERE id = $1 AND status IN ('FAILED', 'RETRY_SCHEDULED')"
                    ))
                    .bind(id)
                    .bind(due)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                }
                record::RETRIED => {
                    let id = id.ok_or_else(|| missing(header::ID))?;
                    sqlx::query(&format!(
                        "UPDATE {SCHEMA}.dead_letters
                         SET status = 'RETRYING', retry_round = greatest(retry_round, $2),
                             next_retry_at = NULL, updated_at = $3
                         WHERE id = $1 AND status IN ('RETRY_SCHEDULED', 'RETRYING')"
                    ))
                    .bind(id)
                    .bind(round.unwrap_or(0))
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                }
                record::RETRY_FAILED => {
                    let id = id.ok_or_else(|| missing(header::ID))?;
                    self.retry_failed(tx, headers, id, round.unwrap_or(0), at)
                        .await?;
                }
                record::RESOLVED => {
                    let id = id.ok_or_else(|| missing(header::ID))?;
                    let key = terminal(tx, id, "RESOLVED", None, at).await?;
                    if let Some((consumer, key)) = key {
                        advance_queue(tx, &consumer, &key, at).await?;
                    }
                }
                record::DISCARDED => {
                    let id = id.ok_or_else(|| missing(header::ID))?;
                    let reason = text(header::REASON);
                    let key = terminal(tx, id, "DISCARDED", reason, at).await?;
                    if let Some((consumer, key)) = key {
                        advance_queue(tx, &consumer, &key, at).await?;
                    }
                }
                record::KEY_RELEASED => {
                    let consumer =
                        text(header::CONSUMER).ok_or_else(|| missing(header::CONSUMER))?;
                    let Some(key) = message.key().map(key_text) else {
                        return Ok(());
                    };
                    sqlx::query(&format!(
                        "UPDATE {SCHEMA}.parked_keys SET status = 'RELEASED', released_at = $3
                         WHERE consumer = $1 AND record_key = $2"
                    ))
                    .bind(&consumer)
                    .bind(&key)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                    if text(header::ACTOR).as_deref() != Some(crate::WORKER_ACTOR) {
                        // An admin let the key flow again: what was queued behind its head
                        // no longer waits for it, but stays for an admin to retry or discard.
                        sqlx::query(&format!(
                            "UPDATE {SCHEMA}.dead_letters SET status = 'FAILED', updated_at = $3
                             WHERE consumer = $1 AND record_key = $2 AND status = 'PARKED'"
                        ))
                        .bind(&consumer)
                        .bind(&key)
                        .bind(at)
                        .execute(&mut *tx)
                        .await?;
                    }
                }
                // Audited above; the consumer itself acts on it.
                record::REPLAY_REQUESTED => {}
                other => {
                    tracing::warn!(
                        kind = other,
                        "unknown DLQ record kind kept in the audit only"
                    );
                }
            }
            Ok(())
        })
    }
}

impl DeadLetterStore {
    async fn dead_lettered(
        &self,
        tx: &mut PgConnection,
        message: &infra::consumer::Delivered<'_>,
        headers: &rdkafka::message::BorrowedHeaders,
        at: DateTime<Utc>,
    ) -> Result<(), HandlerError> {
        let text = |name: &'static str| header_str(headers, name).map(pg_text);
        let required = |name: &'static str| text(name).ok_or_else(|| missing(name));
        let number = |name: &'static str| -> Result<i64, HandlerError> {
            required(name)?
                .parse()
                .map_err(|e: std::num::ParseIntError| HandlerError::Permanent(Box::new(e)))
        };
        let all_headers = headers_text(headers, |_| true);
        let causes: serde_json::Value = text(header::ERROR_CAUSES)
            .and_then(|c| serde_json::from_str(&c).ok())
            .unwrap_or_else(|| serde_json::json!([]));
        let original_timestamp = text(header::ORIGINAL_TIMESTAMP)
            .and_then(|t| t.parse::<i64>().ok())
            .and_then(DateTime::from_timestamp_millis);
        let first_failure_at = text(header::FIRST_FAILURE_AT)
            .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
            .map(|t| t.with_timezone(&Utc));
        let consumer = required(header::CONSUMER)?;
        let original_topic = required(header::ORIGINAL_TOPIC)?;
        let original_partition = i32::try_from(number(header::ORIGINAL_PARTITION)?)
            .map_err(|e| HandlerError::Permanent(Box::new(e)))?;
        let original_offset = number(header::ORIGINAL_OFFSET)?;
        let attempts = i32::try_from(number(header::ATTEMPTS)?).unwrap_or(i32::MAX);
        let class = required(header::ERROR_CLASS)?;
        let error_message = required(header::ERROR_MESSAGE)?;
        let stage = text(header::FAILING_STAGE).unwrap_or_else(|| "handler".to_owned());
        // Dead letters from before ids were recorded get one from their position.
        let id = text(header::ID)
            .and_then(|id| uuid::Uuid::parse_str(&id).ok())
            .unwrap_or_else(|| {
                infra::dead_letter::dead_letter_id(
                    &consumer,
                    &original_topic,
                    original_partition,
                    original_offset,
                )
            });
        let parked_behind =
            text(header::PARKED_BEHIND).and_then(|id| uuid::Uuid::parse_str(&id).ok());
        let key_parked = text(header::KEY_PARKED).as_deref() == Some("true");
        let key = message.key().map(key_text);
        let raw_key = message.key().and_then(key_bytes);
        // A payload that does not decode (the poison itself, often) is kept as bytes only.
        let payload_json = self
            .codec
            .decode_json(message.payload())
            .await
            .ok()
            .map(pg_json);
        // Only a consumer that reads a retry topic can take a retry; another's dead letter
        // waits for an admin, or it would be sent to a topic nobody reads, again and again.
        let automatic =
            class == "retryable" && self.policy.retry_max_attempts > 0 && takes_retries(&consumer);
        let (status, next_retry_at) = match parked_behind {
            Some(_) => ("PARKED", None),
            None if automatic => ("RETRY_SCHEDULED", Some(self.due(1, at))),
            None => ("FAILED", None),
        };
        let inserted = sqlx::query(&format!(
            "INSERT INTO {SCHEMA}.dead_letters
                 (id, consumer, original_topic, original_partition, original_offset, original_timestamp,
                  record_key, event_type, error_class, error_message, error_causes, attempts,
                  first_failure_at, payload, headers, dlq_partition, dlq_offset, dead_lettered_at,
                  status, next_retry_at, failing_stage, fingerprint, tenant_id, parked_behind,
                  key_parked, payload_json, record_key_bytes, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
                     $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $18)
             ON CONFLICT DO NOTHING"
        ))
        .bind(id)
        .bind(&consumer)
        .bind(&original_topic)
        .bind(original_partition)
        .bind(original_offset)
        .bind(original_timestamp)
        .bind(&key)
        .bind(text(event_schemas::envelope::header::TYPE))
        .bind(&class)
        .bind(&error_message)
        .bind(causes)
        .bind(attempts)
        .bind(first_failure_at)
        .bind(message.payload())
        .bind(serde_json::to_value(&all_headers).unwrap_or_default())
        .bind(message.partition())
        .bind(message.offset())
        .bind(at)
        .bind(status)
        .bind(next_retry_at)
        .bind(&stage)
        .bind(fingerprint(&class, &error_message, &stage))
        .bind(text(event_schemas::envelope::header::TENANT_ID))
        .bind(parked_behind)
        .bind(key_parked)
        .bind(payload_json)
        .bind(raw_key)
        .execute(&mut *tx)
        .await?;
        // Published twice (the consumer's transaction failed after the DLQ write): once.
        if inserted.rows_affected() == 0 || !key_parked {
            return Ok(());
        }
        let Some(key) = key else { return Ok(()) };
        sqlx::query(&format!(
            "INSERT INTO {SCHEMA}.parked_keys (consumer, record_key, head_id, last_id, status, parked_at)
             VALUES ($1, $2, $3, $4, 'PARKED', $5)
             ON CONFLICT (consumer, record_key) DO UPDATE
             SET last_id = excluded.last_id, status = 'PARKED', released_at = NULL,
                 head_id = excluded.head_id,
                 parked_at = CASE WHEN {SCHEMA}.parked_keys.status = 'RELEASED'
                                  THEN excluded.parked_at ELSE {SCHEMA}.parked_keys.parked_at END"
        ))
        .bind(&consumer)
        .bind(&key)
        .bind(parked_behind.unwrap_or(id))
        .bind(id)
        .bind(at)
        .execute(&mut *tx)
        .await?;
        if parked_behind.is_some() {
            // Its head may be gone already (resolved while this record was on its way).
            advance_queue(tx, &consumer, &key, at).await?;
        }
        Ok(())
    }

    async fn retry_failed(
        &self,
        tx: &mut PgConnection,
        headers: &rdkafka::message::BorrowedHeaders,
        id: uuid::Uuid,
        round: i32,
        at: DateTime<Utc>,
    ) -> Result<(), HandlerError> {
        let text = |name: &str| header_str(headers, name).map(pg_text);
        let class = text(header::ERROR_CLASS).unwrap_or_else(|| "retryable".to_owned());
        let message = text(header::ERROR_MESSAGE).unwrap_or_default();
        let causes: serde_json::Value = text(header::ERROR_CAUSES)
            .and_then(|c| serde_json::from_str(&c).ok())
            .unwrap_or_else(|| serde_json::json!([]));
        let next_round = u32::try_from(round).unwrap_or(0).saturating_add(1);
        let again = class == "retryable"
            && u32::try_from(round).unwrap_or(u32::MAX) < self.policy.retry_max_attempts;
        let (status, due) = if again {
            ("RETRY_SCHEDULED", Some(self.due(next_round, at)))
        } else {
            ("FAILED", None)
        };
        // Only the outcome of the round in flight counts: a late answer to a round sent
        // twice changes nothing.
        sqlx::query(&format!(
            "UPDATE {SCHEMA}.dead_letters
             SET attempts = attempts + 1, error_class = $3, error_message = $4, error_causes = $5,
                 failing_stage = 'handler', fingerprint = $6, status = $7, next_retry_at = $8,
                 updated_at = $9
             WHERE id = $1 AND status = 'RETRYING' AND retry_round = $2"
        ))
        .bind(id)
        .bind(round)
        .bind(&class)
        .bind(&message)
        .bind(causes)
        .bind(fingerprint(&class, &message, "handler"))
        .bind(status)
        .bind(due)
        .bind(at)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }
}

/// Ends a dead letter; returns its consumer and key when its key's queue may move on.
async fn terminal(
    tx: &mut PgConnection,
    id: uuid::Uuid,
    status: &str,
    reason: Option<String>,
    at: DateTime<Utc>,
) -> Result<Option<(String, String)>, HandlerError> {
    // A retry that succeeded wins over a discard sent while it ran: its effect happened.
    let guard = if status == "RESOLVED" {
        "status <> 'RESOLVED'"
    } else {
        "status NOT IN ('RESOLVED', 'DISCARDED')"
    };
    let row: Option<(String, Option<String>, bool)> = sqlx::query_as(&format!(
        "UPDATE {SCHEMA}.dead_letters
         SET status = $2, discard_reason = coalesce($3, discard_reason), next_retry_at = NULL,
             resolved_at = $4, updated_at = $4
         WHERE id = $1 AND {guard}
         RETURNING consumer, record_key, key_parked"
    ))
    .bind(id)
    .bind(status)
    .bind(reason)
    .bind(at)
    .fetch_optional(&mut *tx)
    .await?;
    Ok(row.and_then(|(consumer, key, parked)| parked.then_some((consumer, key?))))
}

/// Moves a parked key's queue on: while a dead letter of the key is still being retried or
/// waits for an admin, nothing; else the earliest parked one is due now; once none is left,
/// the key is `DRAINED` and the dispatcher releases it.
async fn advance_queue(
    tx: &mut PgConnection,
    consumer: &str,
    key: &str,
    at: DateTime<Utc>,
) -> Result<(), HandlerError> {
    let pending: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM {SCHEMA}.dead_letters
         WHERE consumer = $1 AND record_key = $2 AND key_parked
           AND status IN ('RETRY_SCHEDULED', 'RETRYING', 'FAILED')"
    ))
    .bind(consumer)
    .bind(key)
    .fetch_one(&mut *tx)
    .await?;
    if pending > 0 {
        return Ok(());
    }
    let next: Option<uuid::Uuid> = sqlx::query_scalar(&format!(
        "SELECT id FROM {SCHEMA}.dead_letters
         WHERE consumer = $1 AND record_key = $2 AND status = 'PARKED'
         ORDER BY dlq_partition, dlq_offset LIMIT 1"
    ))
    .bind(consumer)
    .bind(key)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(next) = next {
        sqlx::query(&format!(
            "UPDATE {SCHEMA}.dead_letters SET status = 'RETRY_SCHEDULED', next_retry_at = $2,
                 updated_at = $2
             WHERE id = $1"
        ))
        .bind(next)
        .bind(at)
        .execute(&mut *tx)
        .await?;
        return Ok(());
    }
    sqlx::query(&format!(
        "UPDATE {SCHEMA}.parked_keys SET status = 'DRAINED',
             last_id = coalesce((SELECT id FROM {SCHEMA}.dead_letters
                                 WHERE consumer = $1 AND record_key = $2 AND key_parked
                                 ORDER BY dlq_partition DESC, dlq_offset DESC LIMIT 1), last_id)
         WHERE consumer = $1 AND record_key = $2 AND status = 'PARKED'"
    ))
    .bind(consumer)
    .bind(key)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

async fn audit(
    tx: &mut PgConnection,
    message: &infra::consumer::Delivered<'_>,
    headers: &rdkafka::message::BorrowedHeaders,
    kind: &str,
    at: DateTime<Utc>,
) -> Result<(), HandlerError> {
    let detail = headers_text(headers, |name| name.starts_with("dlq-"));
    let text = |name: &str| header_str(headers, name).map(pg_text);
    sqlx::query(&format!(
        "INSERT INTO {SCHEMA}.audit (dlq_partition, dlq_offset, record, dead_letter_id, consumer,
             record_key, actor, detail, recorded_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING"
    ))
    .bind(message.partition())
    .bind(message.offset())
    .bind(pg_text(kind))
    .bind(text(header::ID).and_then(|id| uuid::Uuid::parse_str(&id).ok()))
    .bind(text(header::CONSUMER))
    .bind(message.key().map(key_text))
    .bind(text(header::ACTOR))
    .bind(serde_json::to_value(detail).unwrap_or_default())
    .bind(at)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
