//! Publishing a record a consumer could not process to `plexica.dlq`, with the context an
//! admin needs to understand, retry or discard it. The record keeps its key, value and
//! original headers; the `dlq-*` headers say where it came from and what went wrong.

use std::time::Duration;

use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

pub mod header {
    pub const RECORD: &str = "dlq-record";
    pub const ORIGINAL_TOPIC: &str = "dlq-original-topic";
    pub const ORIGINAL_PARTITION: &str = "dlq-original-partition";
    pub const ORIGINAL_OFFSET: &str = "dlq-original-offset";
    pub const ORIGINAL_TIMESTAMP: &str = "dlq-original-timestamp";
    pub const CONSUMER: &str = "dlq-consumer";
    pub const ERROR_CLASS: &str = "dlq-error-class";
    pub const ERROR_MESSAGE: &str = "dlq-error-message";
    pub const ERROR_CAUSES: &str = "dlq-error-causes";
    pub const ATTEMPTS: &str = "dlq-attempts";
    pub const FIRST_FAILURE_AT: &str = "dlq-first-failure-at";
    /// The dead letter a record is about: a UUID v5 of consumer, topic, partition and
    /// offset, so the same failure published twice names the same dead letter.
    pub const ID: &str = "dlq-id";
    /// Where the failure happened: `envelope`, `writer-fence`, `handler` or `parked`.
    pub const FAILING_STAGE: &str = "dlq-failing-stage";
    /// On a record parked behind an earlier dead letter of its key: that dead letter's id.
    pub const PARKED_BEHIND: &str = "dlq-parked-behind";
    /// `true` when the consumer parked the record's key: its later records follow it.
    pub const KEY_PARKED: &str = "dlq-key-parked";
    /// The retry round a `retried`, `retry-failed` or retry record is about (1, 2, ...).
    pub const RETRY_ROUND: &str = "dlq-retry-round";
    /// When a scheduled retry is due (RFC 3339).
    pub const NEXT_RETRY_AT: &str = "dlq-next-retry-at";
    /// Who asked for an admin action (the token's subject), or the worker itself.
    pub const ACTOR: &str = "dlq-actor";
    /// Why an admin discarded a dead letter.
    pub const REASON: &str = "dlq-reason";
    /// On a release: the last dead letter of the key the releaser knew of.
    pub const RELEASE_THROUGH: &str = "dlq-release-through";
    /// On a replay: where to start, an offset or a timestamp in milliseconds.
    pub const REPLAY_FROM_OFFSET: &str = "dlq-replay-from-offset";
    pub const REPLAY_FROM_TIMESTAMP: &str = "dlq-replay-from-timestamp";
    /// On a replay: the one source topic to replay (all of the consumer's topics if absent).
    pub const REPLAY_TOPIC: &str = "dlq-replay-topic";
}

/// Kinds of record on `plexica.dlq` (the `dlq-record` header): the DLQ's own event log.
pub mod record {
    /// A consumer could not process a record (or parked it behind an earlier one).
    pub const DEAD_LETTERED: &str = "dead-lettered";
    /// An admin asked for a retry at a time.
    pub const RETRY_SCHEDULED: &str = "retry-scheduled";
    /// The DLQ worker sent the record back to its consumer for another attempt.
    pub const RETRIED: &str = "retried";
    /// The consumer failed the retried record again.
    pub const RETRY_FAILED: &str = "retry-failed";
    /// The consumer processed the retried record.
    pub const RESOLVED: &str = "resolved";
    /// An admin gave the dead letter up.
    pub const DISCARDED: &str = "discarded";
    /// A parked key flows again, after its queue drained or on an admin's request.
    pub const KEY_RELEASED: &str = "key-released";
    /// An admin asked a consumer to read its topics again from an offset or a time.
    pub const REPLAY_REQUESTED: &str = "replay-requested";
}

/// Kinds of control record on a consumer's `plexica.retry.{consumer}` topic.
pub mod control {
    /// Process this dead letter again (key, value and original headers as they were).
    pub const RETRY: &str = "retry";
    /// Stop parking this key.
    pub const RELEASE: &str = "release";
    /// Move the checkpoints back.
    pub const REPLAY: &str = "replay";
}

