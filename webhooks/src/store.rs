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
             UNIQUE (webhook_id, event_id)
         );
         CREATE INDEX IF NOT EXISTS deliveries_open ON {schema}.deliveries
             (webhook_id, ordering_key, seq) WHERE status <> 'DELIVERED';
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
    Failed,
}

/// Records an attempt of delivery `seq` and what follows it, in one transaction.
pub async fn record(
    pool: &PgPool,
    schema: &str,
    seq: i64,
    attempt: &Attempt,
    next: Next,
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    let number: i32 = sqlx::query_scalar(&format!(
        "UPDATE {schema}.deliveries
         SET attempts = attempts + 1, last_status = $2, last_error = $3,
             status = $4, next_attempt_at = coalesce($5, next_attempt_at),
             delivered_at = CASE WHEN $4 = 'DELIVERED' THEN $6 ELSE delivered_at END
         WHERE seq = $1 RETURNING attempts"
    ))
    .bind(seq)
    .bind(attempt.status_code.map(i32::from))
    .bind(&attempt.error)
    .bind(match next {
        Next::Delivered => "DELIVERED",
        Next::RetryAt(_) => "PENDING",
        Next::Failed => "FAILED",
    })
    .bind(match next {
        Next::RetryAt(at) => Some(at),
        Next::Delivered | Next::Failed => None,
    })
    .bind(attempt.at)
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
    tx.commit().await
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
}

/// Enqueues `event` for every endpoint it is for, in the consumer's transaction. A delivery
/// that failed for good is made pending again (a retry or replay from the DLQ); one pending
/// or delivered is left as it is.
pub async fn enqueue(
    tx: &mut PgConnection,
    schema: &str,
    catalog: &str,
    event: Enqueued<'_>,
) -> Result<u64, sqlx::Error> {
    let enqueued = sqlx::query(&format!(
        "INSERT INTO {schema}.deliveries (webhook_id, event_id, event_type, ordering_key, body)
         SELECT w.id, $1, $2, $5, $6 FROM {catalog}.webhooks w
         WHERE NOT w.deleted AND $2 = ANY (w.events)
           AND (w.tenant_id IS NULL OR w.tenant_id = $3 OR ($3 IS NULL AND $4))
         ON CONFLICT (webhook_id, event_id) DO UPDATE
         SET status = 'PENDING', attempts = 0, next_attempt_at = now()
         WHERE {schema}.deliveries.status = 'FAILED'"
    ))
    .bind(event.event_id)
    .bind(event.event_type)
    .bind(event.tenant)
    .bind(event.public)
    .bind(event.ordering_key)
    .bind(event.body)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if enqueued > 0 {
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(ENQUEUED_CHANNEL)
            .execute(&mut *tx)
            .await?;
    }
    Ok(enqueued)
}
