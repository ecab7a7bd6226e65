//! Rebuilding a projection without downtime (DESIGN.md section 5).
//!
//! A rebuild is a row of `projection_rebuilds`. Every projections process supervises that
//! table; one claims a requested rebuild and runs a new **generation** of the projection: the
//! same consumer and handler, in a consumer group of its own, writing into a shadow schema
//! (`{schema}_rebuild`) from offset 0 while the current generation keeps serving. The shadow's
//! checkpoints are its own, so a rebuild whose process dies is taken over where it was.
//!
//! Once the new generation has read at least as far as the serving one on every partition, one
//! transaction swaps them: it locks both generations' checkpoints (so neither consumer commits
//! a batch meanwhile), carries over what belongs to the consumer rather than to a generation
//! (its parked keys, the dead letters it resolved, its retry topic's checkpoint), renames the
//! shadow schema to the served one and drops the old generation. Queries see the old
//! generation until that commit and the new one after it; a query under way finishes on the
//! old tables first. The serving consumer goes on from the new generation's checkpoints: what
//! it had read past them it reads again (the runner seeks back to a checkpoint it is ahead of).

use chrono::{DateTime, Utc};
use event_schemas::Topics;
use infra::consumer::ConsumerSpec;
use sqlx::PgPool;

use crate::catalog;

mod generation;
mod supervisor;

pub use supervisor::Supervisor;

/// Notified with a rebuild's id when one is requested, so that a supervisor starts at once.
pub const REQUESTED_CHANNEL: &str = "plexica_projection_rebuild_requested";

/// The consumer of a projection the platform runs, by name.
pub fn projection(name: &str, topics: &Topics) -> Option<ConsumerSpec> {
    (name == catalog::SCHEMA).then(|| catalog::spec(topics))
}

/// Names of the projections that can be rebuilt.
pub const PROJECTIONS: [&str; 1] = [catalog::SCHEMA];

/// A rebuild as the admin API reports it.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rebuild {
    pub id: uuid::Uuid,
    pub projection: String,
    /// REQUESTED, RUNNING, SWAPPED or FAILED.
    pub status: String,
    pub requested_by: String,
    pub requested_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub events_done: i64,
    pub events_total: i64,
    pub error: Option<String>,
}

const REBUILD_COLUMNS: &str = "id, projection, status, requested_by, requested_at, started_at, \
                               finished_at, events_done, events_total, error";

#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("a rebuild of {} is already {}", .0.projection, .0.status)]
    AlreadyUnderWay(Box<Rebuild>),
    #[error("Postgres: {0}")]
    Postgres(#[from] sqlx::Error),
}

/// Records a request to rebuild `projection` (a name of [`PROJECTIONS`]); a supervisor takes
/// it up. One at a time per projection.
pub async fn request(
    pool: &PgPool,
    projection: &str,
    requested_by: &str,
) -> Result<Rebuild, RequestError> {
    let mut tx = pool.begin().await?;
    let inserted = sqlx::query_as::<_, Rebuild>(&format!(
        "INSERT INTO projection_rebuilds (id, projection, status, requested_by)
         VALUES ($1, $2, 'REQUESTED', $3)
         RETURNING {REBUILD_COLUMNS}"
    ))
    .bind(uuid::Uuid::now_v7())
    .bind(projection)
    .bind(requested_by)
    .fetch_one(&mut *tx)
    .await;
    let rebuild = match inserted {
        Ok(rebuild) => rebuild,
        Err(error) if infra::postgres::is_unique_violation(&error) => {
            drop(tx);
            let under_way = sqlx::query_as::<_, Rebuild>(&format!(
                "SELECT {REBUILD_COLUMNS} FROM projection_rebuilds
                 WHERE projection = $1 AND status IN ('REQUESTED', 'RUNNING')"
            ))
            .bind(projection)
            .fetch_optional(pool)
            .await?;
            return match under_way {
                Some(rebuild) => Err(RequestError::AlreadyUnderWay(Box::new(rebuild))),
                // It ended in between: the caller may ask again.
                None => Err(RequestError::Postgres(error)),
            };
        }
        Err(error) => return Err(error.into()),
    };
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(REQUESTED_CHANNEL)
        .bind(rebuild.id.to_string())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(rebuild)
}

/// One rebuild of `projection`, if it exists.
pub async fn find(
    pool: &PgPool,
    projection: &str,
    id: uuid::Uuid,
) -> Result<Option<Rebuild>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {REBUILD_COLUMNS} FROM projection_rebuilds WHERE id = $1 AND projection = $2"
    ))
    .bind(id)
    .bind(projection)
    .fetch_optional(pool)
    .await
}
