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
//!   the broker before the checkpoint moves past it, and its key is **parked** (DESIGN.md
//!   section 6): later records of that key go to the DLQ behind it, so the order per key is
//!   kept, while other keys keep flowing. Parked keys live in the consumer's schema, written
//!   in the batch's transaction, so they survive a restart.
//! - The consumer also reads its retry topic `plexica.retry.{consumer}`, where the DLQ worker
//!   sends dead letters back (`retry`), releases parked keys (`release`) and moves the
//!   checkpoints back for a replay (`replay`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use event_schemas::Envelope;
use futures::FutureExt;
use futures::future::BoxFuture;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{DeliveryFuture, FutureProducer};
use rdkafka::{Offset, TopicPartitionList};
use sqlx::{Connection, PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

use crate::config::KafkaConfig;
use crate::dead_letter::{self, ErrorClass, Failure, Origin, Parking, Stage, control, header};
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

    fn class(&self) -> ErrorClass {
        match self {
            HandlerError::Retryable(_) => ErrorClass::Retryable,
            HandlerError::Permanent(_) => ErrorClass::Permanent,
        }
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

    /// Whether every effect of [`apply`](Self::apply) is in the transaction. Such a handler's
    /// batches are first applied without a savepoint per record (two round trips less per
    /// record); a batch in which anything fails is rolled back and applied again, record by
    /// record in savepoints. A handler with effects outside the transaction (calls, produced
    /// records) keeps the savepoints, so a failure never repeats them.
    const TRANSACTIONAL: bool = false;

    /// Applies one record. `tx` is a savepoint, or for a [`TRANSACTIONAL`](Self::TRANSACTIONAL)
    /// handler possibly the batch's transaction: an error rolls back this record only.
    /// Boxed, because the runner is spawned and a boxed future proves `Send` once, here.
    fn apply<'a>(
        &'a mut self,
        tx: &'a mut PgConnection,
        record: &'a Record<'a>,
    ) -> BoxFuture<'a, Result<(), HandlerError>>;

    /// Starts a batch: anything gathered for a batch that rolled back is forgotten.
    fn begin_batch(&mut self) {}

    /// Writes what the handler gathered over the batch's applied records, in its transaction,
    /// before the checkpoint (one statement for the batch instead of one per record).
    fn end_batch<'a>(
        &'a mut self,
        _tx: &'a mut PgConnection,
    ) -> BoxFuture<'a, Result<(), sqlx::Error>> {
        Box::pin(async { Ok(()) })
    }
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
    /// The consumer's `plexica.retry.{consumer}` topic, read beside `topics`; `None` for a
    /// consumer that takes no retries (the DLQ worker, whose input is the DLQ itself).
    pub retry_topic: Option<String>,
    /// Park the key of a dead-lettered record, so that its later records follow it.
    pub park_keys: bool,
}

/// A key parked for this consumer: its records go to the DLQ until it is released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ParkedKey {
    /// The dead letter that parked the key.
    head: uuid::Uuid,
    /// The latest dead letter of the key: a release naming an older one is stale.
    last: uuid::Uuid,
}

type ParkedKeys = HashMap<Vec<u8>, ParkedKey>;

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("Postgres: {0}")]
    Postgres(#[from] sqlx::Error),
}

