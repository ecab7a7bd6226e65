//! The deliveries: one row per endpoint and event, enqueued in the `webhooks` consumer's
//! transaction and worked off by the deliverer; and the attempts made, for admins to read.
//!
//! A delivery is the head of its line when no earlier delivery to the same endpoint with the
//! same key is still pending or failed: only heads are sent, so an endpoint receives a key's
//! events in the log's order, and a delivery dead-lettered keeps the ones behind it waiting
//! until an admin retries or discards it.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// The consumer's and deliverer's schema.
pub const SCHEMA: &str = "webhooks";

/// Announced at the commit of every enqueue: the deliverer looks for due deliveries at once.
pub const ENQUEUED_CHANNEL: &str = "plexica_webhooks_enqueued";

pub fn ddl(schema: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {schema}.deliveries (
             seq bigserial PRIMARY KEY,
             webhook_id uuid NOT NULL,
             event_id uuid NOT NULL,
             event_type text NOT NULL,
             ordering_key text NOT NULL,
             body text NOT NULL,
             status text NOT NULL DEFAULT 'PENDING'
                 CHECK (status IN ('PENDING', 'DELIVERED', 'FAILED')),
             attempts integer NOT NULL DEFAULT 0,
             next_attempt_at timestamptz NOT NULL DEFAULT now(),
             last_status integer,
             last_error text,
             created_at timestamptz NOT NULL DEFAULT now(),
             delivered_at timestamptz,
             -- The event's record as read, for its dead letter: where it was and its bytes.
             source_topic text NOT NULL,
             source_partition integer NOT NULL,
             source_offset bigint NOT NULL,
             source_timestamp_ms bigint NOT NULL,
             record_key bytea,
             record_value bytea,
             record_headers jsonb NOT NULL DEFAULT '[]',
             -- Set when the delivery fails for good; sent to the DLQ once, then marked sent.
             dead_letter_id uuid,
             failure_class text,
             dead_letter_sent boolean NOT NULL DEFAULT false,
             UNIQUE (webhook_id, event_id)
         );
         CREATE INDEX IF NOT EXISTS deliveries_unsent_dead_letters ON {schema}.deliveries (seq)
             WHERE dead_letter_id IS NOT NULL AND NOT dead_letter_sent;
         CREATE INDEX IF NOT EXISTS deliveries_open ON {schema}.deliveries
             (webhook_id, ordering_key, seq) WHERE status <> 'DELIVERED';
         -- Since when every attempt to an endpoint has failed (none since its last success).
         CREATE TABLE IF NOT EXISTS {schema}.endpoints (
             webhook_id uuid PRIMARY KEY,
             failing_since timestamptz,
             last_success_at timestamptz
         );
         CREATE TABLE IF NOT EXISTS {schema}.attempts (
             delivery_seq bigint NOT NULL,
             attempt integer NOT NULL,
             attempted_at timestamptz NOT NULL,
             status_code integer,
             error text,
             duration_ms integer NOT NULL,
             PRIMARY KEY (delivery_seq, attempt)
         );"
    )
}

/// What the deliverer needs to send one delivery.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Due {
    pub seq: i64,
    pub webhook_id: Uuid,
    pub event_id: Uuid,
    pub body: String,
    pub attempts: i32,
    pub url: String,
    /// The aggregate version of the event that set the endpoint's secret.
    pub secret_version: i64,
}

/// Claims up to `limit` due heads of line for `lease`: another deliverer passes them over
/// until the lease ends, and a deliverer that dies mid-send leaves them due again after it.
pub async fn claim_due(
    pool: &PgPool,
    schema: &str,
    catalog: &str,
    limit: i64,
    lease: std::time::Duration,
) -> Result<Vec<Due>, sqlx::Error> {
    let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    // The claim checks `next_attempt_at` again: a deliverer that claimed the row meanwhile
    // has moved it past now, and Postgres re-reads the row it waited for.
    sqlx::query_as(&format!(
        "WITH heads AS (
             SELECT DISTINCT ON (webhook_id, ordering_key)
                    seq, webhook_id, status, next_attempt_at
             FROM {schema}.deliveries
             WHERE status <> 'DELIVERED'
             ORDER BY webhook_id, ordering_key, seq
         ),
         due AS (
             SELECT h.seq FROM heads h JOIN {catalog}.webhooks w ON w.id = h.webhook_id
             WHERE h.status = 'PENDING' AND h.next_attempt_at <= now() AND NOT w.deleted
               AND w.disabled_at IS NULL
             ORDER BY h.next_attempt_at LIMIT $1
         ),
         claimed AS (
             UPDATE {schema}.deliveries d
             SET next_attempt_at = now() + make_interval(secs => $2::double precision / 1000)
             FROM due
             WHERE d.seq = due.seq AND d.status = 'PENDING' AND d.next_attempt_at <= now()
             RETURNING d.seq, d.webhook_id, d.event_id, d.body, d.attempts
         )
         SELECT c.seq, c.webhook_id, c.event_id, c.body, c.attempts, w.url, w.secret_version
         FROM claimed c JOIN {catalog}.webhooks w ON w.id = c.webhook_id"
    ))
    .bind(limit)
    .bind(lease_ms)
    .fetch_all(pool)
    .await
}

