//! The shared consumer runner: a consumer group whose progress lives in Postgres, in the
//! same transaction as the effects of the records (DESIGN.md section 5). Every projection and
//! the DLQ worker run on it.
//!
//! - A batch of records is applied, with its checkpoint rows `(topic, partition, next_offset,
//!   fence_epoch)`, in one transaction; Kafka's committed offsets are informational only.
//! - On assignment the consumer starts at its checkpoints, so dropping a consumer's schema
//!   rebuilds it from the log.
//! - On fenced topics the writer-fence reader rule applies, and the highest fence epoch travels
//!   with the offset.
//! - A record that cannot be processed after in-line retries goes to the DLQ, acknowledged by
//!   the broker before the checkpoint moves past it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use event_schemas::Envelope;
use futures::FutureExt;
use futures::future::BoxFuture;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::FutureProducer;
use rdkafka::{Offset, TopicPartitionList};
use sqlx::{Connection, PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

use crate::config::KafkaConfig;
use crate::dead_letter::{self, ErrorClass, Failure};
use crate::http::Readiness;
use crate::kafka::{self, Admission, RebalanceContext};

/// Largest number of records applied in one transaction.
const MAX_BATCH: usize = 500;
/// In-line attempts for a record whose failure may pass, before it is dead-lettered.
const INLINE_ATTEMPTS: u32 = 3;

/// Postgres notification channel on which every runner announces its progress after commit.
pub const PROGRESS_CHANNEL: &str = "plexica_consumer_progress";

/// A record handed to a handler, with its envelope when the headers carry one.
pub struct Record<'a> {
    pub message: &'a BorrowedMessage<'a>,
    pub envelope: Option<Envelope>,
}

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// May pass: retried in line, then dead-lettered as retryable.
    #[error("{0}")]
    Retryable(Box<dyn std::error::Error + Send + Sync>),
    /// Will never pass for this record: dead-lettered at once.
    #[error("{0}")]
    Permanent(Box<dyn std::error::Error + Send + Sync>),
}

impl HandlerError {
    pub fn permanent(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        HandlerError::Permanent(Box::new(error))
    }
}

/// A record that does not decode never will; an unreachable registry may come back.
impl From<event_schemas::CodecError> for HandlerError {
    fn from(error: event_schemas::CodecError) -> Self {
        if error.is_retryable() {
            HandlerError::Retryable(Box::new(error))
        } else {
            HandlerError::Permanent(Box::new(error))
        }
    }
}

/// A database error caused by the record's content (SQLSTATE classes 22, data exception,
/// and 23, integrity constraint) will not pass on retry; anything else may.
impl From<sqlx::Error> for HandlerError {
    fn from(error: sqlx::Error) -> Self {
        let data_error = error
            .as_database_error()
            .and_then(|e| e.code())
            .is_some_and(|code| code.starts_with("22") || code.starts_with("23"));
        if data_error {
            HandlerError::Permanent(Box::new(error))
        } else {
            HandlerError::Retryable(Box::new(error))
        }
    }
}

/// What a consumer does with its records, inside the runner's transaction.
pub trait RecordHandler: Send + 'static {
    /// Statements that create the handler's tables in `schema` when missing. They run at
    /// start-up, so a dropped schema comes back empty and is refilled from the log.
    fn ddl(&self, schema: &str) -> String;

    /// Applies one record. `tx` is a savepoint: an error rolls back this record only.
    /// Boxed, because the runner is spawned and a boxed future proves `Send` once, here.
    fn apply<'a>(
        &'a mut self,
        tx: &'a mut PgConnection,
        record: &'a Record<'a>,
    ) -> BoxFuture<'a, Result<(), HandlerError>>;
}

/// Where a consumer reads and where it keeps its state.
#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    /// Names the consumer in logs, metrics, dead letters and readiness.
    pub name: String,
    pub group: String,
    /// Postgres schema holding the consumer's tables and checkpoints.
    pub schema: String,
    pub topics: Vec<String>,
    /// Apply the writer-fence reader rule (the `core.*` topics).
    pub fenced: bool,
    pub dlq_topic: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("Postgres: {0}")]
    Postgres(#[from] sqlx::Error),
}

#[derive(Debug, Clone, Copy)]
struct Checkpoint {
    next_offset: i64,
    fence_epoch: i64,
}

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
         {ddl}"
    );
    // Without bind parameters this is sent as one simple query, so several statements run.
    sqlx::Executor::execute(&mut *tx, statements.as_str()).await?;
    tx.commit().await
}

