//! The DLQ worker: a first-class consumer of `plexica.dlq` (DESIGN.md section 6).
//!
//! - `store` folds the DLQ's own event log (`dead-lettered`, `retry-scheduled`, `retried`,
//!   `retry-failed`, `resolved`, `discarded`, `key-released`, `replay-requested`) into the
//!   Postgres schema `dlq`;
//! - `dispatcher` retries retryable dead letters with exponential backoff through each
//!   consumer's `plexica.retry.{consumer}` topic, and releases a parked key's queue in order
//!   once its head succeeded;
//! - `admin` is the REST API of super admins; every action is a record on the DLQ (audit).

pub mod admin;
mod dispatcher;
pub mod fingerprint;
mod store;

use std::sync::Arc;

use event_schemas::{Codec, Topics};
use infra::config::{DlqConfig, KafkaConfig};
use infra::consumer::{ConsumerSpec, Fencing, RunnerError};
use infra::dead_letter::{self, control, header, record};
use infra::http::Readiness;
use rdkafka::producer::FutureProducer;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

pub use store::DeadLetterStore;

/// Postgres schema of the dead-letter store.
pub const SCHEMA: &str = "dlq";

/// The `dlq-actor` of what the worker does by itself.
pub const WORKER_ACTOR: &str = "dlq-worker";

pub fn spec(topics: &Topics) -> ConsumerSpec {
    ConsumerSpec {
        name: "dlq-worker".to_owned(),
        group: topics.group("plexica.dlq-worker"),
        schema: SCHEMA.to_owned(),
        topics: vec![topics.dlq()],
        fenced: Fencing::None,
        dlq_topic: topics.dlq(),
        retry_topic: None,
        park_keys: false,
        pace: infra::kafka::Pace::Background,
        serving: None,
        hands_on: false,
    }
}

pub async fn run(
    kafka: &KafkaConfig,
    policy: &DlqConfig,
    codec: Arc<Codec>,
    topics: &Topics,
    pool: PgPool,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> Result<(), RunnerError> {
    let producer = infra::kafka::producer(kafka)?;
    let dispatcher = tokio::spawn(dispatcher::run(
        producer,
        topics.clone(),
        pool.clone(),
        shutdown.clone(),
    ));
    let result = infra::consumer::run(
        spec(topics),
        DeadLetterStore::new(policy.clone(), codec),
        kafka,
        pool,
        readiness,
        shutdown,
    )
    .await;
    if let Err(error) = dispatcher.await {
        tracing::error!(%error, "the DLQ retry dispatcher panicked");
    }
    result
}

/// Releases `key` for `consumer`: the `key-released` record for the audit, then the
/// control record the consumer acts on. `through` names the last dead letter of the key
/// the releaser knew of (`None`: release whatever came since).
pub(crate) async fn release(
    producer: &FutureProducer,
    topics: &Topics,
    consumer: &str,
    key: &str,
    through: Option<uuid::Uuid>,
    actor: &str,
) -> Result<(), rdkafka::error::KafkaError> {
    let mut context = vec![
        (header::CONSUMER, consumer.to_owned()),
        (header::ACTOR, actor.to_owned()),
    ];
    if let Some(through) = through {
        context.push((header::RELEASE_THROUGH, through.to_string()));
    }
    dead_letter::publish_record(
        producer,
        &topics.dlq(),
        record::KEY_RELEASED,
        Some(key.as_bytes()),
        &context,
        None,
    )
    .await?;
    dead_letter::publish_record(
        producer,
        &topics.retry(consumer),
        control::RELEASE,
        Some(key.as_bytes()),
        &context,
        None,
    )
    .await?;
    Ok(())
}