/// Why a batch was not committed.
#[derive(Debug, thiserror::Error)]
enum BatchError {
    #[error(transparent)]
    Runner(#[from] RunnerError),
    /// A record of a batch applied without savepoints failed: apply it again with them.
    /// A handler's failure is the first of that record's in-line attempts.
    #[error("a record failed outside a savepoint")]
    NeedsSavepoints(Option<Box<FirstAttempt>>),
}

/// The failed first attempt at a record, made in a batch applied without savepoints.
#[derive(Debug)]
struct FirstAttempt {
    topic: String,
    partition: i32,
    offset: i64,
    failure: Failure,
}

impl FirstAttempt {
    fn of(&self, message: &BorrowedMessage<'_>) -> bool {
        self.offset == message.offset()
            && self.partition == message.partition()
            && self.topic == message.topic()
    }
}

impl From<sqlx::Error> for BatchError {
    fn from(error: sqlx::Error) -> Self {
        BatchError::Runner(error.into())
    }
}

impl From<rdkafka::error::KafkaError> for BatchError {
    fn from(error: rdkafka::error::KafkaError) -> Self {
        BatchError::Runner(error.into())
    }
}

#[derive(Debug, Clone, Copy)]
struct Checkpoint {
    next_offset: i64,
    fence_epoch: i64,
    /// A replay moved `next_offset` back: records past it are skipped until the consumer
    /// has sought back to it.
    rewound: bool,
    /// A replay from a time: records before `until` (where the consumer was when the replay
    /// came) and older than `from_ms` are not applied again. The broker's time index only
    /// gives a start at or before the time (tansu 0.6 answers the partition's start).
    replay: Option<Replay>,
}

#[derive(Debug, Clone, Copy)]
struct Replay {
    until: i64,
    /// 0 for a replay from an offset.
    from_ms: i64,
    /// The fence epoch when the replay came, in force again from `until` on.
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
fn retry_ddl(schema: &str) -> String {
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
    let mut ddl = handler.ddl(&spec.schema);
    if spec.park_keys || spec.retry_topic.is_some() {
        ddl.push_str(&retry_ddl(&spec.schema));
    }
    prepare_schema(&pool, &spec.schema, &ddl).await?;
    if let Some(retry_topic) = &spec.retry_topic {
        kafka::create_topics(
            kafka_config,
            &[event_schemas::topics::retry_spec(retry_topic)],
        )
        .await?;
    }
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
    let topics: Vec<&str> = spec
        .topics
        .iter()
        .chain(&spec.retry_topic)
        .map(String::as_str)
        .collect();
    consumer.subscribe(&topics)?;
    let mut stranded = crate::group_watch::StrandedWatch::new(
        &spec.group,
        &topics,
        Duration::from_millis(u64::from(kafka_config.session_timeout_ms)),
    );
    // Reloaded after every rebalance: another instance may have parked keys of partitions
    // this one was just given.
    let mut parked = ParkedKeys::new();
    let mut parked_generation = None;
    // Where this consumer sought back after a gap: the same gap seen again is accepted.
    let mut gaps: HashMap<(String, i32), (i64, u8)> = HashMap::new();
    readiness.set(&spec.name, true);
    tracing::info!(consumer = %spec.name, topics = ?spec.topics, "consumer started");

    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => break,
            message = consumer.recv() => message,
            () = stranded.tick() => {
                stranded.check(&consumer);
                continue;
            }
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
        // Retry records answer the DLQ as they are applied: never apply them twice.
        let mut savepoints = !H::TRANSACTIONAL
            || batch
                .iter()
                .any(|m| spec.retry_topic.as_deref() == Some(m.topic()));
        let mut first_attempt = None;
        let positions = loop {
            let generation = consumer.context().generation();
            if spec.park_keys && parked_generation != Some(generation) {
                match load_parked_keys(&pool, &spec.schema).await {
                    Ok(loaded) => {
                        parked = loaded;
                        parked_generation = Some(generation);
                    }
                    Err(error) => {
                        tracing::warn!(consumer = %spec.name, %error, "loading parked keys failed; retrying");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                }
            }
            // A working copy: a batch that rolls back leaves the parked keys as they were.
            let mut working = parked.clone();
            let context = BatchContext {
                spec: &spec,
                pool: &pool,
                producer: &producer,
                consumer: &consumer,
            };
            let mut seeks = HashMap::new();
            // A record of a parked key goes to the DLQ without a failure: keep the savepoints
            // for a batch that has one (keys parked by this batch fail it anyway).
            let savepoints_now = savepoints
                || batch
                    .iter()
                    .any(|m| m.key().is_some_and(|key| working.contains_key(key)));
            match apply_batch(
                &context,
                &mut handler,
                &batch,
                &mut working,
                &gaps,
                &mut seeks,
                Attempt {
                    savepoints: savepoints_now,
                    first: first_attempt.as_deref(),
                },
            )
            .await
            {
                Ok(positions) => {
                    parked = working;
                    for ((topic, partition), (offset, tried, target)) in seeks {
                        let sought =
                            consumer.seek(&topic, partition, target, Duration::from_secs(5));
                        match sought {
                            Ok(()) => {
                                tracing::warn!(consumer = %spec.name, %topic, partition, offset, ?target, "records skipped by the broker; sought back");
                                gaps.insert((topic, partition), (offset, tried));
                            }
                            // No longer ours (a rebalance): its next owner starts at the checkpoint.
                            Err(error) => {
                                tracing::warn!(consumer = %spec.name, %topic, partition, %error, "seek back to the checkpoint failed")
                            }
                        }
                    }
                    break Some(positions);
                }
                Err(BatchError::NeedsSavepoints(failed)) => {
                    savepoints = true;
                    first_attempt = failed;
                }
                Err(BatchError::Runner(error)) => {
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
        metrics::gauge!("plexica_consumer_parked_keys", "consumer" => spec.name.clone())
            .set(parked.len() as f64);
        seek_rewound(&spec, &consumer, &positions);
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

async fn load_parked_keys(pool: &PgPool, schema: &str) -> Result<ParkedKeys, sqlx::Error> {
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

/// `next_offset, fence_epoch, rewound, replay_until, replay_from_ms, replay_fence_epoch`.
type CheckpointRow = (i64, i64, bool, Option<i64>, Option<i64>, Option<i64>);

/// A checkpoint row as read, or the start of a partition never read.
fn checkpoint_of(row: Option<CheckpointRow>) -> Checkpoint {
    let (next_offset, fence_epoch, rewound, until, from_ms, replay_fence) =
        row.unwrap_or((0, 0, false, None, None, None));
    Checkpoint {
        next_offset,
        fence_epoch,
        rewound,
        replay: until.map(|until| Replay {
            until,
            from_ms: from_ms.unwrap_or(0),
            fence_epoch: replay_fence.unwrap_or(fence_epoch),
        }),
    }
}

/// What a batch works with besides the handler.
struct BatchContext<'a> {
    spec: &'a ConsumerSpec,
    pool: &'a PgPool,
    producer: &'a FutureProducer,
    consumer: &'a StreamConsumer<RebalanceContext>,
}

/// Applies a batch in one transaction; returns the next offset per partition.
async fn apply_batch<H: RecordHandler>(
    context: &BatchContext<'_>,
    handler: &mut H,
    batch: &[BorrowedMessage<'_>],
    parked: &mut ParkedKeys,
    gaps: &HashMap<(String, i32), (i64, u8)>,
    seeks: &mut HashMap<(String, i32), (i64, u8, Offset)>,
    attempt: Attempt<'_>,
) -> Result<HashMap<(String, i32), Checkpoint>, BatchError> {
    let spec = context.spec;
    let schema = &spec.schema;
    handler.begin_batch();
    let mut tx = context.pool.begin().await?;
    let mut checkpoints: HashMap<(String, i32), Checkpoint> = HashMap::new();
    // Dead letters are enqueued as the batch goes and acknowledged all at once before the
    // commit: a poisoned key's records cost no round trip each.
    let mut deliveries = Vec::new();
    for message in batch {
        let key = (message.topic().to_owned(), message.partition());
        if !checkpoints.contains_key(&key) {
            // FOR UPDATE: a consumer that lost this partition in a rebalance but is still
            // finishing a batch waits here, then sees the new offsets and skips.
            let row: Option<CheckpointRow> = sqlx::query_as(&format!(
                "SELECT next_offset, fence_epoch, rewound, replay_until, replay_from_ms,
                        replay_fence_epoch
                 FROM {schema}.checkpoints WHERE topic = $1 AND partition = $2 FOR UPDATE"
            ))
            .bind(&key.0)
            .bind(key.1)
            .fetch_optional(&mut *tx)
            .await?;
            checkpoints.insert(key.clone(), checkpoint_of(row));
        }
        let Some(checkpoint) = checkpoints.get_mut(&key) else {
            continue;
        };
        if message.offset() < checkpoint.next_offset {
            continue;
        }
        if message.offset() > checkpoint.next_offset && !checkpoint.rewound {
            // A record past the checkpoint: the records in between were not delivered.
            // tansu 0.6 answers a fetch from inside a record batch with the next batch, so
            // a consumer restarted mid-batch would skip the rest of that batch. Seek back to
            // the checkpoint; if the gap is still there, read the partition from its start
            // (the checkpoint skips what was applied); only a gap that survives both
            // (records gone by retention) is accepted.
            let tried = gaps
                .get(&key)
                .filter(|(offset, _)| *offset == checkpoint.next_offset)
                .map_or(0, |(_, tried)| *tried);
            if tried < 2 {
                let target = if tried == 0 {
                    Offset::Offset(checkpoint.next_offset)
                } else {
                    Offset::Beginning
                };
                seeks.insert(key.clone(), (checkpoint.next_offset, tried + 1, target));
                continue;
            }
            tracing::error!(consumer = %spec.name, topic = message.topic(), partition = message.partition(),
                offset = message.offset(), expected = checkpoint.next_offset,
                "records missing from the log after a seek back; going on from here");
        }
        if checkpoint.rewound {
            if message.offset() > checkpoint.next_offset {
                // Read before a replay moved the checkpoint back: wait for the seek.
                continue;
            }
            checkpoint.rewound = false;
        }
        if let Some(replay) = checkpoint.replay {
            if message.offset() >= replay.until {
                checkpoint.fence_epoch = checkpoint.fence_epoch.max(replay.fence_epoch);
                checkpoint.replay = None;
            } else if message
                .timestamp()
                .to_millis()
                .is_some_and(|t| t < replay.from_ms)
            {
                // Before the replay's time: not applied again, but a fence still counts.
                if let Some(envelope) = message
                    .headers()
                    .and_then(|h| Envelope::from_headers(h).ok())
                    .filter(Envelope::is_fence)
                {
                    kafka::admit(&mut checkpoint.fence_epoch, &envelope);
                }
                checkpoint.next_offset = message.offset() + 1;
                continue;
            }
        }
        if spec.retry_topic.as_deref() == Some(message.topic()) {
            checkpoint.next_offset = message.offset() + 1;
            control_record(context, handler, &mut tx, message, parked, &mut checkpoints).await?;
        } else {
            let fence_epoch = &mut checkpoint.fence_epoch;
            let this = Attempt {
                savepoints: attempt.savepoints,
                first: attempt.first.filter(|first| first.of(message)),
            };
            let verdict =
                process(spec, handler, &mut tx, message, fence_epoch, parked, this).await?;
            checkpoint.next_offset = message.offset() + 1;
            if !attempt.savepoints {
                match verdict {
                    Verdict::Done => {}
                    // The handler's failure is the record's first attempt; one before the
                    // handler (envelope, writer fence) is found again with savepoints.
                    Verdict::Failed(failure) if failure.stage == Stage::Handler => {
                        return Err(BatchError::NeedsSavepoints(Some(Box::new(FirstAttempt {
                            topic: message.topic().to_owned(),
                            partition: message.partition(),
                            offset: message.offset(),
                            failure,
                        }))));
                    }
                    Verdict::Failed(_) | Verdict::Parked(_) => {
                        return Err(BatchError::NeedsSavepoints(None));
                    }
                }
            }
            settle(context, &mut tx, message, verdict, parked, &mut deliveries).await?;
        }
    }
    handler.end_batch(&mut tx).await?;
    let mut progress = Vec::with_capacity(checkpoints.len());
    for ((topic, partition), checkpoint) in &checkpoints {
        sqlx::query(&format!(
            "INSERT INTO {schema}.checkpoints
                 (topic, partition, next_offset, fence_epoch, rewound, replay_until, replay_from_ms,
                  replay_fence_epoch, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now())
             ON CONFLICT (topic, partition) DO UPDATE
             SET next_offset = excluded.next_offset, fence_epoch = excluded.fence_epoch,
                 rewound = excluded.rewound, replay_until = excluded.replay_until,
                 replay_from_ms = excluded.replay_from_ms,
                 replay_fence_epoch = excluded.replay_fence_epoch, updated_at = excluded.updated_at"
        ))
        .bind(topic)
        .bind(partition)
        .bind(checkpoint.next_offset)
        .bind(checkpoint.fence_epoch)
        .bind(checkpoint.rewound)
        .bind(checkpoint.replay.map(|r| r.until))
        .bind(checkpoint.replay.map(|r| r.from_ms))
        .bind(checkpoint.replay.map(|r| r.fence_epoch))
        .execute(&mut *tx)
        .await?;
        progress.push(serde_json::json!({
            "topic": topic, "partition": partition, "nextOffset": checkpoint.next_offset,
        }));
    }
    for delivery in deliveries {
        dead_letter::acknowledged(delivery)
            .await
            .map_err(RunnerError::from)?;
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

/// What became of a record of the consumer's topics.
enum Verdict {
    /// Applied, or rightly ignored (a fence, a void record).
    Done,
    /// Could not be processed: dead-letter it and park its key.
    Failed(Failure),
    /// Its key is parked: it goes to the DLQ behind the key's head.
    Parked(ParkedKey),
}

/// How a batch, and each record of it, is applied.
#[derive(Clone, Copy)]
struct Attempt<'a> {
    /// Each record in a savepoint of its own, with in-line retries.
    savepoints: bool,
    /// The record whose first attempt, made without savepoints, failed, and how.
    first: Option<&'a FirstAttempt>,
}

/// Runs the reader rule and the handler for one record.
async fn process<H: RecordHandler>(
    spec: &ConsumerSpec,
    handler: &mut H,
    tx: &mut PgConnection,
    message: &BorrowedMessage<'_>,
    fence_epoch: &mut i64,
    parked: &ParkedKeys,
    attempt: Attempt<'_>,
) -> Result<Verdict, RunnerError> {
    let envelope = message.headers().map(Envelope::from_headers);
    let envelope = match envelope {
        Some(Ok(envelope)) => Some(envelope),
        Some(Err(error)) if spec.fenced => {
            return Ok(Verdict::Failed(Failure::permanent(Stage::Envelope, &error)));
        }
        None if spec.fenced => {
            let error = UnsignedRecord(
                "the record has no headers, so no writer-epoch: it was not written by the command processor",
            );
            return Ok(Verdict::Failed(Failure::permanent(
                Stage::WriterFence,
                &error,
            )));
        }
        Some(Err(_)) | None => None,
    };
    if spec.fenced
        && let Some(envelope) = &envelope
    {
        match kafka::admit(fence_epoch, envelope) {
            Admission::Apply => {}
            Admission::Fence { .. } => return Ok(Verdict::Done),
            Admission::Void {
                writer_epoch,
                fence_epoch,
            } => {
                tracing::warn!(consumer = %spec.name, topic = message.topic(), partition = message.partition(),
                        offset = message.offset(), writer_epoch, fence_epoch, "void record of a fenced writer ignored");
                metrics::counter!("plexica_void_records_total", "consumer" => spec.name.clone())
                    .increment(1);
                return Ok(Verdict::Done);
            }
            Admission::Unfenced => {
                let error = UnsignedRecord(
                    "the record lacks the writer-epoch header: it was not written by the command processor",
                );
                return Ok(Verdict::Failed(Failure::permanent(
                    Stage::WriterFence,
                    &error,
                )));
            }
        }
    }
    // After the reader rule, so that fences and void records of a parked key still count.
    if spec.park_keys
        && let Some(parked_key) = message.key().and_then(|key| parked.get(key))
    {
        return Ok(Verdict::Parked(*parked_key));
    }
    let record = Record { message, envelope };
    if !attempt.savepoints {
        // The caller rolls the batch back if this fails.
        return Ok(match handler.apply(tx, &record).await {
            Ok(()) => Verdict::Done,
            Err(error) => Verdict::Failed(Failure::from_error(error.class(), &error, 1)),
        });
    }
    let first = attempt.first.map(|first| &first.failure);
    if let Some(failure) = first.filter(|f| f.class == ErrorClass::Permanent) {
        return Ok(Verdict::Failed(failure.clone()));
    }
    Ok(
        match apply_with_retries(handler, tx, &record, INLINE_ATTEMPTS, first).await? {
            Ok(()) => Verdict::Done,
            Err(failure) => Verdict::Failed(failure),
        },
    )
}

/// Applies `record` in a savepoint, retrying a retryable failure up to `attempts` times in
/// all, counting a `first` attempt already made.
async fn apply_with_retries<H: RecordHandler>(
    handler: &mut H,
    tx: &mut PgConnection,
    record: &Record<'_>,
    attempts: u32,
    first: Option<&Failure>,
) -> Result<Result<(), Failure>, RunnerError> {
    let mut attempt = first.map_or(0, |f| f.attempts);
    let first_failure_at = first.map_or_else(chrono::Utc::now, |f| f.first_failure_at);
    if attempt > 0 {
        tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
    }
    loop {
        attempt += 1;
        let mut savepoint = tx.begin().await?;
        match handler.apply(&mut savepoint, record).await {
            Ok(()) => {
                savepoint.commit().await?;
                return Ok(Ok(()));
            }
            Err(error) => {
                savepoint.rollback().await?;
                let class = error.class();
                if class == ErrorClass::Retryable && attempt < attempts {
                    tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
                    continue;
                }
                let mut failure = Failure::from_error(class, &error, attempt);
                failure.first_failure_at = first_failure_at;
                return Ok(Err(failure));
            }
        }
    }
}

/// Dead-letters what `process` could not apply, parking its key in `tx`.
async fn settle(
    context: &BatchContext<'_>,
    tx: &mut PgConnection,
    message: &BorrowedMessage<'_>,
    verdict: Verdict,
    parked: &mut ParkedKeys,
    deliveries: &mut Vec<DeliveryFuture>,
) -> Result<(), RunnerError> {
    let spec = context.spec;
    let (failure, behind) = match verdict {
        Verdict::Done => return Ok(()),
        Verdict::Failed(failure) => (failure, None),
        Verdict::Parked(parked_key) => {
            let error = ParkedBehind(parked_key.head);
            let mut failure = Failure::from_error(ErrorClass::Retryable, &error, 0);
            failure.stage = Stage::Parked;
            (failure, Some(parked_key.head))
        }
    };
    let id = dead_letter::dead_letter_id(
        &spec.name,
        message.topic(),
        message.partition(),
        message.offset(),
    );
    let key = message.key().filter(|_| spec.park_keys);
    let parking = Parking {
        key_parked: key.is_some(),
        behind,
    };
    dead_letter(
        spec,
        context.producer,
        id,
        &Origin::of(message),
        message,
        &failure,
        parking,
        deliveries,
    )?;
    let Some(key) = key else { return Ok(()) };
    let schema = &spec.schema;
    sqlx::query(&format!(
        "INSERT INTO {schema}.parked_keys (record_key, head_id, last_id) VALUES ($1, $2, $2)
         ON CONFLICT (record_key) DO UPDATE
         SET last_id = excluded.last_id,
             parked_records = {schema}.parked_keys.parked_records + 1"
    ))
    .bind(key)
    .bind(id)
    .execute(&mut *tx)
    .await?;
    let entry = parked
        .entry(key.to_vec())
        .or_insert(ParkedKey { head: id, last: id });
    entry.last = id;
    if behind.is_none() {
        metrics::counter!("plexica_consumer_keys_parked_total", "consumer" => spec.name.clone())
            .increment(1);
    }
    Ok(())
}

/// Enqueues a dead letter; the batch waits for its acknowledgement before it commits.
#[allow(clippy::too_many_arguments)]
fn dead_letter(
    spec: &ConsumerSpec,
    producer: &FutureProducer,
    id: uuid::Uuid,
    origin: &Origin,
    message: &BorrowedMessage<'_>,
    failure: &Failure,
    parking: Parking,
    deliveries: &mut Vec<DeliveryFuture>,
) -> Result<(), RunnerError> {
    tracing::warn!(consumer = %spec.name, topic = %origin.topic, partition = origin.partition,
        offset = origin.offset, class = failure.class.as_str(), stage = failure.stage.as_str(),
        error = %failure.message, "record dead-lettered");
    metrics::counter!("plexica_dead_letters_total", "consumer" => spec.name.clone(), "class" => failure.class.as_str(), "stage" => failure.stage.as_str())
        .increment(1);
    let delivery = dead_letter::enqueue(
        producer,
        &spec.dlq_topic,
        &spec.name,
        id,
        origin,
        message,
        failure,
        parking,
    )?;
    deliveries.push(delivery);
    Ok(())
}

/// Handles a record of the consumer's retry topic: a dead letter to process again, a key to
/// release, or a replay. Answers the DLQ (`resolved`, `retry-failed`) before the commit.
async fn control_record<H: RecordHandler>(
    context: &BatchContext<'_>,
    handler: &mut H,
    tx: &mut PgConnection,
    message: &BorrowedMessage<'_>,
    parked: &mut ParkedKeys,
    checkpoints: &mut HashMap<(String, i32), Checkpoint>,
) -> Result<(), RunnerError> {
    let spec = context.spec;
    let schema = &spec.schema;
    let text = |name: &str| {
        message
            .headers()
            .and_then(|h| event_schemas::envelope::header_str(h, name))
            .map(str::to_owned)
    };
    match text(header::RECORD).as_deref() {
        Some(control::RETRY) => {
            let Some(id) = text(header::ID).and_then(|id| uuid::Uuid::parse_str(&id).ok()) else {
                tracing::error!(consumer = %spec.name, offset = message.offset(), "retry record without a dead letter id ignored");
                return Ok(());
            };
            let done: Option<uuid::Uuid> = sqlx::query_scalar(&format!(
                "SELECT dead_letter_id FROM {schema}.resolved_dead_letters WHERE dead_letter_id = $1"
            ))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            if done.is_some() {
                // Sent twice (a DLQ worker stopped between sending and recording): the
                // first delivery had its effect.
                tracing::info!(consumer = %spec.name, %id, "dead letter already resolved; retry skipped");
                return Ok(());
            }
            let round = text(header::RETRY_ROUND).unwrap_or_else(|| "0".to_owned());
            let envelope = message
                .headers()
                .and_then(|h| Envelope::from_headers(h).ok());
            let record = Record { message, envelope };
            let result = apply_with_retries(handler, tx, &record, 1, None).await?;
            let key = message.key();
            let about = [
                (header::ID, id.to_string()),
                (header::CONSUMER, spec.name.clone()),
                (header::RETRY_ROUND, round),
            ];
            match result {
                Ok(()) => {
                    sqlx::query(&format!(
                        "INSERT INTO {schema}.resolved_dead_letters (dead_letter_id) VALUES ($1)
                         ON CONFLICT DO NOTHING"
                    ))
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                    dead_letter::publish_record(
                        context.producer,
                        &spec.dlq_topic,
                        dead_letter::record::RESOLVED,
                        key,
                        &about,
                        None,
                    )
                    .await?;
                    metrics::counter!("plexica_dlq_retries_total", "consumer" => spec.name.clone(), "outcome" => "resolved").increment(1);
                }
                Err(failure) => {
                    let mut context_headers = about.to_vec();
                    context_headers.extend([
                        (header::ERROR_CLASS, failure.class.as_str().to_owned()),
                        (header::ERROR_MESSAGE, failure.message.clone()),
                        (
                            header::ERROR_CAUSES,
                            serde_json::to_string(&failure.causes).unwrap_or_default(),
                        ),
                    ]);
                    dead_letter::publish_record(
                        context.producer,
                        &spec.dlq_topic,
                        dead_letter::record::RETRY_FAILED,
                        key,
                        &context_headers,
                        None,
                    )
                    .await?;
                    metrics::counter!("plexica_dlq_retries_total", "consumer" => spec.name.clone(), "outcome" => "failed").increment(1);
                }
            }
        }
        Some(control::RELEASE) => {
            let Some(key) = message.key() else {
                return Ok(());
            };
            let through =
                text(header::RELEASE_THROUGH).and_then(|id| uuid::Uuid::parse_str(&id).ok());
            let current = parked.get(key).copied();
            // A release that knows of an older last dead letter than ours is stale: a record
            // was parked after the releaser looked, and it must be retried first.
            let release = match (current, through) {
                (None, _) => false,
                (Some(_), None) => true,
                (Some(current), Some(through)) => current.last == through,
            };
            if release {
                sqlx::query(&format!(
                    "DELETE FROM {schema}.parked_keys WHERE record_key = $1"
                ))
                .bind(key)
                .execute(&mut *tx)
                .await?;
                parked.remove(key);
                tracing::info!(consumer = %spec.name, key = %String::from_utf8_lossy(key), "parked key released");
            } else {
                tracing::info!(consumer = %spec.name, key = %String::from_utf8_lossy(key), "stale release ignored");
            }
        }
        Some(control::REPLAY) => {
            replay(context, tx, message, checkpoints).await?;
        }
        other => {
            tracing::error!(consumer = %spec.name, offset = message.offset(), kind = ?other, "unknown control record ignored");
        }
    }
    Ok(())
}

/// Moves the checkpoints of the consumer's topics back to an offset or a time. The rows are
/// marked `rewound`, so whichever instance owns a partition seeks back before it reads on.
async fn replay(
    context: &BatchContext<'_>,
    tx: &mut PgConnection,
    message: &BorrowedMessage<'_>,
    checkpoints: &mut HashMap<(String, i32), Checkpoint>,
) -> Result<(), RunnerError> {
    let spec = context.spec;
    let schema = &spec.schema;
    let text = |name: &str| {
        message
            .headers()
            .and_then(|h| event_schemas::envelope::header_str(h, name))
            .map(str::to_owned)
    };
    let from_offset = text(header::REPLAY_FROM_OFFSET).and_then(|o| o.parse::<i64>().ok());
    let from_time = text(header::REPLAY_FROM_TIMESTAMP).and_then(|t| t.parse::<i64>().ok());
    let only = text(header::REPLAY_TOPIC);
    let topics: Vec<&String> = spec
        .topics
        .iter()
        .filter(|t| only.as_ref().is_none_or(|only| only == *t))
        .collect();
    type Row = (
        String,
        i32,
        i64,
        i64,
        bool,
        Option<i64>,
        Option<i64>,
        Option<i64>,
    );
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT topic, partition, next_offset, fence_epoch, rewound, replay_until, replay_from_ms,
                replay_fence_epoch
         FROM {schema}.checkpoints WHERE topic = ANY($1) FOR UPDATE"
    ))
    .bind(topics.iter().map(|t| t.as_str()).collect::<Vec<_>>())
    .fetch_all(&mut *tx)
    .await?;
    // What this batch holds is newer than the rows.
    let current: Vec<((String, i32), Checkpoint)> = rows
        .into_iter()
        .map(
            |(topic, partition, next, fence, rewound, until, from_ms, replay_fence)| {
                let key = (topic, partition);
                let checkpoint = checkpoints.get(&key).copied().unwrap_or_else(|| {
                    checkpoint_of(Some((next, fence, rewound, until, from_ms, replay_fence)))
                });
                (key, checkpoint)
            },
        )
        .collect();
    let mut starts: HashMap<(String, i32), i64> = HashMap::new();
    match (from_offset, from_time) {
        (Some(offset), _) => {
            starts.extend(current.iter().map(|(key, _)| (key.clone(), offset.max(0))));
        }
        (None, Some(time)) => {
            let mut query = TopicPartitionList::new();
            for ((topic, partition), _) in &current {
                query.add_partition_offset(topic, *partition, Offset::Offset(time))?;
            }
            let consumer = context.consumer;
            let found = tokio::task::block_in_place(|| {
                consumer.offsets_for_times(query, Duration::from_secs(10))
            })?;
            for element in found.elements() {
                // No record at or after the time: nothing of the partition to replay.
                if let Offset::Offset(offset) = element.offset() {
                    starts.insert((element.topic().to_owned(), element.partition()), offset);
                }
            }
        }
        (None, None) => {
            tracing::error!(consumer = %spec.name, "replay without a start ignored");
            return Ok(());
        }
    }
    for (key, mut checkpoint) in current {
        let Some(&start) = starts.get(&key) else {
            continue;
        };
        if start >= checkpoint.next_offset {
            continue;
        }
        // A replay during a replay keeps the first one's end and fence epoch.
        let (until, fence_epoch) = match checkpoint.replay {
            Some(earlier) => (earlier.until, earlier.fence_epoch),
            None => (checkpoint.next_offset, checkpoint.fence_epoch),
        };
        checkpoint.replay = Some(Replay {
            until,
            from_ms: from_time.unwrap_or(0),
            fence_epoch,
        });
        checkpoint.next_offset = start;
        checkpoint.rewound = true;
        // The fence epoch in force at `start` is not known: the fences read again from
        // there raise it again, and the one of the replay's start is back at its end.
        checkpoint.fence_epoch = 0;
        tracing::info!(consumer = %spec.name, topic = %key.0, partition = key.1, offset = start, "replay: checkpoint moved back");
        checkpoints.insert(key, checkpoint);
    }
    Ok(())
}

/// Seeks the partitions a replay moved back, where this instance has them.
fn seek_rewound(
    spec: &ConsumerSpec,
    consumer: &StreamConsumer<RebalanceContext>,
    positions: &HashMap<(String, i32), Checkpoint>,
) {
    for ((topic, partition), checkpoint) in positions {
        if !checkpoint.rewound {
            continue;
        }
        let result = consumer.seek(
            topic,
            *partition,
            Offset::Offset(checkpoint.next_offset),
            Duration::from_secs(5),
        );
        if let Err(error) = result {
            // Another instance may own the partition; it seeks on its next record.
            tracing::debug!(consumer = %spec.name, %topic, partition, %error, "seek after replay failed");
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("parked behind dead letter {0}: an earlier record of the same key failed")]
struct ParkedBehind(uuid::Uuid);

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
