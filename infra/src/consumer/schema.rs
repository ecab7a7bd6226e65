//! The consumer's tables: checkpoints, parked keys, resolved dead letters.

use std::collections::HashMap;

use sqlx::PgPool;

use super::admission::TopicPartition;
use super::parking::{ParkedKey, ParkedKeys};

/// Creates the consumer's schema, checkpoint table and the handler's tables when missing.
pub async fn prepare_schema(pool: &PgPool, schema: &str, ddl: &str) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    // Several instances may start at once; CREATE ... IF NOT EXISTS is not safe concurrently.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(schema)
        .execute(&mut *tx)
        .await?;
    let statements = format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         CREATE TABLE IF NOT EXISTS {schema}.checkpoints (
             topic text NOT NULL,
             partition integer NOT NULL,
             next_offset bigint NOT NULL,
             fence_epoch bigint NOT NULL DEFAULT 0,
             updated_at timestamptz NOT NULL DEFAULT now(),
             PRIMARY KEY (topic, partition)
         );
         ALTER TABLE {schema}.checkpoints
             ADD COLUMN IF NOT EXISTS rewound boolean NOT NULL DEFAULT false,
             ADD COLUMN IF NOT EXISTS replay_until bigint,
             ADD COLUMN IF NOT EXISTS replay_from_ms bigint,
             ADD COLUMN IF NOT EXISTS replay_fence_epoch bigint;
         {ddl}"
    );
    // Without bind parameters this is sent as one simple query, so several statements run.
    sqlx::Executor::execute(&mut *tx, statements.as_str()).await?;
    tx.commit().await
}

/// The tables of a consumer that parks keys and takes retries.
pub(super) fn retry_ddl(schema: &str) -> String {
    format!(
        "
         CREATE TABLE IF NOT EXISTS {schema}.parked_keys (
             record_key bytea PRIMARY KEY,
             head_id uuid NOT NULL,
             last_id uuid NOT NULL,
             parked_records integer NOT NULL DEFAULT 1,
             parked_at timestamptz NOT NULL DEFAULT now()
         );
         -- Dead letters this consumer processed on retry: a retry delivered twice is skipped.
         CREATE TABLE IF NOT EXISTS {schema}.resolved_dead_letters (
             dead_letter_id uuid PRIMARY KEY,
             resolved_at timestamptz NOT NULL DEFAULT now()
         );"
    )
}

pub(super) async fn load_checkpoints(
    pool: &PgPool,
    schema: &str,
) -> Result<HashMap<TopicPartition, i64>, sqlx::Error> {
    let rows: Vec<(String, i32, i64)> = sqlx::query_as(&format!(
        "SELECT topic, partition, next_offset FROM {schema}.checkpoints"
    ))
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(t, p, o)| (TopicPartition::new(t, p), o))
        .collect())
}

pub(super) async fn load_parked_keys(
    pool: &PgPool,
    schema: &str,
) -> Result<ParkedKeys, sqlx::Error> {
    let rows: Vec<(Vec<u8>, uuid::Uuid, uuid::Uuid)> = sqlx::query_as(&format!(
        "SELECT record_key, head_id, last_id FROM {schema}.parked_keys"
    ))
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(key, head, last)| (key, ParkedKey { head, last }))
        .collect())
}
