//! Projection workers. Each projection is a consumer of the shared runner
//! (`infra::consumer`): its tables and checkpoints live in a Postgres schema of its own,
//! updated in one transaction per batch, so it is exactly-once and rebuilds from the log when
//! its schema is dropped.

pub mod admin;
pub mod catalog;
pub mod rebuild;

use std::sync::Arc;

use event_schemas::{Codec, Topics};
use infra::config::KafkaConfig;
use infra::consumer::{ConsumerSpec, RunnerError};
use infra::http::Readiness;
use infra::kafka::Pace;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// Runs every projection, and the supervisor of their rebuilds, until shutdown. The catalog
/// reads at `catalog_pace`: [`Pace::Handed`] where the command processor runs in this process.
pub async fn run(
    kafka: &KafkaConfig,
    topics: &Topics,
    pool: PgPool,
    codec: Arc<Codec>,
    catalog_pace: Pace,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> Result<(), RunnerError> {
    let rebuilds = rebuild::Supervisor {
        kafka: kafka.clone(),
        topics: topics.clone(),
        pool: pool.clone(),
        codec: codec.clone(),
    };
    let (catalog, ()) = tokio::join!(
        infra::consumer::run(
            ConsumerSpec {
                pace: catalog_pace,
                ..catalog::spec(topics)
            },
            catalog::Catalog::new(codec, catalog::SCHEMA),
            kafka,
            pool,
            readiness,
            shutdown.clone(),
        ),
        rebuilds.run(shutdown),
    );
    catalog
}
