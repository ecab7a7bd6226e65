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

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use event_schemas::{Codec, Topics};
use infra::config::KafkaConfig;
use infra::consumer::{ConsumerSpec, PROGRESS_CHANNEL};
use infra::http::Readiness;
use infra::kafka::LogEnds;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

use crate::catalog;

/// Notified with a rebuild's id when one is requested, so that a supervisor starts at once.
pub const REQUESTED_CHANNEL: &str = "plexica_projection_rebuild_requested";
/// A running rebuild whose owner has not been heard of for this long is taken over.
const ABANDONED_AFTER: &str = "30 seconds";
/// How often a running rebuild checks whether it can swap.
const TICK: Duration = Duration::from_millis(250);
/// How often it asks the broker for the log's ends and records its progress (the heartbeat).
const REPORT_EVERY: Duration = Duration::from_secs(1);
/// How often its progress goes to the log.
const LOG_EVERY: Duration = Duration::from_secs(5);
/// How long the swap waits for the consumers' batches and the queries under way to finish.
const SWAP_LOCK_TIMEOUT: &str = "2s";

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

/// What a supervisor needs to run a generation of a projection.
pub struct Supervisor {
    pub kafka: KafkaConfig,
    pub topics: Topics,
    pub pool: PgPool,
    pub codec: Arc<Codec>,
}

/// A rebuild this process claimed.
#[derive(Debug, sqlx::FromRow)]
struct Claimed {
    id: uuid::Uuid,
    projection: String,
    /// Another process had started it: its shadow schema holds what it did.
    resumed: bool,
}

impl Supervisor {
    /// Takes up requested rebuilds (and abandoned ones) until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let owner = format!("projections-{}", uuid::Uuid::now_v7());
        let mut listener = self.listen().await;
        loop {
            match self.claim(&owner).await {
                Ok(Some(claimed)) => {
                    self.rebuild(&owner, claimed, &shutdown).await;
                    continue;
                }
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, "looking for projection rebuilds failed"),
            }
            let requested = async {
                match listener.as_mut() {
                    Some(listener) => {
                        if let Err(error) = listener.recv().await {
                            tracing::debug!(%error, "rebuild requests listener interrupted");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                    None => std::future::pending().await,
                }
            };
            // The notification is a shortcut; polling also finds abandoned rebuilds.
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = requested => {}
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
        }
    }

    async fn listen(&self) -> Option<PgListener> {
        let mut listener = PgListener::connect_with(&self.pool)
            .await
            .inspect_err(
                |error| tracing::warn!(%error, "no listener for rebuild requests; polling"),
            )
            .ok()?;
        listener
            .listen(REQUESTED_CHANNEL)
            .await
            .inspect_err(
                |error| tracing::warn!(%error, "no listener for rebuild requests; polling"),
            )
            .ok()?;
        Some(listener)
    }

