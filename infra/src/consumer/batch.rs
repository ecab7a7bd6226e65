//! One batch of records applied in one transaction: the reader rule, the handler in
//! savepoints or not, dead letters and parking, and the checkpoints written last.

use std::collections::{BTreeSet, HashMap, HashSet};

use event_schemas::Envelope;
use rdkafka::Offset;
use rdkafka::consumer::StreamConsumer;
use rdkafka::message::Message;
use rdkafka::producer::{DeliveryFuture, FutureProducer};
use sqlx::{PgConnection, PgPool};

use super::admission::{self, Action, Checkpoint, SeekTarget, TopicPartition};
use super::attempts::{apply_with_retries, decode_with_retries};
use super::control::control_record;
use super::delivered::Delivered;
use super::parking::{ParkedKey, ParkedKeys, ParkingLedger};
use super::schema::{lock_checkpoints, lock_parked_keys, record_fence, skipped_dead_letters};
use super::{
    BatchWrites, ConsumerSpec, HandlerError, INLINE_ATTEMPTS, PROGRESS_CHANNEL, Record,
    RecordHandler, RunnerError,
};
use crate::dead_letter::{self, DeadLetter, ErrorClass, Failure, Origin, Parking, Stage, header};
use crate::kafka::{self, Admission, RebalanceContext};
use crate::whole_commands::WholeCommands;