/// When the next delivery to a live endpoint falls due, if any is pending.
pub async fn next_due(
    pool: &PgPool,
    schema: &str,
    catalog: &str,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar(&format!(
        "SELECT min(d.next_attempt_at) FROM {schema}.deliveries d
         JOIN {catalog}.webhooks w ON w.id = d.webhook_id AND NOT w.deleted
             AND w.disabled_at IS NULL
         WHERE d.status = 'PENDING'"
    ))
    .fetch_one(pool)
    .await
}

/// How one attempt went.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub at: DateTime<Utc>,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: i32,
}

/// What follows an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Delivered,
    RetryAt(DateTime<Utc>),
    /// For good: `retryable` when the attempts ran out (the DLQ may try again later), not
    /// when the endpoint refused it.
    Failed {
        retryable: bool,
    },
}

/// Records an attempt of delivery `seq` to endpoint `webhook` and what follows it, in one
/// transaction; answers since when every attempt to the endpoint has failed (none after a
/// success).
pub async fn record(
    pool: &PgPool,
    schema: &str,
    seq: i64,
    webhook: Uuid,
    attempt: &Attempt,
    next: Next,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let number: i32 = sqlx::query_scalar(&format!(
        "UPDATE {schema}.deliveries
         SET attempts = attempts + 1, last_status = $2, last_error = $3,
             status = $4, next_attempt_at = coalesce($5, next_attempt_at),
             delivered_at = CASE WHEN $4 = 'DELIVERED' THEN $6 ELSE delivered_at END,
             dead_letter_id = CASE WHEN $4 = 'FAILED' THEN $7 END,
             failure_class = $8, dead_letter_sent = false
         WHERE seq = $1 RETURNING attempts"
    ))
    .bind(seq)
    .bind(attempt.status_code.map(i32::from))
    .bind(&attempt.error)
    .bind(match next {
        Next::Delivered => "DELIVERED",
        Next::RetryAt(_) => "PENDING",
        Next::Failed { .. } => "FAILED",
    })
    .bind(match next {
        Next::RetryAt(at) => Some(at),
        Next::Delivered | Next::Failed { .. } => None,
    })
    .bind(attempt.at)
    .bind(Uuid::now_v7())
    .bind(match next {
        Next::Failed { retryable: true } => Some("retryable"),
        Next::Failed { retryable: false } => Some("permanent"),
        Next::Delivered | Next::RetryAt(_) => None,
    })
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query(&format!(
        "INSERT INTO {schema}.attempts
             (delivery_seq, attempt, attempted_at, status_code, error, duration_ms)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING"
    ))
    .bind(seq)
    .bind(number)
    .bind(attempt.at)
    .bind(attempt.status_code.map(i32::from))
    .bind(&attempt.error)
    .bind(attempt.duration_ms)
    .execute(&mut *tx)
    .await?;
    let delivered = next == Next::Delivered;
    let failing_since: Option<DateTime<Utc>> = sqlx::query_scalar(&format!(
        "INSERT INTO {schema}.endpoints AS e (webhook_id, failing_since, last_success_at)
         VALUES ($1, CASE WHEN $2 THEN NULL ELSE $3 END, CASE WHEN $2 THEN $3 END)
         ON CONFLICT (webhook_id) DO UPDATE
         SET failing_since = CASE WHEN $2 THEN NULL ELSE coalesce(e.failing_since, $3) END,
             last_success_at = CASE WHEN $2 THEN $3 ELSE e.last_success_at END
         RETURNING failing_since"
    ))
    .bind(webhook)
    .bind(delivered)
    .bind(attempt.at)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(failing_since)
}

/// Where an event's record was read, and its bytes: what its dead letter carries.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    /// `[name, value]` pairs, values as text (the platform's headers are UTF-8).
    pub headers: &'a serde_json::Value,
}

