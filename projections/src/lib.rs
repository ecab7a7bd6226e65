//! Projection workers. Each projection is a consumer of the shared runner
//! (`infra::consumer`): its tables and checkpoints live in a Postgres schema of its own,
//! updated in one transaction per batch, so it is exactly-once and rebuilds from the log when
//! its schema is dropped.

pub mod catalog;

use std::sync::Arc;

use event_schemas::{Codec, Topics};
use infra::config::KafkaConfig;
use infra::consumer::RunnerError;
use infra::http::Readiness;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// Runs every projection until shutdown.
pub async fn run(
    kafka: &KafkaConfig,
    topics: &Topics,
    pool: PgPool,
    codec: Arc<Codec>,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> Result<(), RunnerError> {
    infra::consumer::run(
        catalog::spec(topics),
        catalog::Catalog::new(codec),
        kafka,
        pool,
        readiness,
        shutdown,
    )
    .await
}