    async fn claim(&self, owner: &str) -> Result<Option<Claimed>, sqlx::Error> {
        sqlx::query_as(&format!(
            "WITH candidate AS (
                 SELECT id, started_at FROM projection_rebuilds
                 WHERE status = 'REQUESTED'
                    OR (status = 'RUNNING' AND heartbeat_at < now() - interval '{ABANDONED_AFTER}')
                 ORDER BY requested_at LIMIT 1
                 FOR UPDATE SKIP LOCKED
             )
             UPDATE projection_rebuilds r
             SET status = 'RUNNING', owner = $1, heartbeat_at = now(),
                 started_at = coalesce(r.started_at, now())
             FROM candidate WHERE r.id = candidate.id
             RETURNING r.id, r.projection, candidate.started_at IS NOT NULL AS resumed"
        ))
        .bind(owner)
        .fetch_optional(&self.pool)
        .await
    }

    /// Runs a claimed rebuild until it swaps, fails, is lost to another process, or the
    /// process shuts down (then it is left for the next supervisor to resume).
    async fn rebuild(&self, owner: &str, claimed: Claimed, shutdown: &CancellationToken) {
        let Some(live) = projection(&claimed.projection, &self.topics) else {
            let error = format!("no projection is named `{}`", claimed.projection);
            self.fail(owner, claimed.id, &error).await;
            return;
        };
        let generation = Generation::of(&live, claimed.id);
        tracing::info!(rebuild = %claimed.id, projection = %live.name, shadow = %generation.spec.schema,
            resumed = claimed.resumed, "rebuilding a projection into a new generation");
        if !claimed.resumed
            && let Err(error) = generation.clear(&self.pool).await
        {
            tracing::warn!(rebuild = %claimed.id, %error, "clearing the shadow schema failed");
            self.release(owner, claimed.id).await;
            return;
        }
        let stop = shutdown.child_token();
        let mut consumer = tokio::spawn({
            let (spec, kafka, pool) = (
                generation.spec.clone(),
                self.kafka.clone(),
                self.pool.clone(),
            );
            let handler = catalog::Catalog::new(self.codec.clone(), spec.schema.clone());
            let stop = stop.clone();
            async move {
                // Its readiness is not the service's: a rebuild does not make it unready.
                let readiness = Readiness::new(pool.clone());
                infra::consumer::run(spec, handler, &kafka, pool, readiness, stop).await
            }
        });
        let outcome = self
            .watch(
                owner,
                claimed.id,
                &live,
                &generation,
                &mut consumer,
                shutdown,
            )
            .await;
        stop.cancel();
        if let Err(error) = consumer.await {
            tracing::error!(%error, "the rebuild's consumer panicked");
        }
        match outcome {
            Outcome::Swapped => {}
            Outcome::Failed(error) => {
                self.fail(owner, claimed.id, &error).await;
                if let Err(error) = generation.clear(&self.pool).await {
                    tracing::warn!(rebuild = %claimed.id, %error, "dropping the failed generation failed");
                }
            }
            Outcome::Lost => {
                tracing::warn!(rebuild = %claimed.id, "another process took the rebuild over")
            }
            Outcome::ShutDown => self.release(owner, claimed.id).await,
        }
    }

    /// Reports the new generation's progress and swaps it in once it has caught up.
    async fn watch(
        &self,
        owner: &str,
        id: uuid::Uuid,
        live: &ConsumerSpec,
        generation: &Generation,
        consumer: &mut tokio::task::JoinHandle<Result<(), infra::consumer::RunnerError>>,
        shutdown: &CancellationToken,
    ) -> Outcome {
        let ends = match LogEnds::new(&self.kafka) {
            Ok(ends) => Some(ends),
            Err(error) => {
                tracing::warn!(%error, "no client for the log's ends: the rebuild reports no total");
                None
            }
        };
        let started = tokio::time::Instant::now();
        let mut last_log = started;
        let mut last_report: Option<tokio::time::Instant> = None;
        let (mut done, mut total) = (0, 0);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Outcome::ShutDown,
                result = &mut *consumer => {
                    let error = match result {
                        Ok(Ok(())) => "the new generation's consumer stopped".to_owned(),
                        Ok(Err(error)) => format!("the new generation's consumer failed: {error}"),
                        Err(error) => format!("the new generation's consumer panicked: {error}"),
                    };
                    return Outcome::Failed(error);
                }
                _ = tokio::time::sleep(TICK) => {}
            }
            if last_report.is_none_or(|at| at.elapsed() >= REPORT_EVERY) {
                let log_ends = match &ends {
                    Some(ends) => ends.of(live.topics.clone()).await,
                    None => None,
                };
                match generation.progress(&self.pool, log_ends.as_deref()).await {
                    Ok(progress) => (done, total) = progress,
                    Err(error) => {
                        tracing::warn!(rebuild = %id, %error, "reading the rebuild's progress failed");
                        continue;
                    }
                }
                match self.heartbeat(owner, id, done, total).await {
                    Ok(true) => last_report = Some(tokio::time::Instant::now()),
                    Ok(false) => return Outcome::Lost,
                    Err(error) => {
                        tracing::warn!(rebuild = %id, %error, "recording the rebuild's progress failed");
                        continue;
                    }
                }
            }
            if last_log.elapsed() >= LOG_EVERY {
                last_log = tokio::time::Instant::now();
                tracing::info!(rebuild = %id, projection = %live.name, events_done = done,
                    events_total = total, "rebuilding");
            }
            match generation.caught_up(&self.pool, live).await {
                Ok(true) => {}
                Ok(false) => continue,
                Err(error) => {
                    tracing::warn!(rebuild = %id, %error, "comparing the generations failed");
                    continue;
                }
            }
            // What the report says when it swaps in: as of now, not of the last heartbeat.
            let log_ends = match &ends {
                Some(ends) => ends.of(live.topics.clone()).await,
                None => None,
            };
            if let Ok(progress) = generation.progress(&self.pool, log_ends.as_deref()).await {
                (done, total) = progress;
            }
            match generation
                .swap(&self.pool, live, owner, id, done, total)
                .await
            {
                Ok(Swap::Done) => {
                    let seconds = started.elapsed().as_secs_f64();
                    tracing::info!(rebuild = %id, projection = %live.name, events = done,
                        seconds, events_per_second = done as f64 / seconds.max(1e-3),
                        "new generation swapped in");
                    return Outcome::Swapped;
                }
                Ok(Swap::NotYet) => {}
                Ok(Swap::Refused(reason)) => return Outcome::Failed(reason),
                Ok(Swap::Lost) => return Outcome::Lost,
                // A lock timeout or a deadlock with a query: the next tick tries again.
                Err(error) => {
                    tracing::info!(rebuild = %id, %error, "swap postponed");
                }
            }
        }
    }

    /// Records progress; false when the rebuild is no longer this process's.
    async fn heartbeat(
        &self,
        owner: &str,
        id: uuid::Uuid,
        done: i64,
        total: i64,
    ) -> Result<bool, sqlx::Error> {
        let updated = sqlx::query(
            "UPDATE projection_rebuilds
             SET events_done = $3, events_total = $4, heartbeat_at = now()
             WHERE id = $1 AND owner = $2 AND status = 'RUNNING'",
        )
        .bind(id)
        .bind(owner)
        .bind(done)
        .bind(total)
        .execute(&self.pool)
        .await?;
        Ok(updated.rows_affected() == 1)
    }

    async fn fail(&self, owner: &str, id: uuid::Uuid, error: &str) {
        tracing::error!(rebuild = %id, %error, "projection rebuild failed; the current generation keeps serving");
        let result = sqlx::query(
            "UPDATE projection_rebuilds
             SET status = 'FAILED', error = $3, finished_at = now()
             WHERE id = $1 AND owner = $2 AND status = 'RUNNING'",
        )
        .bind(id)
        .bind(owner)
        .bind(error)
        .execute(&self.pool)
        .await;
        if let Err(error) = result {
            tracing::warn!(rebuild = %id, %error, "recording the failed rebuild failed");
        }
    }

    /// Leaves a running rebuild for the next supervisor, at once.
    async fn release(&self, owner: &str, id: uuid::Uuid) {
        let result = sqlx::query(&format!(
            "UPDATE projection_rebuilds SET heartbeat_at = now() - interval '{ABANDONED_AFTER}' * 2
             WHERE id = $1 AND owner = $2 AND status = 'RUNNING'"
        ))
        .bind(id)
        .bind(owner)
        .execute(&self.pool)
        .await;
        if let Err(error) = result {
            tracing::warn!(rebuild = %id, %error, "releasing the rebuild failed");
        }
    }
}