/// Runs the consumer until `shutdown` is cancelled.
pub async fn run<H: RecordHandler>(
    spec: ConsumerSpec,
    mut handler: H,
    kafka_config: &KafkaConfig,
    pool: PgPool,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> Result<(), RunnerError> {
    readiness.register(&spec.name);
    prepare_schema(&pool, &spec.schema, &handler.ddl(&spec.schema)).await?;
    let producer = kafka::producer(kafka_config)?;
    let loader_pool = pool.clone();
    let loader_schema = spec.schema.clone();
    let context = RebalanceContext::external(Arc::new(move |_partitions| {
        let pool = loader_pool.clone();
        let schema = loader_schema.clone();
        async move {
            load_checkpoints(&pool, &schema)
                .await
                .map_err(|e| e.to_string())
        }
        .boxed()
    }));
    let consumer: StreamConsumer<RebalanceContext> =
        kafka::consumer_config(kafka_config, &spec.group).create_with_context(context)?;
    let topics: Vec<&str> = spec.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    readiness.set(&spec.name, true);
    tracing::info!(consumer = %spec.name, topics = ?spec.topics, "consumer started");

    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => break,
            message = consumer.recv() => message,
        };
        let mut batch = match first {
            Ok(message) => vec![message],
            Err(error) => {
                tracing::warn!(consumer = %spec.name, %error, "receiving failed");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        while batch.len() < MAX_BATCH {
            match consumer.recv().now_or_never() {
                Some(Ok(message)) => batch.push(message),
                Some(Err(error)) => {
                    tracing::warn!(consumer = %spec.name, %error, "receiving failed");
                    break;
                }
                None => break,
            }
        }
        let mut attempt = 0u32;
        let positions = loop {
            match apply_batch(&spec, &mut handler, &pool, &producer, &batch).await {
                Ok(positions) => break Some(positions),
                Err(error) => {
                    attempt += 1;
                    tracing::warn!(consumer = %spec.name, %error, attempt, "applying a batch failed; retrying");
                    let backoff = Duration::from_millis(100 * u64::from(attempt.min(50)));
                    tokio::select! {
                        _ = shutdown.cancelled() => break None,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                }
            }
        };
        let Some(positions) = positions else { break };
        metrics::counter!("plexica_consumer_records_total", "consumer" => spec.name.clone())
            .increment(batch.len() as u64);
        commit_informational(&consumer, &positions);
    }
    tracing::info!(consumer = %spec.name, "consumer stopped");
    Ok(())
}

async fn load_checkpoints(
    pool: &PgPool,
    schema: &str,
) -> Result<HashMap<(String, i32), i64>, sqlx::Error> {
    let rows: Vec<(String, i32, i64)> = sqlx::query_as(&format!(
        "SELECT topic, partition, next_offset FROM {schema}.checkpoints"
    ))
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|(t, p, o)| ((t, p), o)).collect())
}

