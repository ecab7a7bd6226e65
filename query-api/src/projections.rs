//! How far each checkpointed consumer (the projections, the sagas, the DLQ worker) is behind
//! the log: its checkpoints in Postgres against the partitions' high watermarks.

use std::sync::Arc;

use async_graphql::{Context, Enum, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use infra::config::KafkaConfig;
use infra::consumer::ConsumerSpec;
use infra::kafka::LogEnds;
use sqlx::PgPool;

use crate::schema::{internal, super_admin};

/// The consumers whose lag the API reports, and a client to read the log's ends.
pub struct Monitor {
    consumers: Vec<ConsumerSpec>,
    log: Option<LogEnds>,
}

impl Monitor {
    pub fn new(kafka: &KafkaConfig, consumers: Vec<ConsumerSpec>) -> Self {
        let log = LogEnds::new(kafka)
            .inspect_err(|error| tracing::warn!(%error, "no client for the log's watermarks"))
            .ok();
        Self { consumers, log }
    }
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(rename_items = "SCREAMING_SNAKE_CASE")]
pub enum ProjectionStatus {
    /// Every record of its topics is applied.
    CaughtUp,
    /// Records are waiting.
    Behind,
    /// It has never committed a batch.
    NotStarted,
    /// The log's ends could not be read.
    Unknown,
}

/// One partition of a consumer's progress.
#[derive(SimpleObject, Clone)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    /// Offset of the next record the consumer will apply.
    pub next_offset: i64,
    /// Offset the next record written will get.
    pub high_watermark: Option<i64>,
    pub lag: Option<i64>,
}

#[derive(SimpleObject)]
pub struct Projection {
    pub name: String,
    /// Records written but not yet applied, over all its partitions; none when the log's
    /// ends could not be read.
    pub lag: Option<i64>,
    pub status: ProjectionStatus,
    /// When it last committed a batch.
    pub updated_at: Option<DateTime<Utc>>,
    pub partitions: Vec<PartitionLag>,
    /// Its latest rebuild (`POST /api/v1/admin/projections/{name}/rebuild`), if any.
    pub rebuild: Option<ProjectionRebuild>,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(rename_items = "SCREAMING_SNAKE_CASE")]
pub enum RebuildStatus {
    /// Waiting for a projections process to take it up.
    Requested,
    /// The new generation is filling its shadow tables; the current one serves.
    Running,
    /// The new generation caught up and serves now.
    Swapped,
    /// It stopped; the generation that was serving still serves (see `error`).
    Failed,
}

/// As `projection_rebuilds.status` spells it (a CHECK constraint keeps it to these).
impl TryFrom<String> for RebuildStatus {
    type Error = String;

    fn try_from(status: String) -> std::result::Result<Self, Self::Error> {
        match status.as_str() {
            "REQUESTED" => Ok(RebuildStatus::Requested),
            "RUNNING" => Ok(RebuildStatus::Running),
            "SWAPPED" => Ok(RebuildStatus::Swapped),
            "FAILED" => Ok(RebuildStatus::Failed),
            _ => Err(format!("unknown rebuild status `{status}`")),
        }
    }
}

/// A rebuild of a projection into a new generation, from offset 0.
#[derive(SimpleObject, sqlx::FromRow)]
pub struct ProjectionRebuild {
    pub id: uuid::Uuid,
    #[sqlx(try_from = "String")]
    pub status: RebuildStatus,
    /// Records of the projection's topics the new generation has read.
    pub events_done: i64,
    /// Records in those topics, as of the last progress report.
    pub events_total: i64,
    pub requested_by: String,
    pub requested_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
}

/// The latest rebuild of the consumer named `name`.
async fn latest_rebuild(pool: &PgPool, name: &str) -> Result<Option<ProjectionRebuild>> {
    sqlx::query_as(
        "SELECT id, status, events_done, events_total, requested_by, requested_at, started_at,
                finished_at, error
         FROM projection_rebuilds WHERE projection = $1
         ORDER BY requested_at DESC LIMIT 1",
    )
    .bind(name)
    .fetch_optional(pool)
    .await
    .map_err(internal)
}

#[derive(Default)]
pub struct ProjectionsQuery;

#[Object]
impl ProjectionsQuery {
    /// Every checkpointed consumer with how far it is behind the log. Super admins only.
    async fn projections(&self, ctx: &Context<'_>) -> Result<Vec<Projection>> {
        super_admin(ctx, "projections")?;
        let monitor = ctx.data::<Arc<Monitor>>()?;
        let pool = ctx.data::<PgPool>()?;
        let mut projections = Vec::with_capacity(monitor.consumers.len());
        for spec in &monitor.consumers {
            projections.push(progress_of(monitor, pool, spec).await?);
        }
        Ok(projections)
    }
}

async fn progress_of(monitor: &Monitor, pool: &PgPool, spec: &ConsumerSpec) -> Result<Projection> {
    let checkpoints: Vec<(String, i32, i64, DateTime<Utc>)> = match sqlx::query_as(&format!(
        "SELECT topic, partition, next_offset, updated_at FROM {}.checkpoints",
        spec.schema
    ))
    .fetch_all(pool)
    .await
    {
        Ok(rows) => rows,
        // Not started yet: its schema is created at its first start.
        Err(error) if infra::postgres::is_undefined_table(&error) => vec![],
        Err(error) => return Err(internal(error)),
    };
    let updated_at = checkpoints.iter().map(|c| c.3).max();
    let ends = match &monitor.log {
        Some(log) => log.of(spec.topics.clone()).await,
        None => None,
    };
    let mut partitions = Vec::new();
    for (topic, watermarks) in ends.iter().flatten() {
        for (partition, (_, high)) in watermarks.iter().enumerate() {
            let partition = i32::try_from(partition).unwrap_or(i32::MAX);
            let next_offset = checkpoints
                .iter()
                .find(|c| &c.0 == topic && c.1 == partition)
                .map_or(0, |c| c.2);
            partitions.push(PartitionLag {
                topic: topic.clone(),
                partition,
                next_offset,
                high_watermark: Some(*high),
                lag: Some((high - next_offset).max(0)),
            });
        }
    }
    if ends.is_none() {
        partitions = checkpoints
            .iter()
            .map(|(topic, partition, next_offset, _)| PartitionLag {
                topic: topic.clone(),
                partition: *partition,
                next_offset: *next_offset,
                high_watermark: None,
                lag: None,
            })
            .collect();
    }
    let lag = ends
        .is_some()
        .then(|| partitions.iter().filter_map(|p| p.lag).sum::<i64>());
    let status = match (lag, updated_at) {
        (None, _) => ProjectionStatus::Unknown,
        (Some(0), _) => ProjectionStatus::CaughtUp,
        (Some(_), None) => ProjectionStatus::NotStarted,
        (Some(_), Some(_)) => ProjectionStatus::Behind,
    };
    Ok(Projection {
        name: spec.name.clone(),
        lag,
        status,
        updated_at,
        partitions,
        rebuild: latest_rebuild(pool, &spec.name).await?,
    })
}