/// Where in a consumer a record failed: part of the error fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Envelope,
    WriterFence,
    /// The handler could not read the record; nothing of it was written.
    Decode,
    Handler,
    Parked,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Envelope => "envelope",
            Stage::WriterFence => "writer-fence",
            Stage::Decode => "decode",
            Stage::Handler => "handler",
            Stage::Parked => "parked",
        }
    }
}

/// Namespace of dead letter ids (UUID v5).
const DEAD_LETTER_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x5d1e_a7f0_3c2b_4e8d_9a61_0b7c_d4e2_f391);

/// The id of the dead letter for `consumer` of the record at `topic`/`partition`/`offset`.
pub fn dead_letter_id(consumer: &str, topic: &str, partition: i32, offset: i64) -> uuid::Uuid {
    uuid::Uuid::new_v5(
        &DEAD_LETTER_NAMESPACE,
        format!("{consumer}\n{topic}\n{partition}\n{offset}").as_bytes(),
    )
}

/// Whether trying again may help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    Retryable,
    Permanent,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Retryable => "retryable",
            ErrorClass::Permanent => "permanent",
        }
    }
}

/// Why a record could not be processed.
#[derive(Debug, Clone)]
pub struct Failure {
    pub class: ErrorClass,
    pub message: String,
    /// The error's sources, outermost first.
    pub causes: Vec<String>,
    pub attempts: u32,
    pub first_failure_at: chrono::DateTime<chrono::Utc>,
    pub stage: Stage,
}

impl Failure {
    pub fn permanent(stage: Stage, error: &(dyn std::error::Error + 'static)) -> Self {
        let mut failure = Self::from_error(ErrorClass::Permanent, error, 1);
        failure.stage = stage;
        failure
    }

    pub fn from_error(
        class: ErrorClass,
        error: &(dyn std::error::Error + 'static),
        attempts: u32,
    ) -> Self {
        let mut causes = Vec::new();
        let mut source = error.source();
        while let Some(cause) = source {
            causes.push(cause.to_string());
            source = cause.source();
        }
        Self {
            class,
            message: error.to_string(),
            causes,
            attempts,
            first_failure_at: chrono::Utc::now(),
            stage: Stage::Handler,
        }
    }
}

/// How a dead letter relates to its key's queue.
#[derive(Debug, Clone, Copy, Default)]
pub struct Parking {
    /// The consumer parked the key: its later records follow this one into the DLQ.
    pub key_parked: bool,
    /// The record was parked behind this earlier dead letter of its key.
    pub behind: Option<uuid::Uuid>,
}

/// A record one consumer could not process, as it goes to the DLQ.
pub struct DeadLetter<'a, M> {
    /// The dead letter's id ([`dead_letter_id`]).
    pub id: uuid::Uuid,
    /// The consumer that failed on it.
    pub consumer: &'a str,
    /// Where the record was read.
    pub origin: &'a Origin,
    /// The record itself: its key, headers and payload are kept.
    pub message: &'a M,
    pub failure: &'a Failure,
    pub parking: Parking,
}

/// Writes a dead letter to `dlq_topic` and waits for the broker's acknowledgement: only then
/// may the consumer move past it.
pub async fn publish<M: Message>(
    producer: &FutureProducer,
    dlq_topic: &str,
    letter: DeadLetter<'_, M>,
) -> Result<(), rdkafka::error::KafkaError> {
    let delivery = enqueue(producer, dlq_topic, letter)?;
    acknowledged(dlq_topic, delivery).await
}

/// Waits for the broker's acknowledgement of an [`enqueue`]d dead letter (or any record sent
/// to `topic`), and rings this process's [`crate::doorbell`] for its partition.
pub async fn acknowledged(
    topic: &str,
    delivery: DeliveryFuture,
) -> Result<(), rdkafka::error::KafkaError> {
    match delivery.await {
        Ok(Ok(delivered)) => {
            crate::doorbell::ring([(topic, delivered.partition)]);
            Ok(())
        }
        Ok(Err((error, _))) => Err(error),
        Err(_) => Err(rdkafka::error::KafkaError::Canceled),
    }
}

/// Hands `message` to the producer as dead letter `id` without waiting: a consumer enqueues
/// a batch's dead letters and waits for all their acknowledgements before it commits. The
/// original headers are kept, except earlier `dlq-*` context (a retried record carries its
/// dead letter's).
pub fn enqueue<M: Message>(
    producer: &FutureProducer,
    dlq_topic: &str,
    letter: DeadLetter<'_, M>,
) -> Result<DeliveryFuture, rdkafka::error::KafkaError> {
    let DeadLetter {
        id,
        consumer,
        origin,
        message,
        failure,
        parking,
    } = letter;
    let mut headers = OwnedHeaders::new();
    if let Some(original) = message.headers() {
        for h in original.iter().filter(|h| !h.key.starts_with("dlq-")) {
            headers = headers.insert(Header {
                key: h.key,
                value: h.value,
            });
        }
    }
    let causes = serde_json::to_string(&failure.causes).unwrap_or_default();
    let mut context = vec![
        (header::RECORD, record::DEAD_LETTERED.to_owned()),
        (header::ID, id.to_string()),
        (header::ORIGINAL_TOPIC, origin.topic.clone()),
        (header::ORIGINAL_PARTITION, origin.partition.to_string()),
        (header::ORIGINAL_OFFSET, origin.offset.to_string()),
        (header::ORIGINAL_TIMESTAMP, origin.timestamp_ms.to_string()),
        (header::CONSUMER, consumer.to_owned()),
        (header::FAILING_STAGE, failure.stage.as_str().to_owned()),
        (header::KEY_PARKED, parking.key_parked.to_string()),
        (header::ERROR_CLASS, failure.class.as_str().to_owned()),
        (header::ERROR_MESSAGE, failure.message.clone()),
        (header::ERROR_CAUSES, causes),
        (header::ATTEMPTS, failure.attempts.to_string()),
        (
            header::FIRST_FAILURE_AT,
            failure.first_failure_at.to_rfc3339(),
        ),
    ];
    if let Some(head) = parking.behind {
        context.push((header::PARKED_BEHIND, head.to_string()));
    }
    for (key, value) in &context {
        headers = headers.insert(Header {
            key,
            value: Some(value.as_str()),
        });
    }
    let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(dlq_topic).headers(headers);
    if let Some(key) = message.key() {
        record = record.key(key);
    }
    if let Some(payload) = message.payload() {
        record = record.payload(payload);
    }
    producer.send_result(record).map_err(|(error, _)| error)
}

/// Where a record was written: its own position, or for a retried record the position its
/// dead letter names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// When it was written (a retried record: when it was sent back).
    pub timestamp_ms: i64,
}