/// Applies a batch in one transaction; returns the next offset per partition.
async fn apply_batch<H: RecordHandler>(
    spec: &ConsumerSpec,
    handler: &mut H,
    pool: &PgPool,
    producer: &FutureProducer,
    batch: &[BorrowedMessage<'_>],
) -> Result<HashMap<(String, i32), Checkpoint>, RunnerError> {
    let schema = &spec.schema;
    let mut tx = pool.begin().await?;
    let mut checkpoints: HashMap<(String, i32), Checkpoint> = HashMap::new();
    for message in batch {
        let key = (message.topic().to_owned(), message.partition());
        if !checkpoints.contains_key(&key) {
            // FOR UPDATE: a consumer that lost this partition in a rebalance but is still
            // finishing a batch waits here, then sees the new offsets and skips.
            let row: Option<(i64, i64)> = sqlx::query_as(&format!(
                "SELECT next_offset, fence_epoch FROM {schema}.checkpoints
                 WHERE topic = $1 AND partition = $2 FOR UPDATE"
            ))
            .bind(&key.0)
            .bind(key.1)
            .fetch_optional(&mut *tx)
            .await?;
            let (next_offset, fence_epoch) = row.unwrap_or((0, 0));
            checkpoints.insert(
                key.clone(),
                Checkpoint {
                    next_offset,
                    fence_epoch,
                },
            );
        }
        let Some(checkpoint) = checkpoints.get_mut(&key) else {
            continue;
        };
        if message.offset() < checkpoint.next_offset {
            continue;
        }
        if message.offset() > checkpoint.next_offset {
            tracing::warn!(consumer = %spec.name, topic = message.topic(), partition = message.partition(),
                offset = message.offset(), expected = checkpoint.next_offset, "the broker delivered a record past the checkpoint: the records between were not applied");
        }
        process(
            spec,
            handler,
            &mut tx,
            producer,
            message,
            &mut checkpoint.fence_epoch,
        )
        .await?;
        checkpoint.next_offset = message.offset() + 1;
    }
    let mut progress = Vec::with_capacity(checkpoints.len());
    for ((topic, partition), checkpoint) in &checkpoints {
        sqlx::query(&format!(
            "INSERT INTO {schema}.checkpoints (topic, partition, next_offset, fence_epoch, updated_at)
             VALUES ($1, $2, $3, $4, now())
             ON CONFLICT (topic, partition) DO UPDATE
             SET next_offset = excluded.next_offset, fence_epoch = excluded.fence_epoch,
                 updated_at = excluded.updated_at"
        ))
        .bind(topic)
        .bind(partition)
        .bind(checkpoint.next_offset)
        .bind(checkpoint.fence_epoch)
        .execute(&mut *tx)
        .await?;
        progress.push(serde_json::json!({
            "topic": topic, "partition": partition, "nextOffset": checkpoint.next_offset,
        }));
    }
    // Delivered at commit, so listeners never see progress that could still roll back.
    let payload = serde_json::json!({"consumer": spec.name, "positions": progress}).to_string();
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(PROGRESS_CHANNEL)
        .bind(payload)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(checkpoints)
}

/// Runs the reader rule and the handler for one record, dead-lettering what cannot pass.
async fn process<H: RecordHandler>(
    spec: &ConsumerSpec,
    handler: &mut H,
    tx: &mut PgConnection,
    producer: &FutureProducer,
    message: &BorrowedMessage<'_>,
    fence_epoch: &mut i64,
) -> Result<(), RunnerError> {
    let envelope = message.headers().map(Envelope::from_headers);
    let envelope = match envelope {
        Some(Ok(envelope)) => Some(envelope),
        Some(Err(error)) if spec.fenced => {
            return dead_letter(spec, producer, message, Failure::permanent(&error)).await;
        }
        None if spec.fenced => {
            let error = UnsignedRecord(
                "the record has no headers, so no writer-epoch: it was not written by the command processor",
            );
            return dead_letter(spec, producer, message, Failure::permanent(&error)).await;
        }
        Some(Err(_)) | None => None,
    };
    if spec.fenced
        && let Some(envelope) = &envelope
    {
        match kafka::admit(fence_epoch, envelope) {
            Admission::Apply => {}
            Admission::Fence { .. } => return Ok(()),
            Admission::Void {
                writer_epoch,
                fence_epoch,
            } => {
                tracing::warn!(consumer = %spec.name, topic = message.topic(), partition = message.partition(),
                        offset = message.offset(), writer_epoch, fence_epoch, "void record of a fenced writer ignored");
                metrics::counter!("plexica_void_records_total", "consumer" => spec.name.clone())
                    .increment(1);
                return Ok(());
            }
            Admission::Unfenced => {
                let error = UnsignedRecord(
                    "the record lacks the writer-epoch header: it was not written by the command processor",
                );
                return dead_letter(spec, producer, message, Failure::permanent(&error)).await;
            }
        }
    }
    let record = Record { message, envelope };
    let mut attempt = 0;
    let first_failure_at = chrono::Utc::now();
    loop {
        attempt += 1;
        let mut savepoint = tx.begin().await?;
        match handler.apply(&mut savepoint, &record).await {
            Ok(()) => {
                savepoint.commit().await?;
                return Ok(());
            }
            Err(error) => {
                savepoint.rollback().await?;
                let class = match error {
                    HandlerError::Retryable(_) if attempt < INLINE_ATTEMPTS => {
                        tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
                        continue;
                    }
                    HandlerError::Retryable(_) => ErrorClass::Retryable,
                    HandlerError::Permanent(_) => ErrorClass::Permanent,
                };
                let mut failure = Failure::from_error(class, &error, attempt);
                failure.first_failure_at = first_failure_at;
                return dead_letter(spec, producer, message, failure).await;
            }
        }
    }
}

async fn dead_letter(
    spec: &ConsumerSpec,
    producer: &FutureProducer,
    message: &BorrowedMessage<'_>,
    failure: Failure,
) -> Result<(), RunnerError> {
    tracing::warn!(consumer = %spec.name, topic = message.topic(), partition = message.partition(),
        offset = message.offset(), class = failure.class.as_str(), error = %failure.message, "record dead-lettered");
    metrics::counter!("plexica_dead_letters_total", "consumer" => spec.name.clone(), "class" => failure.class.as_str())
        .increment(1);
    dead_letter::publish(producer, &spec.dlq_topic, &spec.name, message, &failure).await?;
    Ok(())
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct UnsignedRecord(&'static str);

/// Tells the group how far this consumer got; only monitoring reads it.
fn commit_informational(
    consumer: &StreamConsumer<RebalanceContext>,
    positions: &HashMap<(String, i32), Checkpoint>,
) {
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), checkpoint) in positions {
        if tpl
            .add_partition_offset(topic, *partition, Offset::Offset(checkpoint.next_offset))
            .is_err()
        {
            return;
        }
    }
    if let Err(error) = consumer.commit(&tpl, CommitMode::Async) {
        tracing::debug!(%error, "informational offset commit failed");
    }
}