/// An event to enqueue for the endpoints it is for.
#[derive(Debug, Clone, Copy)]
pub struct Enqueued<'a> {
    pub event_id: Uuid,
    pub event_type: &'a str,
    /// The tenant it is about.
    pub tenant: Option<Uuid>,
    /// Without a tenant, whether tenants' endpoints may hear of it.
    pub public: bool,
    pub ordering_key: &'a str,
    pub body: &'a str,
    pub source: Source<'a>,
}

/// Enqueues `event` for every endpoint it is for, in the consumer's transaction; an endpoint
/// that has it already (a record read again, a replay) is left as it is.
pub async fn enqueue(
    tx: &mut PgConnection,
    schema: &str,
    catalog: &str,
    event: Enqueued<'_>,
) -> Result<u64, sqlx::Error> {
    let source = event.source;
    let enqueued = sqlx::query(&format!(
        "INSERT INTO {schema}.deliveries
             (webhook_id, event_id, event_type, ordering_key, body, source_topic,
              source_partition, source_offset, source_timestamp_ms, record_key, record_value,
              record_headers)
         SELECT w.id, $1, $2, $5, $6, $7, $8, $9, $10, $11, $12, $13 FROM {catalog}.webhooks w
         WHERE NOT w.deleted AND w.disabled_at IS NULL AND $2 = ANY (w.events)
           AND (w.tenant_id IS NULL OR w.tenant_id = $3 OR ($3 IS NULL AND $4))
         ON CONFLICT (webhook_id, event_id) DO NOTHING"
    ))
    .bind(event.event_id)
    .bind(event.event_type)
    .bind(event.tenant)
    .bind(event.public)
    .bind(event.ordering_key)
    .bind(event.body)
    .bind(source.topic)
    .bind(source.partition)
    .bind(source.offset)
    .bind(source.timestamp_ms)
    .bind(source.key)
    .bind(source.value)
    .bind(source.headers)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    notify_if(tx, enqueued).await?;
    Ok(enqueued)
}

/// An admin's retry of a dead letter: the event's failed deliveries are pending again, with
/// their attempts from zero. Nothing is enqueued for endpoints that never had it.
pub async fn retry_failed(
    tx: &mut PgConnection,
    schema: &str,
    event_id: Uuid,
) -> Result<u64, sqlx::Error> {
    let retried = sqlx::query(&format!(
        "UPDATE {schema}.deliveries
         SET status = 'PENDING', attempts = 0, next_attempt_at = now(), dead_letter_id = NULL,
             failure_class = NULL, dead_letter_sent = false
         WHERE event_id = $1 AND status = 'FAILED'"
    ))
    .bind(event_id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    notify_if(tx, retried).await?;
    Ok(retried)
}

async fn notify_if(tx: &mut PgConnection, changed: u64) -> Result<(), sqlx::Error> {
    if changed > 0 {
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(ENQUEUED_CHANNEL)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

/// A failed delivery whose dead letter is still to be sent.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UnsentDeadLetter {
    pub seq: i64,
    pub dead_letter_id: Uuid,
    pub failure_class: Option<String>,
    pub last_error: Option<String>,
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
    pub webhook_id: Uuid,
    pub source_topic: String,
    pub source_partition: i32,
    pub source_offset: i64,
    pub source_timestamp_ms: i64,
    pub record_key: Option<Vec<u8>>,
    pub record_value: Option<Vec<u8>>,
    pub record_headers: serde_json::Value,
}

pub async fn unsent_dead_letters(
    pool: &PgPool,
    schema: &str,
    limit: i64,
) -> Result<Vec<UnsentDeadLetter>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT seq, dead_letter_id, failure_class, last_error, attempts, created_at, webhook_id,
                source_topic, source_partition, source_offset, source_timestamp_ms, record_key,
                record_value, record_headers
         FROM {schema}.deliveries
         WHERE dead_letter_id IS NOT NULL AND NOT dead_letter_sent ORDER BY seq LIMIT $1"
    ))
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// The broker acknowledged dead letter `id` of delivery `seq`.
pub async fn dead_letter_sent(
    pool: &PgPool,
    schema: &str,
    seq: i64,
    id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "UPDATE {schema}.deliveries SET dead_letter_sent = true
         WHERE seq = $1 AND dead_letter_id = $2"
    ))
    .bind(seq)
    .bind(id)
    .execute(pool)
    .await?;
    Ok(())
}
