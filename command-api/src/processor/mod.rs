//! The command processor: the single writer of each partition (DESIGN.md section 4).
//!
//! A consumer group on `plexica.commands` gives each partition, and so each aggregate, one
//! owner at a time. For every command it decides with the pure domain, appends the events to
//! the same partition of the event topic, checks that its lease is still current, and only
//! then publishes the outcome and commits the command's offset.

pub mod ownership;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use domain::{AggregateKey, Command, Reason, Rejection, RejectionKind};
use event_schemas::commands::{CommandOutcome, CommandRecord, EventPosition};
use event_schemas::envelope::CommandPart;
use event_schemas::{Codec, CodecError, Envelope, Topics};
use infra::config::KafkaConfig;
use infra::dead_letter::{self, Failure, Stage};
use infra::group_watch::StrandedWatch;
use infra::http::{Problem, Readiness};
use infra::kafka::{self, RebalanceContext};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::directory::SharedDirectory;
use crate::outcomes::OutcomeStore;
use ownership::{Aggregate, OwnedPartition};

const CONSUMER_NAME: &str = "command-processor";

#[derive(Debug, thiserror::Error)]
pub enum ProcessorError {
    #[error("Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("Postgres: {0}")]
    Postgres(#[from] sqlx::Error),
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("codec: {0}")]
    Codec(#[from] CodecError),
    #[error("rebuilding partition {0} stalled: the event topics did not deliver up to the fence")]
    RebuildStalled(i32),
    #[error("partition {0} is not owned by this processor")]
    NotOwned(i32),
    #[error(
        "event at {topic}/{partition}@{offset} passes the reader rule but cannot be decoded: {reason}"
    )]
    Undecodable {
        topic: String,
        partition: i32,
        offset: i64,
        reason: String,
    },
}

pub struct Processor {
    consumer: StreamConsumer<RebalanceContext>,
    producer: FutureProducer,
    codec: Arc<Codec>,
    pool: PgPool,
    outcomes: OutcomeStore,
    /// What cross-aggregate rules read.
    directory: SharedDirectory,
    topics: Topics,
    kafka_config: KafkaConfig,
    owner: String,
    generation: u64,
    partitions: HashMap<i32, OwnedPartition>,
    /// Partitions whose lease another processor took during this assignment. Taking them back
    /// would fence the rightful owner: they wait for the rebalance that revokes them.
    lost: HashSet<i32>,
    stranded: StrandedWatch,
}

/// What became of one command record.
enum Handled {
    Done,
    /// Lost the lease: the record stays uncommitted for the new owner.
    Fenced,
    /// On a partition lost earlier in this assignment: left for its new owner.
    Skipped,
}

impl Processor {
    pub fn new(
        kafka_config: &KafkaConfig,
        topics: Topics,
        pool: PgPool,
        outcomes: OutcomeStore,
        codec: Arc<Codec>,
        directory: SharedDirectory,
    ) -> Result<Self, ProcessorError> {
        let consumer: StreamConsumer<RebalanceContext> =
            kafka::consumer_config(kafka_config, &topics.group("plexica.command-processor"))
                .create_with_context(RebalanceContext::committed())?;
        consumer.subscribe(&[&topics.commands()])?;
        let stranded = StrandedWatch::new(
            &topics.group("plexica.command-processor"),
            &[&topics.commands()],
            Duration::from_millis(u64::from(kafka_config.session_timeout_ms)),
        );
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".to_owned());
        Ok(Self {
            consumer,
            stranded,
            producer: kafka::producer(kafka_config)?,
            codec,
            pool,
            outcomes,
            directory,
            topics,
            kafka_config: kafka_config.clone(),
            owner: format!("{host}/{}/{}", std::process::id(), Uuid::now_v7().simple()),
            generation: 0,
            partitions: HashMap::new(),
            lost: HashSet::new(),
        })
    }