impl Origin {
    pub fn of(message: &impl Message) -> Self {
        Self {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            timestamp_ms: message.timestamp().to_millis().unwrap_or_default(),
        }
    }

    /// The position of the record that a `retry` record of the DLQ worker sends back, from
    /// its `dlq-original-*` headers.
    pub fn retried(message: &impl Message) -> Option<Self> {
        let headers = message.headers()?;
        let text = |name| event_schemas::envelope::header_str(headers, name);
        Some(Self {
            topic: text(header::ORIGINAL_TOPIC)?.to_owned(),
            partition: text(header::ORIGINAL_PARTITION)?.parse().ok()?,
            offset: text(header::ORIGINAL_OFFSET)?.parse().ok()?,
            timestamp_ms: message.timestamp().to_millis().unwrap_or_default(),
        })
    }
}

/// Writes a record of the DLQ's own log (`kind`, one of [`record`]) with `context` headers,
/// keyed like the dead letter it is about so that it lands in the same partition, behind it.
pub async fn publish_record(
    producer: &FutureProducer,
    topic: &str,
    kind: &str,
    key: Option<&[u8]>,
    context: &[(&str, String)],
    payload: Option<&[u8]>,
) -> Result<(i32, i64), rdkafka::error::KafkaError> {
    let mut headers = OwnedHeaders::new().insert(Header {
        key: header::RECORD,
        value: Some(kind),
    });
    for (name, value) in context {
        headers = headers.insert(Header {
            key: name,
            value: Some(value.as_str()),
        });
    }
    let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).headers(headers);
    if let Some(key) = key {
        record = record.key(key);
    }
    if let Some(payload) = payload {
        record = record.payload(payload);
    }
    producer
        .send(record, Duration::from_secs(30))
        .await
        .map(|delivery| {
            crate::doorbell::ring([(topic, delivery.partition)]);
            (delivery.partition, delivery.offset)
        })
        .map_err(|(error, _)| error)
}