enum Outcome {
    Swapped,
    Failed(String),
    Lost,
    ShutDown,
}

enum Swap {
    Done,
    /// The new generation is behind the serving one again.
    NotYet,
    Refused(String),
    Lost,
}

/// The new generation of a projection: its consumer, writing into the shadow schema.
struct Generation {
    spec: ConsumerSpec,
}

impl Generation {
    fn of(live: &ConsumerSpec, rebuild: uuid::Uuid) -> Self {
        let spec = ConsumerSpec {
            // Its own group, so that it reads from offset 0 beside the serving consumer.
            group: format!("{}.rebuild.{}", live.group, rebuild.simple()),
            schema: format!("{}_rebuild", live.schema),
            // Retries go to the serving generation; its resolved dead letters come over at
            // the swap. The name stays the consumer's, so a record that fails here has the
            // dead letter id it has in the serving generation.
            retry_topic: None,
            // What the serving generation dead-lettered and settled, it passes over.
            serving: Some(live.schema.clone()),
            ..live.clone()
        };
        Self { spec }
    }

    fn schema(&self) -> &str {
        &self.spec.schema
    }

    async fn clear(&self, pool: &PgPool) -> Result<(), sqlx::Error> {
        sqlx::query(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema()))
            .execute(pool)
            .await?;
        Ok(())
    }

    /// Records read of the projection's topics, and records in them.
    async fn progress(
        &self,
        pool: &PgPool,
        ends: Option<&[infra::kafka::TopicEnds]>,
    ) -> Result<(i64, i64), sqlx::Error> {
        let checkpoints: Vec<(String, i32, i64)> = match sqlx::query_as(&format!(
            "SELECT topic, partition, next_offset FROM {}.checkpoints",
            self.schema()
        ))
        .fetch_all(pool)
        .await
        {
            Ok(rows) => rows,
            // Its consumer has not created the schema yet.
            Err(error) if infra::postgres::is_undefined_table(&error) => vec![],
            Err(error) => return Err(error),
        };
        let next = |topic: &str, partition: i32| {
            checkpoints
                .iter()
                .find(|c| c.0 == topic && c.1 == partition)
                .map(|c| c.2)
        };
        let Some(ends) = ends else {
            let done = checkpoints
                .iter()
                .filter(|c| self.spec.topics.contains(&c.0))
                .map(|c| c.2)
                .sum();
            return Ok((done, 0));
        };
        let (mut done, mut total) = (0, 0);
        for (topic, watermarks) in ends {
            for (partition, (low, high)) in (0..).zip(watermarks) {
                total += high - low;
                done += next(topic, partition).map_or(0, |n| (n - low).clamp(0, high - low));
            }
        }
        Ok((done, total))
    }

    /// Whether the new generation has read as far as the serving one on every partition.
    async fn caught_up(&self, pool: &PgPool, live: &ConsumerSpec) -> Result<bool, sqlx::Error> {
        Ok(behind(pool, live, self.schema()).await? == Some(0))
    }

    /// Swaps the new generation in, if it has caught up (checked again under the locks).
    async fn swap(
        &self,
        pool: &PgPool,
        live: &ConsumerSpec,
        owner: &str,
        id: uuid::Uuid,
        done: i64,
        total: i64,
    ) -> Result<Swap, sqlx::Error> {
        let (serving, shadow) = (live.schema.as_str(), self.schema());
        let mut tx = pool.begin().await?;
        sqlx::query(&format!("SET LOCAL lock_timeout = '{SWAP_LOCK_TIMEOUT}'"))
            .execute(&mut *tx)
            .await?;
        // Every batch of either consumer starts by locking its checkpoint rows: with both
        // tables locked, neither commits anything until the swap has.
        sqlx::query(&format!(
            "LOCK TABLE {serving}.checkpoints, {shadow}.checkpoints IN ACCESS EXCLUSIVE MODE"
        ))
        .execute(&mut *tx)
        .await?;
        if behind(&mut *tx, live, shadow).await? != Some(0) {
            return Ok(Swap::NotYet);
        }
        // A record the new generation could not apply is parked there; swapping would lose
        // it from the read model unless the serving generation parks the same key behind the
        // same dead letter (then the DLQ keeps it for both).
        let differing: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT convert_from(record_key, 'UTF8')
             FROM {shadow}.parked_keys n FULL JOIN {serving}.parked_keys o USING (record_key)
             WHERE n.head_id IS DISTINCT FROM o.head_id
             ORDER BY 1 LIMIT 10"
        ))
        .fetch_all(&mut *tx)
        .await?;
        if !differing.is_empty() {
            return Ok(Swap::Refused(format!(
                "the new generation and the serving one do not park the same keys ({}): \
                 the DLQ holds records one of them could not apply; settle them and rebuild again",
                differing.join(", ")
            )));
        }
        // What belongs to the consumer, not to a generation, comes over.
        let topics: Vec<&str> = live.topics.iter().map(String::as_str).collect();
        // Several statements without parameters: sent as one simple query.
        let statements = format!(
            "DELETE FROM {shadow}.parked_keys;
             INSERT INTO {shadow}.parked_keys (record_key, head_id, last_id, parked_records, parked_at)
                 SELECT record_key, head_id, last_id, parked_records, parked_at
                 FROM {serving}.parked_keys;
             DELETE FROM {shadow}.dead_lettered;
             INSERT INTO {shadow}.dead_lettered (dead_letter_id, record_key, released)
                 SELECT dead_letter_id, record_key, released FROM {serving}.dead_lettered;
             INSERT INTO {shadow}.resolved_dead_letters (dead_letter_id, resolved_at)
                 SELECT dead_letter_id, resolved_at FROM {serving}.resolved_dead_letters
                 ON CONFLICT DO NOTHING;"
        );
        sqlx::Executor::execute(&mut *tx, statements.as_str()).await?;
        sqlx::query(&format!(
            "INSERT INTO {shadow}.checkpoints
                 (topic, partition, next_offset, fence_epoch, updated_at, rewound, replay_until,
                  replay_from_ms, replay_fence_epoch)
             SELECT topic, partition, next_offset, fence_epoch, updated_at, rewound, replay_until,
                    replay_from_ms, replay_fence_epoch
             FROM {serving}.checkpoints WHERE NOT (topic = ANY($1))
             ON CONFLICT (topic, partition) DO NOTHING"
        ))
        .bind(&topics)
        .execute(&mut *tx)
        .await?;
        let retired = format!("{serving}_retired");
        let statements = format!(
            "DROP SCHEMA IF EXISTS {retired} CASCADE;
             ALTER SCHEMA {serving} RENAME TO {retired};
             ALTER SCHEMA {shadow} RENAME TO {serving};
             DROP SCHEMA {retired} CASCADE;"
        );
        sqlx::Executor::execute(&mut *tx, statements.as_str()).await?;
        let recorded = sqlx::query(
            "UPDATE projection_rebuilds
             SET status = 'SWAPPED', finished_at = now(), heartbeat_at = now(),
                 events_done = greatest(events_done, $3), events_total = greatest(events_total, $4)
             WHERE id = $1 AND owner = $2 AND status = 'RUNNING'",
        )
        .bind(id)
        .bind(owner)
        .bind(done)
        .bind(total)
        .execute(&mut *tx)
        .await?;
        if recorded.rows_affected() != 1 {
            return Ok(Swap::Lost);
        }
        // Queries waiting for a consistency token look at the new checkpoints.
        let wake = serde_json::json!({"consumer": live.name, "positions": []}).to_string();
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(PROGRESS_CHANNEL)
            .bind(wake)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Swap::Done)
    }
}

/// Partitions of the projection's topics where the `shadow` generation is behind the serving
/// one; none when the shadow has no checkpoints yet.
async fn behind<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    live: &ConsumerSpec,
    shadow: &str,
) -> Result<Option<i64>, sqlx::Error> {
    let result = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM {serving}.checkpoints o
         LEFT JOIN {shadow}.checkpoints n USING (topic, partition)
         WHERE o.topic = ANY($1) AND coalesce(n.next_offset, 0) < o.next_offset",
        serving = live.schema
    ))
    .bind(&live.topics)
    .fetch_one(executor)
    .await;
    match result {
        Ok(count) => Ok(Some(count)),
        Err(error) if infra::postgres::is_undefined_table(&error) => Ok(None),
        Err(error) => Err(error),
    }
}
