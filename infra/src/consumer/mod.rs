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
//!   in the batch's transaction, so they survive a restart; each batch reads its keys' rows
//!   under its checkpoints' locks, so that every instance of the consumer agrees on them.
//! - The consumer also reads its retry topic `plexica.retry.{consumer}`, where the DLQ worker
//!   sends dead letters back (`retry`), releases parked keys (`release`) and moves the
//!   checkpoints back for a replay (`replay`).

mod admission;
mod attempts;
mod batch;
mod control;
mod delivered;
mod local;
mod parking;
mod resting;
mod rests;
mod runner;
mod schema;

use event_schemas::Envelope;
use futures::future::BoxFuture;
use sqlx::PgConnection;

use crate::dead_letter::{ErrorClass, Origin};

pub use admission::TopicPartition;
pub use delivered::Delivered;
pub use resting::{FedTo, Resting, Wake};
pub use runner::run;
pub use schema::prepare_schema;

/// Largest number of records applied in one transaction. A batch takes only what has already
/// arrived, so it is this large only when a consumer is behind (a rebuild, a backlog), where
/// the batch's fixed costs (locks, checkpoints, the commit) and its wait for its dead letters'
/// acknowledgement are spread over more records: on tansu, 2,000 against 500 took a rebuild
/// from 13,347 to 14,380 events/s and healthy keys beside 1 % poison from 6,829 to 9,774 /s
/// (`docs/performance-history.md`).
const MAX_BATCH: usize = 2_000;
/// In-line attempts for a record whose failure may pass, before it is dead-lettered.
const INLINE_ATTEMPTS: u32 = 3;

/// Postgres notification channel on which every runner announces its progress after commit.
pub const PROGRESS_CHANNEL: &str = "plexica_consumer_progress";

/// A record handed to a handler, with its envelope when the headers carry one.
pub struct Record<'a> {
    pub message: &'a Delivered<'a>,
    pub envelope: Option<Envelope>,
    /// Where the record was written: the message's own place, or, for a dead letter sent back
    /// on the consumer's retry topic, the place of the record it retries.
    pub origin: Origin,
}

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// May pass: retried in line, then dead-lettered as retryable.
    #[error("{0}")]
    Retryable(Box<dyn std::error::Error + Send + Sync>),
    /// Will never pass for this record: dead-lettered at once.
    #[error("{0}")]
    Permanent(Box<dyn std::error::Error + Send + Sync>),
    /// Something the handler waits on is out of reach for now (a command not decided yet, the
    /// schema registry): not the record's fault, so nothing is dead-lettered; the batch is
    /// rolled back and applied again after a backoff, as after a Postgres outage.
    #[error("{0}")]
    Unavailable(Box<dyn std::error::Error + Send + Sync>),
}

impl HandlerError {
    pub fn permanent(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        HandlerError::Permanent(Box::new(error))
    }

    fn class(&self) -> ErrorClass {
        match self {
            HandlerError::Retryable(_) | HandlerError::Unavailable(_) => ErrorClass::Retryable,
            HandlerError::Permanent(_) => ErrorClass::Permanent,
        }
    }
}

/// A record that does not decode never will. A registry out of reach (no answer, or 502/503)
/// is no fault of the record: its batch waits for the registry. Dead-lettered as retryable,
/// every record read during a registry outage parked its key, and a platform reading the log
/// before its own embedded registry listened did that to itself.
impl From<event_schemas::CodecError> for HandlerError {
    fn from(error: event_schemas::CodecError) -> Self {
        if error.is_retryable() {
            HandlerError::Unavailable(Box::new(error))
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

    /// What the handler reads from a record before it writes anything.
    type Decoded: Send;

    /// Reads a record, touching no database. A record that fails here never reaches the
    /// batch's transaction, so a batch applied without savepoints goes on past it: an
    /// undecodable record costs the records around it nothing. Boxed, as `apply`.
    fn decode<'a>(
        &'a mut self,
        record: &'a Record<'a>,
    ) -> BoxFuture<'a, Result<Self::Decoded, HandlerError>>;

    /// Applies one decoded record. `tx` is a savepoint, or for a
    /// [`TRANSACTIONAL`](Self::TRANSACTIONAL) handler possibly the batch's transaction: an
    /// error rolls back this record only. Boxed, because the runner is spawned and a boxed
    /// future proves `Send` once, here.
    fn apply<'a>(
        &'a mut self,
        tx: &'a mut PgConnection,
        record: &'a Record<'a>,
        decoded: Self::Decoded,
    ) -> BoxFuture<'a, Result<(), HandlerError>>;

    /// Starts a batch: anything gathered for a batch that rolled back is forgotten. `writes`
    /// says whether the handler may leave its records' writes to [`end_batch`](Self::end_batch).
    fn begin_batch(&mut self, _writes: BatchWrites) {}

    /// Writes what the handler gathered over the batch's applied records, in its transaction,
    /// before the checkpoint (one statement for the batch instead of one per record). When
    /// this fails in a [`BatchWrites::Gathered`] batch, the batch is applied again
    /// [`BatchWrites::PerRecord`], so that a record whose write fails is found and
    /// dead-lettered alone.
    fn end_batch<'a>(
        &'a mut self,
        _tx: &'a mut PgConnection,
    ) -> BoxFuture<'a, Result<(), sqlx::Error>> {
        Box::pin(async { Ok(()) })
    }
}

/// How a batch's records reach the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchWrites {
    /// Each record in a savepoint of its own: a handler writes all of a record in
    /// [`RecordHandler::apply`], so that a failure is that record's.
    PerRecord,
    /// In the batch's transaction without savepoints: a handler may gather its records'
    /// writes and make them together in [`RecordHandler::end_batch`].
    Gathered,
}

/// Which of a consumer's topics it reads under the writer-fence reader rule: those the
/// command processor writes (the `core.*` topics), and not those others write (plugin topics,
/// the DLQ).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fencing {
    /// Every topic it reads, its retry topic included.
    Every,
    /// None of them.
    None,
    /// These topics only.
    Topics(Vec<String>),
}

impl Fencing {
    pub fn applies_to(&self, topic: &str) -> bool {
        match self {
            Fencing::Every => true,
            Fencing::None => false,
            Fencing::Topics(topics) => topics.iter().any(|fenced| fenced == topic),
        }
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
    /// Which topics hold the command processor's records, read under the writer-fence rule.
    pub fenced: Fencing,
    pub dlq_topic: String,
    /// The consumer's `plexica.retry.{consumer}` topic, read beside `topics`; `None` for a
    /// consumer that takes no retries (the DLQ worker, whose input is the DLQ itself).
    pub retry_topic: Option<String>,
    /// Park the key of a dead-lettered record, so that its later records follow it.
    pub park_keys: bool,
    /// How soon it must see a new record.
    pub pace: crate::kafka::Pace,
    /// For a rebuild's new generation, the schema of the generation that serves: a record
    /// that one dead-lettered and then settled without applying it (discarded, or left to an
    /// admin when its key was released) is passed over here too, so that the new generation
    /// neither parks its key for good nor applies what the serving one did not.
    pub serving: Option<String>,
    /// Hands the records of each batch, once committed, to the consumers of its process that
    /// read after it ([`crate::local_log::Stage::Applied`]): the catalog.
    pub hands_on: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("Postgres: {0}")]
    Postgres(#[from] sqlx::Error),
    #[error("a handler's dependency is out of reach: {0}")]
    Unavailable(String),
}