/// Why a batch was not committed.
#[derive(Debug, thiserror::Error)]
pub(super) enum BatchError {
    #[error(transparent)]
    Runner(#[from] RunnerError),
    /// A record of a batch applied without savepoints failed: apply it again with them.
    /// A handler's failure is the first of that record's in-line attempts.
    #[error("a record failed outside a savepoint")]
    NeedsSavepoints(Option<Box<FirstAttempt>>),
}

/// The failed first attempt at a record, made in a batch applied without savepoints.
#[derive(Debug)]
pub(super) struct FirstAttempt {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub failure: Failure,
}

impl FirstAttempt {
    fn of(&self, message: &Delivered<'_>) -> bool {
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

/// Where the runner seeks after a batch commits.
#[derive(Default)]
pub(super) struct Seeks {
    /// Back over records the broker skipped: (the checkpoint, seeks so far, the target).
    pub gaps: HashMap<TopicPartition, (i64, u8, Offset)>,
    /// Back to the first event of a command whose last event the batch did not hold.
    pub open_commands: HashMap<TopicPartition, i64>,
}

/// What a batch works with besides the handler.
pub(super) struct BatchContext<'a> {
    pub spec: &'a ConsumerSpec,
    pub pool: &'a PgPool,
    pub producer: &'a FutureProducer,
    pub consumer: &'a StreamConsumer<RebalanceContext>,
}

/// Applies a batch in one transaction; returns the next offset per partition.
pub(super) async fn apply_batch<H: RecordHandler>(
    context: &BatchContext<'_>,
    handler: &mut H,
    batch: &[Delivered<'_>],
    parked: &mut ParkedKeys,
    gaps: &HashMap<TopicPartition, (i64, u8)>,
    seeks: &mut Seeks,
    attempt: Attempt<'_>,
) -> Result<HashMap<TopicPartition, Checkpoint>, BatchError> {
    let spec = context.spec;
    let schema = &spec.schema;
    let mut stages = Stages::new(spec);
    handler.begin_batch(if attempt.savepoints {
        BatchWrites::PerRecord
    } else {
        BatchWrites::Gathered
    });
    let mut tx = context.pool.begin().await?;
    // A consumer that lost a partition in a rebalance but is still finishing a batch holds
    // its row; the new owner waits here, then sees the new offsets and skips.
    let partitions: BTreeSet<TopicPartition> = batch
        .iter()
        .map(|m| TopicPartition::new(m.topic(), m.partition()))
        .collect();
    let mut checkpoints = lock_checkpoints(&mut tx, schema, &partitions).await?;
    if spec.park_keys {
        let keys: BTreeSet<&[u8]> = batch.iter().filter_map(|m| m.key()).collect();
        lock_parked_keys(&mut tx, schema, &keys, parked).await?;
    }
    let skipped = match &spec.serving {
        Some(serving) => skipped_dead_letters(&mut tx, serving, &spec.name, batch).await?,
        None => HashSet::new(),
    };
    stages.done("locked");
    // Dead letters are enqueued as the batch goes and acknowledged all at once before the
    // commit: a poisoned key's records cost no round trip each, and the broker writes them
    // while the batch goes on (sent together at its end, they made the batch wait longer).
    let mut deliveries = Vec::new();
    let mut ledger = ParkingLedger::default();
    let mut whole_commands: HashMap<
        TopicPartition,
        WholeCommands<(&Delivered<'_>, Option<Envelope>)>,
    > = HashMap::new();
    for message in batch {
        let key = TopicPartition::new(message.topic(), message.partition());
        let Some(checkpoint) = checkpoints.get_mut(&key) else {
            continue;
        };
        let tried = gaps
            .get(&key)
            .filter(|(offset, _)| *offset == checkpoint.next_offset)
            .map_or(0, |(_, tried)| *tried);
        let timestamp = message.timestamp().to_millis();
        match admission::admit(checkpoint, message.offset(), timestamp, tried) {
            Action::AlreadyApplied | Action::AwaitRewind => continue,
            Action::SeekBack { target, tried } => {
                let target = match target {
                    SeekTarget::Checkpoint(offset) => Offset::Offset(offset),
                    SeekTarget::Beginning => Offset::Beginning,
                };
                seeks
                    .gaps
                    .insert(key.clone(), (checkpoint.next_offset, tried, target));
                continue;
            }
            Action::BeforeReplayTime => {
                if let Some(envelope) = message
                    .headers()
                    .and_then(|h| Envelope::from_headers(h).ok())
                    .filter(Envelope::is_fence)
                    && let Admission::Fence { epoch } =
                        kafka::admit(&mut checkpoint.fence_epoch, &envelope)
                {
                    record_fence(&mut tx, schema, &key, message.offset(), epoch).await?;
                    if let Some(whole) = whole_commands.get_mut(&key) {
                        void_open_command(spec, &key, whole.interrupt());
                    }
                }
                continue;
            }
            Action::Apply {
                gap: Some(expected),
            } => {
                tracing::error!(consumer = %spec.name, topic = message.topic(), partition = message.partition(),
                    offset = message.offset(), expected,
                    "records missing from the log after a seek back; going on from here");
            }
            Action::Apply { gap: None } => {}
        }
        if spec.retry_topic.as_deref() == Some(message.topic()) {
            checkpoint.next_offset = message.offset() + 1;
            write_ledger(spec, &mut tx, &mut ledger).await?;
            control_record(context, handler, &mut tx, message, parked, &mut checkpoints).await?;
        } else {
            let id = || {
                let (topic, partition) = (message.topic(), message.partition());
                dead_letter::dead_letter_id(&spec.name, topic, partition, message.offset())
            };
            if !skipped.is_empty() && skipped.contains(&id()) {
                // The serving generation never applied it (a discarded dead letter).
                checkpoint.next_offset = message.offset() + 1;
                continue;
            }
            checkpoint.next_offset = message.offset() + 1;
            let whole = whole_commands.entry(key.clone()).or_default();
            let ready = match gate(spec, message, &mut checkpoint.fence_epoch) {
                Gate::Fence { epoch } => {
                    void_open_command(spec, &key, whole.interrupt());
                    record_fence(&mut tx, schema, &key, message.offset(), epoch).await?;
                    continue;
                }
                Gate::Settled(verdict) => {
                    settle(
                        context,
                        attempt,
                        &mut ledger,
                        message,
                        verdict,
                        parked,
                        &mut deliveries,
                    )?;
                    continue;
                }
                Gate::Admitted(Some(envelope)) if spec.fenced.applies_to(message.topic()) => {
                    let released = whole.admit(&envelope, (message, Some(envelope.clone())));
                    void_open_command(spec, &key, released.void);
                    released.apply
                }
                Gate::Admitted(envelope) => vec![(message, envelope)],
            };
            for (message, envelope) in ready {
                let this = Attempt {
                    savepoints: attempt.savepoints,
                    first: attempt.first.filter(|first| first.of(message)),
                };
                let verdict =
                    handle(spec, handler, &mut tx, message, envelope, parked, this).await?;
                settle(
                    context,
                    attempt,
                    &mut ledger,
                    message,
                    verdict,
                    parked,
                    &mut deliveries,
                )?;
            }
        }
    }
    // A command whose last event is not in this batch is read again from its first event.
    for (key, whole) in &mut whole_commands {
        let Some(head) = whole.hold_back().first().map(|(m, _)| m.offset()) else {
            continue;
        };
        if let Some(checkpoint) = checkpoints.get_mut(key) {
            checkpoint.next_offset = head;
        }
        seeks.open_commands.insert(key.clone(), head);
    }
    stages.done("handled");
    write_ledger(spec, &mut tx, &mut ledger).await?;
    handler
        .end_batch(&mut tx)
        .await
        .map_err(|error| gathered_writes_failed(spec, attempt, error))?;
    let mut progress = Vec::with_capacity(checkpoints.len());
    for (TopicPartition { topic, partition }, checkpoint) in &checkpoints {
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
    stages.done("written");
    for delivery in deliveries {
        dead_letter::acknowledged(&spec.dlq_topic, delivery)
            .await
            .map_err(RunnerError::from)?;
    }
    stages.done("dead_letters_acknowledged");
    // Delivered at commit, so listeners never see progress that could still roll back.
    let payload = serde_json::json!({"consumer": spec.name, "positions": progress}).to_string();
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(PROGRESS_CHANNEL)
        .bind(payload)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    stages.done("committed");
    Ok(checkpoints)
}

/// Times the stages of a batch, as `plexica_consumer_batch_stage_seconds{consumer, stage}`:
/// where a consumer that falls behind spends its time (the broker's acknowledgement of its
/// dead letters, Postgres, or its own work).
struct Stages<'a> {
    consumer: &'a str,
    since: std::time::Instant,
}

impl<'a> Stages<'a> {
    fn new(spec: &'a ConsumerSpec) -> Self {
        Stages {
            consumer: &spec.name,
            since: std::time::Instant::now(),
        }
    }

    fn done(&mut self, stage: &'static str) {
        let now = std::time::Instant::now();
        metrics::histogram!("plexica_consumer_batch_stage_seconds", "consumer" => self.consumer.to_owned(), "stage" => stage)
            .record(now.duration_since(self.since).as_secs_f64());
        self.since = now;
    }
}

/// Writes the batch's parked dead letters so far, logging once for the records parked behind
/// a head: a poisoned key with a million records behind it is one line a batch, not a million.
async fn write_ledger(
    spec: &ConsumerSpec,
    tx: &mut PgConnection,
    ledger: &mut ParkingLedger,
) -> Result<(), sqlx::Error> {
    let written = ledger.write(tx, &spec.schema).await?;
    if written.behind > 0 {
        tracing::warn!(consumer = %spec.name, records = written.behind, keys = written.keys,
            "records dead-lettered behind their parked keys' heads");
    }
    Ok(())
}

/// The writes a handler gathered over a batch failed: in a batch applied without savepoints
/// the failure may be any record's, so the batch is applied again record by record, where a
/// record whose write fails is retried in line and dead-lettered alone.
fn gathered_writes_failed(
    spec: &ConsumerSpec,
    attempt: Attempt<'_>,
    error: sqlx::Error,
) -> BatchError {
    if attempt.savepoints {
        return error.into();
    }
    tracing::info!(consumer = %spec.name, %error,
        "a batch's gathered writes failed; applying it again record by record");
    BatchError::NeedsSavepoints(None)
}

/// Logs the events of a command whose writer gave up before its last one: never applied.
fn void_open_command(
    spec: &ConsumerSpec,
    key: &TopicPartition,
    void: Vec<(&Delivered<'_>, Option<Envelope>)>,
) {
    let Some((first, _)) = void.first() else {
        return;
    };
    tracing::warn!(consumer = %spec.name, topic = %key.topic, partition = key.partition,
        offset = first.offset(), events = void.len(),
        "the events of a command its writer gave up before its last event are void");
    metrics::counter!("plexica_void_records_total", "consumer" => spec.name.clone())
        .increment(void.len() as u64);
}

/// What became of a record of the consumer's topics.
pub(super) enum Verdict {
    /// Applied, or rightly ignored (a fence, a void record).
    Done,
    /// Could not be processed: dead-letter it and park its key.
    Failed(Failure),
    /// Its key is parked: it goes to the DLQ behind the key's head.
    Parked(ParkedKey),
}

/// How a batch, and each record of it, is applied.
#[derive(Clone, Copy)]
pub(super) struct Attempt<'a> {
    /// Each record in a savepoint of its own, with in-line retries.
    pub savepoints: bool,
    /// The record whose first attempt, made without savepoints, failed, and how.
    pub first: Option<&'a FirstAttempt>,
}

/// What the envelope and the reader rule make of a record, before any handler sees it.
pub(super) enum Gate {
    /// To be handled, with its envelope when the headers carry one.
    Admitted(Option<Envelope>),
    /// A writer's fence: a command left open before it is void.
    Fence { epoch: i64 },
    /// Settled without the handler: a void record, or one that fails the envelope or the rule.
    Settled(Verdict),
}

/// Parses the envelope and applies the reader rule to one record.
pub(super) fn gate(spec: &ConsumerSpec, message: &Delivered<'_>, fence_epoch: &mut i64) -> Gate {
    let fenced = spec.fenced.applies_to(message.topic());
    let envelope = message.headers().map(Envelope::from_headers);
    let envelope = match envelope {
        Some(Ok(envelope)) => Some(envelope),
        Some(Err(error)) if fenced => {
            return Gate::Settled(Verdict::Failed(Failure::permanent(Stage::Envelope, &error)));
        }
        None if fenced => {
            let error = UnsignedRecord(
                "the record has no headers, so no writer-epoch: it was not written by the command processor",
            );
            return Gate::Settled(Verdict::Failed(Failure::permanent(
                Stage::WriterFence,
                &error,
            )));
        }
        Some(Err(_)) | None => None,
    };
    if fenced && let Some(envelope) = &envelope {
        match kafka::admit(fence_epoch, envelope) {
            Admission::Apply => {}
            Admission::Fence { epoch } => return Gate::Fence { epoch },
            Admission::Void {
                writer_epoch,
                fence_epoch,
            } => {
                tracing::warn!(consumer = %spec.name, topic = message.topic(), partition = message.partition(),
                        offset = message.offset(), writer_epoch, fence_epoch, "void record of a fenced writer ignored");
                metrics::counter!("plexica_void_records_total", "consumer" => spec.name.clone())
                    .increment(1);
                return Gate::Settled(Verdict::Done);
            }
            Admission::Unfenced => {
                let error = UnsignedRecord(
                    "the record lacks the writer-epoch header: it was not written by the command processor",
                );
                return Gate::Settled(Verdict::Failed(Failure::permanent(
                    Stage::WriterFence,
                    &error,
                )));
            }
        }
    }
    Gate::Admitted(envelope)
}

/// Runs the handler for one admitted record, unless its key is parked.
pub(super) async fn handle<H: RecordHandler>(
    spec: &ConsumerSpec,
    handler: &mut H,
    tx: &mut PgConnection,
    message: &Delivered<'_>,
    envelope: Option<Envelope>,
    parked: &ParkedKeys,
    attempt: Attempt<'_>,
) -> Result<Verdict, RunnerError> {
    // After the reader rule, so that fences and void records of a parked key still count.
    if spec.park_keys
        && let Some(parked_key) = message.key().and_then(|key| parked.get(key))
    {
        return Ok(Verdict::Parked(*parked_key));
    }
    let record = Record {
        message,
        envelope,
        origin: Origin::of(message),
    };
    if !attempt.savepoints {
        let decoded = match decode_with_retries(handler, &record, INLINE_ATTEMPTS).await? {
            Ok(decoded) => decoded,
            Err(failure) => return Ok(Verdict::Failed(failure)),
        };
        // The caller rolls the batch back if this fails.
        return Ok(match handler.apply(tx, &record, decoded).await {
            Ok(()) => Verdict::Done,
            Err(HandlerError::Unavailable(error)) => {
                return Err(RunnerError::Unavailable(error.to_string()));
            }
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

/// A batch applied without savepoints stops at a failure of the handler, to be applied
/// again with them; `Ok` hands the verdict back to be settled.
fn without_savepoints(
    attempt: Attempt<'_>,
    message: &Delivered<'_>,
    verdict: Verdict,
) -> Result<Verdict, BatchError> {
    if attempt.savepoints {
        return Ok(verdict);
    }
    match verdict {
        // The handler may have written part of the record, or aborted the transaction: the
        // batch starts again with savepoints, and this failure is the record's first attempt.
        Verdict::Failed(failure) if failure.stage == Stage::Handler => {
            Err(BatchError::NeedsSavepoints(Some(Box::new(FirstAttempt {
                topic: message.topic().to_owned(),
                partition: message.partition(),
                offset: message.offset(),
                failure,
            }))))
        }
        // Settled before any handler ran (the envelope, the writer fence) or parked behind its
        // key's head: the transaction holds nothing of the record, so the batch goes on, as
        // it would with savepoints, and a poisoned key costs the other keys nothing.
        verdict @ (Verdict::Done | Verdict::Failed(_) | Verdict::Parked(_)) => Ok(verdict),
    }
}

/// Dead-letters what `gate` or `handle` could not apply, parking its key in `ledger`; in a
/// batch applied without savepoints, a failure of the handler stops the batch instead (see
/// [`without_savepoints`]).
fn settle(
    context: &BatchContext<'_>,
    attempt: Attempt<'_>,
    ledger: &mut ParkingLedger,
    message: &Delivered<'_>,
    verdict: Verdict,
    parked: &mut ParkedKeys,
    deliveries: &mut Vec<DeliveryFuture>,
) -> Result<(), BatchError> {
    let spec = context.spec;
    let (failure, behind) = match without_savepoints(attempt, message, verdict)? {
        Verdict::Done => return Ok(()),
        Verdict::Failed(failure) => (failure, None),
        Verdict::Parked(parked_key) => {
            let error = ParkedBehind(parked_key.head);
            let mut failure = Failure::from_error(ErrorClass::Retryable, &error, 0);
            failure.stage = Stage::Parked;
            (failure, Some(parked_key.head))
        }
    };
    if feeds_itself(spec, message) {
        // A dead letter of this consumer's own failure, read back from its own input: another
        // dead letter would be read back and fail again, without end.
        tracing::error!(consumer = %spec.name, topic = message.topic(), partition = message.partition(),
            offset = message.offset(), class = failure.class.as_str(), error = %failure.message,
            "a dead letter of this consumer failed again; left in the log, not dead-lettered again");
        metrics::counter!("plexica_dead_letters_dropped_total", "consumer" => spec.name.clone())
            .increment(1);
        return Ok(());
    }
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
    let letter = DeadLetter {
        id,
        consumer: &spec.name,
        origin: &Origin::of(message),
        message,
        failure: &failure,
        parking,
    };
    dead_letter(spec, context.producer, letter, deliveries)?;
    let Some(key) = key else { return Ok(()) };
    ledger.push(key, id, behind.is_some());
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

/// Whether dead-lettering `message` would write to the consumer's own input a record that it
/// already wrote there: a consumer that reads its DLQ (the DLQ worker) dead-letters a record
/// once, never its own dead letters.
pub(super) fn feeds_itself(spec: &ConsumerSpec, message: &Delivered<'_>) -> bool {
    spec.topics.contains(&spec.dlq_topic)
        && message.topic() == spec.dlq_topic
        && message
            .headers()
            .and_then(|h| event_schemas::envelope::header_str(h, header::CONSUMER))
            == Some(spec.name.as_str())
}

/// Enqueues a dead letter; the batch waits for its acknowledgement before it commits.
pub(super) fn dead_letter(
    spec: &ConsumerSpec,
    producer: &FutureProducer,
    letter: DeadLetter<'_, Delivered<'_>>,
    deliveries: &mut Vec<DeliveryFuture>,
) -> Result<(), RunnerError> {
    let (origin, failure) = (letter.origin, letter.failure);
    if letter.parking.behind.is_none() {
        tracing::warn!(consumer = %spec.name, topic = %origin.topic, partition = origin.partition,
            offset = origin.offset, class = failure.class.as_str(), stage = failure.stage.as_str(),
            error = %failure.message, "record dead-lettered");
    } else {
        tracing::debug!(consumer = %spec.name, topic = %origin.topic, partition = origin.partition,
            offset = origin.offset, "record dead-lettered behind its parked key's head");
    }
    metrics::counter!("plexica_dead_letters_total", "consumer" => spec.name.clone(), "class" => failure.class.as_str(), "stage" => failure.stage.as_str())
        .increment(1);
    let delivery = dead_letter::enqueue(producer, &spec.dlq_topic, letter)?;
    deliveries.push(delivery);
    Ok(())
}

#[derive(Debug, thiserror::Error)]
#[error("parked behind dead letter {0}: an earlier record of the same key failed")]
pub(super) struct ParkedBehind(uuid::Uuid);

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(super) struct UnsignedRecord(&'static str);