    pub async fn run(mut self, readiness: Readiness, shutdown: CancellationToken) {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = self.directory.caught_up() => {}
        }
        readiness.set(CONSUMER_NAME, true);
        tracing::info!(owner = %self.owner, "command processor started");
        loop {
            let message = tokio::select! {
                _ = shutdown.cancelled() => break,
                message = self.consumer.recv() => message,
                () = self.stranded.tick() => {
                    self.stranded.check(&self.consumer);
                    continue;
                }
            };
            let message = match message {
                Ok(message) => message.detach(),
                Err(error) => {
                    tracing::warn!(%error, "receiving commands failed");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let (partition, offset) = (message.partition(), message.offset());
            if self
                .consumer
                .context()
                .is_before_resume_point(message.topic(), partition, offset)
            {
                continue;
            }
            match self.handle(&message).await {
                Ok(Handled::Done) => self.commit(partition, offset),
                Ok(Handled::Fenced) => {
                    tracing::warn!(
                        partition,
                        "lease lost to another processor; leaving the partition to it"
                    );
                    self.partitions.remove(&partition);
                    self.lost.insert(partition);
                    self.pause(partition);
                }
                Ok(Handled::Skipped) => {}
                Err(error @ ProcessorError::Undecodable { .. }) => {
                    // Deciding without that event could contradict the log: the partition
                    // stops, its commands wait, and an operator is told.
                    tracing::error!(%error, partition, "partition stopped: its log holds an event that cannot be decoded");
                    metrics::gauge!("plexica_processor_stopped_partitions").increment(1.0);
                    self.partitions.remove(&partition);
                    self.lost.insert(partition);
                    self.pause(partition);
                }
                Err(error) => {
                    // Whatever was written is in the log; forget the partition's state and read
                    // the command again: the rebuild recognises a command that was applied.
                    tracing::warn!(%error, partition, offset, "command failed; it will be read again");
                    self.partitions.remove(&partition);
                    self.rewind(partition, offset);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        tracing::info!("command processor stopped");
    }

    async fn handle(
        &mut self,
        message: &rdkafka::message::OwnedMessage,
    ) -> Result<Handled, ProcessorError> {
        let generation = self.consumer.context().generation();
        if generation != self.generation {
            // Partitions may have moved: state built under the previous assignment is stale.
            self.partitions.clear();
            self.lost.clear();
            self.generation = generation;
        }
        let partition = message.partition();
        if self.lost.contains(&partition) {
            return Ok(Handled::Skipped);
        }
        let record: CommandRecord = match self.codec.decode(message.payload()).await {
            Ok(record) => record,
            Err(error) if error.is_retryable() => return Err(error.into()),
            Err(error) => {
                self.dead_letter(message, Failure::permanent(Stage::Envelope, &error))
                    .await?;
                return Ok(Handled::Done);
            }
        };
        let Ok(command_id) = Uuid::parse_str(&record.command_id) else {
            let failure = Failure::permanent(
                Stage::Envelope,
                &MalformedCommand("command_id is not a UUID"),
            );
            self.dead_letter(message, failure).await?;
            return Ok(Handled::Done);
        };
        if !self.partitions.contains_key(&partition) {
            let owned = ownership::acquire(
                partition,
                &self.owner,
                &self.pool,
                &self.producer,
                &self.codec,
                &self.topics,
                &self.kafka_config,
            )
            .await?;
            self.partitions.insert(partition, owned);
        }

        // Where a command's time goes, stage by stage: the figures behind the knee of
        // `cargo xtask bench` and the first thing to read when the reply latency grows.
        if let Some(produced_at) = message.timestamp().to_millis() {
            let waited = chrono::Utc::now().timestamp_millis() - produced_at;
            metrics::histogram!("plexica_command_stage_seconds", "stage" => "queued")
                .record(waited.max(0) as f64 / 1000.0);
        }
        let started = std::time::Instant::now();
        // A saga's commands carry the saga's correlation id; a command of its own has none.
        let correlation_id = message
            .headers()
            .and_then(|headers| {
                event_schemas::envelope::header_str(
                    headers,
                    event_schemas::envelope::header::CORRELATION_ID,
                )
            })
            .map(str::to_owned);
        let sent_at = message.timestamp().to_millis();
        let decision = self
            .decide(partition, command_id, correlation_id, &record, sent_at)
            .await?;
        let decided = started.elapsed();
        metrics::histogram!("plexica_command_stage_seconds", "stage" => "decided_and_appended")
            .record(decided.as_secs_f64());
        let Some(epoch) = self.partitions.get(&partition).map(|owned| owned.epoch) else {
            return Ok(Handled::Fenced);
        };
        let outcome = match &decision {
            Decision::Accepted { aggregate, .. } => {
                let events = aggregate
                    .applied
                    .get(&command_id)
                    .cloned()
                    .unwrap_or_default();
                outcome(&record, true, events, None)
            }
            Decision::Repeated(outcome) => outcome.clone(),
            Decision::Rejected(rejection) => {
                outcome(&record, false, vec![], Some(problem(rejection, command_id)))
            }
        };
        if !matches!(decision, Decision::Repeated(_)) {
            // In the log before the lease check: a decision that passes the check is one the
            // partition's next owner reads back, so a redelivery is answered with it.
            self.record_decision(partition, epoch, &outcome).await?;
        }
        if !ownership::still_owner(&self.pool, partition, epoch).await? {
            return Ok(Handled::Fenced);
        }
        metrics::histogram!("plexica_command_stage_seconds", "stage" => "lease_checked")
            .record((started.elapsed() - decided).as_secs_f64());
        let checked = started.elapsed();
        let Some(owned) = self.partitions.get_mut(&partition) else {
            return Ok(Handled::Fenced);
        };
        match decision {
            Decision::Accepted {
                key,
                aggregate,
                events,
            } => {
                for (version, event) in &events {
                    self.directory.apply(Some(*version), event);
                }
                owned.aggregates.insert(key.clone(), aggregate);
                owned.remember(command_id, Some(key));
            }
            Decision::Rejected(_) => {
                owned.rejected.insert(command_id, outcome.clone());
                owned.remember(command_id, None);
            }
            Decision::Repeated(_) => {}
        }
        self.outcomes.publish(&outcome).await?;
        metrics::histogram!("plexica_command_stage_seconds", "stage" => "outcome_published")
            .record((started.elapsed() - checked).as_secs_f64());
        metrics::histogram!("plexica_command_decide_seconds", "command" => record.command_type.clone())
            .record(started.elapsed().as_secs_f64());
        metrics::counter!("plexica_commands_total", "command" => record.command_type, "accepted" => outcome.accepted.to_string())
            .increment(1);
        Ok(Handled::Done)
    }

    /// Decides the command and, when accepted, appends its events. Returns the aggregate's
    /// next state without installing it: that waits for the lease check.
    async fn decide(
        &mut self,
        partition: i32,
        command_id: Uuid,
        correlation_id: Option<String>,
        record: &CommandRecord,
        sent_at: Option<i64>,
    ) -> Result<Decision, ProcessorError> {
        let Some(owned) = self.partitions.get(&partition) else {
            return Err(ProcessorError::NotOwned(partition));
        };
        if let Some(outcome) = owned.rejected.get(&command_id) {
            return Ok(Decision::Repeated(outcome.clone()));
        }
        let command = match Command::from_record(&record.aggregate_key, &record.payload) {
            Ok(command) => command,
            Err(rejection) => return Ok(Decision::Rejected(rejection)),
        };
        let key = command.aggregate_key();
        let epoch = owned.epoch;
        let mut aggregate = owned
            .aggregates
            .get(&key)
            .cloned()
            .unwrap_or_else(|| Aggregate::new(&key));
        if let Some(events) = aggregate.applied.get(&command_id) {
            return Ok(Decision::Repeated(outcome(
                record,
                true,
                events.clone(),
                None,
            )));
        }
        if sent_at.is_some_and(|sent| sent < ownership::remembered_since()) {
            // Its first decision, if it had one, is no longer remembered: deciding it now
            // could contradict what its client was told.
            return Ok(Decision::Rejected(Rejection::new(
                Reason::CommandExpired,
                format!(
                    "the command was sent more than {} hours ago and is no longer decided; send it again",
                    ownership::DECISIONS_REMEMBERED.as_secs() / 3600
                ),
            )));
        }
        let decided = {
            let directory = self.directory.read();
            domain::decide(&aggregate.state, &command, &directory)
        };
        let events = match decided {
            Ok(events) => events,
            Err(rejection) => return Ok(Decision::Rejected(rejection)),
        };
        // Every event is encoded before the first is sent: a registry outage fails the
        // command before any of its events reaches the log.
        let mut encoded = Vec::with_capacity(events.len());
        for event in &events {
            let topic = event.stream().topic(&self.topics);
            let value = self.codec.encode_event(&topic, event).await?;
            encoded.push((topic, value));
        }
        let mut written = Vec::with_capacity(events.len());
        let mut positions = Vec::with_capacity(events.len());
        let mut deliveries = Vec::with_capacity(events.len());
        let key_text = key.to_string();
        for (index, (event, (topic, value))) in events.iter().zip(encoded).enumerate() {
            aggregate.version += 1;
            let mut envelope = Envelope::new(event.event_type(), "/plexica/command-processor");
            envelope.subject = Some(key_text.clone());
            envelope.tenant_id = event
                .tenant_id()
                .map(str::to_owned)
                .or_else(|| record.actor_tenant_id.clone());
            envelope.user_id = Some(record.actor_id.clone());
            envelope.traceparent = record.traceparent.clone();
            envelope.correlation_id = correlation_id
                .clone()
                .or_else(|| Some(command_id.to_string()));
            envelope.causation_id = Some(command_id);
            envelope.aggregate_version = u64::try_from(aggregate.version).ok();
            envelope.writer_epoch = Some(epoch);
            // Readers count the command only once its last part is in the log; a prefix left
            // by a failure here is voided by the fence the next owner writes.
            envelope.command_part = CommandPart::of(index, events.len());
            // Explicit partition: the command's partition and its events' partition line up
            // whatever partitioner a client used for the command.
            let delivery = self.producer.send_result(
                FutureRecord::to(&topic)
                    .partition(partition)
                    .key(&key_text)
                    .payload(&value)
                    .headers(envelope.to_headers()),
            );
            let delivery = delivery.map_err(|(e, _)| ProcessorError::Kafka(e))?;
            deliveries.push((topic, event.event_type(), aggregate.version, delivery));
            aggregate.state = domain::evolve(aggregate.state.clone(), event);
            if let Ok(version) = u64::try_from(aggregate.version) {
                written.push((version, event.clone()));
            }
        }
        for (topic, event_type, version, delivery) in deliveries {
            let delivered = delivery
                .await
                .map_err(|_| ProcessorError::Kafka(rdkafka::error::KafkaError::Canceled))?
                .map_err(|(e, _)| ProcessorError::Kafka(e))?;
            positions.push(EventPosition {
                topic,
                partition: delivered.partition,
                offset: delivered.offset,
                event_type: event_type.to_owned(),
                aggregate_version: version,
            });
        }
        aggregate.applied.insert(command_id, positions);
        Ok(Decision::Accepted {
            key,
            aggregate,
            events: written,
        })
    }

    /// Writes a decision to `plexica.command-results`, in the command's partition and under
    /// the lease's epoch, so that the partition's next owner reads it back (and a fence voids
    /// a zombie's).
    async fn record_decision(
        &self,
        partition: i32,
        epoch: i64,
        outcome: &CommandOutcome,
    ) -> Result<(), ProcessorError> {
        let topic = self.topics.command_results();
        let value = self.codec.encode(&topic, outcome).await?;
        let mut envelope = Envelope::new(ownership::OUTCOME_TYPE, "/plexica/command-processor");
        envelope.subject = Some(outcome.aggregate_key.clone());
        envelope.causation_id = Uuid::parse_str(&outcome.command_id).ok();
        envelope.writer_epoch = Some(epoch);
        self.producer
            .send(
                FutureRecord::to(&topic)
                    .partition(partition)
                    .key(&outcome.command_id)
                    .payload(&value)
                    .headers(envelope.to_headers()),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| ProcessorError::Kafka(e))?;
        Ok(())
    }

    async fn dead_letter(
        &self,
        message: &rdkafka::message::OwnedMessage,
        failure: Failure,
    ) -> Result<(), ProcessorError> {
        tracing::warn!(error = %failure.message, offset = message.offset(), partition = message.partition(), "malformed command record dead-lettered");
        let id = dead_letter::dead_letter_id(
            CONSUMER_NAME,
            message.topic(),
            message.partition(),
            message.offset(),
        );
        let letter = dead_letter::DeadLetter {
            id,
            consumer: CONSUMER_NAME,
            origin: &dead_letter::Origin::of(message),
            message,
            failure: &failure,
            parking: dead_letter::Parking::default(),
        };
        dead_letter::publish(&self.producer, &self.topics.dlq(), letter).await?;
        Ok(())
    }

    fn commit(&self, partition: i32, offset: i64) {
        let mut tpl = TopicPartitionList::new();
        if tpl
            .add_partition_offset(
                &self.topics.commands(),
                partition,
                Offset::Offset(offset + 1),
            )
            .is_ok()
            && let Err(error) = self.consumer.commit(&tpl, CommitMode::Async)
        {
            tracing::warn!(%error, partition, "committing a command offset failed; it may be delivered again and will be recognised");
        }
    }

    fn pause(&self, partition: i32) {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.topics.commands(), partition);
        if let Err(error) = self.consumer.pause(&tpl) {
            tracing::warn!(%error, partition, "cannot pause a lost partition");
        }
    }

    fn rewind(&self, partition: i32, offset: i64) {
        let topic = self.topics.commands();
        let start = self.consumer.context().resume_at(&topic, partition, offset);
        let sought = kafka::blocking(|| {
            self.consumer.seek(
                &topic,
                partition,
                Offset::Offset(start),
                Duration::from_secs(5),
            )
        });
        if let Err(error) = sought {
            tracing::error!(%error, partition, offset, "cannot rewind to a failed command");
        }
    }
}

enum Decision {
    Accepted {
        key: AggregateKey,
        aggregate: Aggregate,
        /// The events written, with their aggregate versions.
        events: Vec<(u64, event_schemas::CoreEvent)>,
    },
    /// Decided before: its first outcome.
    Repeated(CommandOutcome),
    Rejected(Rejection),
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct MalformedCommand(&'static str);

fn outcome(
    record: &CommandRecord,
    accepted: bool,
    events: Vec<EventPosition>,
    rejection: Option<Problem>,
) -> CommandOutcome {
    CommandOutcome {
        command_id: record.command_id.clone(),
        aggregate_key: record.aggregate_key.clone(),
        accepted,
        events,
        rejection: rejection.and_then(|p| serde_json::to_string(&p).ok()),
        decided_at: chrono::Utc::now().timestamp_millis(),
    }
}

/// The RFC 7807 problem a rejected command is answered with.
pub fn problem(rejection: &Rejection, command_id: Uuid) -> Problem {
    use axum::http::StatusCode;
    let status = match rejection.kind() {
        RejectionKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
        RejectionKind::NotFound => StatusCode::NOT_FOUND,
        RejectionKind::Conflict => StatusCode::CONFLICT,
    };
    let reason = rejection.reason;
    let mut problem = Problem::new(status, reason.slug(), reason.title())
        .detail(rejection.detail.clone())
        .with("commandId", command_id.to_string());
    if !rejection.errors.is_empty() {
        problem = problem.with("errors", &rejection.errors);
    }
    if !rejection.allowed.is_empty() {
        problem = problem.with("allowed", &rejection.allowed);
    }
    if !rejection.missing.is_empty() {
        problem = problem.with("missing", &rejection.missing);
    }
    problem
}
