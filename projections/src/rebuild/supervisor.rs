//! The supervisor of rebuilds: it claims a requested (or abandoned) rebuild, runs its new
//! generation, reports its progress as a heartbeat, and swaps it in once it has caught up.

use std::sync::Arc;
use std::time::Duration;

use event_schemas::{Codec, Topics};
use infra::config::KafkaConfig;
use infra::consumer::ConsumerSpec;
use infra::http::Readiness;
use infra::kafka::LogEnds;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

use super::generation::{Generation, Swap};
use super::{REQUESTED_CHANNEL, projection};
use crate::catalog;

/// A running rebuild whose owner has not been heard of for this long is taken over.
const ABANDONED_AFTER: &str = "30 seconds";
/// How often a running rebuild checks whether it can swap.
const TICK: Duration = Duration::from_millis(250);
/// How often it asks the broker for the log's ends and records its progress (the heartbeat).
const REPORT_EVERY: Duration = Duration::from_secs(1);
/// How often its progress goes to the log.
const LOG_EVERY: Duration = Duration::from_secs(5);

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
