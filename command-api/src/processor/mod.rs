//! The command processor: the single writer of each partition (DESIGN.md section 4).
//!
//! A consumer group on `plexica.commands` gives each partition, and so each aggregate, one
//! owner at a time. For every command it decides with the pure domain, appends the events to
//! the same partition of the event topic, checks that its lease is still current, and only
//! then publishes the outcome and commits the command's offset.

mod batch;
mod commits;
mod decide;
pub mod handoff;
pub mod ownership;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use domain::{Rejection, RejectionKind};
use event_schemas::commands::{CommandOutcome, CommandRecord, EventPosition};
use event_schemas::{Codec, CodecError, Topics};
use infra::config::KafkaConfig;
use infra::dead_letter::{self, Failure, Stage};
use infra::group_member::GroupMember;
use infra::group_watch::StrandedWatch;
use infra::http::{Problem, Readiness};
use infra::kafka::{self, LogEnds, RebalanceContext};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::FutureProducer;
use rdkafka::{Offset, TopicPartitionList};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::directory::SharedDirectory;
use crate::outcomes::OutcomeStore;
use batch::{Batch, Effect, PartitionBatch, Staged};
use commits::OwedCommits;
use decide::{Context, Decision};
use futures::FutureExt;
use handoff::{LocalBus, Sequence};
use ownership::OwnedPartition;

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
    consumer: GroupMember,
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
    /// The commands this process's bus put on the log, straight from their acknowledgement,
    /// and its requests waiting for their outcomes.
    local_bus: Option<LocalBus>,
    /// Which record of each partition comes next, by either way in.
    sequence: Sequence,
    /// Where the partitions start, for those the group has no commit of.
    log_ends: LogEnds,
    /// Decided commands' offsets not committed yet.
    commits: OwedCommits,
}

/// How a batch's records came to the processor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    /// Fetched by its consumer: every record of its partitions, in log order.
    Consumed,
    /// From this process's bus, each the next of its partition (see [`handoff`]).
    HandedOff,
}

impl Processor {
    pub fn new(
        kafka_config: &KafkaConfig,
        topics: Topics,
        pool: PgPool,
        outcomes: OutcomeStore,
        codec: Arc<Codec>,
        directory: SharedDirectory,
        local_bus: Option<LocalBus>,
    ) -> Result<Self, ProcessorError> {
        // With the hand-off, the consumer brings only what other processes sent (and what the
        // hand-off let go): nobody here waits on its every poll, and on tansu each poll costs
        // the broker a statement per partition whether it has records or not.
        let pace = match local_bus {
            Some(_) => kafka::Pace::Background,
            None => kafka::Pace::Interactive,
        };
        let consumer = GroupMember::new(
            kafka::paced_consumer_config(
                kafka_config,
                &topics.group("plexica.command-processor"),
                pace,
            )
            .create_with_context(RebalanceContext::committed())?,
        );
        consumer.subscribe(&[&topics.commands()])?;
        // Its events and fences, once acknowledged (`PartitionBatch::hand_over`, the fences of
        // `ownership`).
        infra::local_log::Stage::Appended.feeds(topics.event_topics());
        let stranded = StrandedWatch::new(
            &topics.group("plexica.command-processor"),
            &[&topics.commands()],
            kafka_config.session_timeout(),
        );
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".to_owned());
        Ok(Self {
            consumer,
            stranded,
            // No linger: a batch's records are all enqueued before the first acknowledgement is
            // awaited, so waiting for more only delays the reply.
            producer: kafka::producer_config(kafka_config)
                .set("linger.ms", "0")
                .create()?,
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
            local_bus,
            sequence: Sequence::default(),
            log_ends: LogEnds::new(kafka_config)?,
            commits: OwedCommits::new(),
        })
    }

    pub async fn run(mut self, readiness: Readiness, shutdown: CancellationToken) {
        self.process(readiness, &shutdown).await;
        // A clean stop leaves nothing for the next owner to read again. Sent, not awaited:
        // librdkafka's close waits for the commits under way, within `leave`'s limit, so a
        // broker that is gone cannot hold the stop.
        self.follow_generation();
        infra::own_writes::stopped_writing_all();
        let owed = self.commits.take(tokio::time::Instant::now());
        self.send_commits(owed);
        self.consumer
            .leave(self.kafka_config.session_timeout())
            .await;
        tracing::info!("command processor stopped");
    }

    /// Decides the commands it is assigned until `shutdown`.
    async fn process(&mut self, readiness: Readiness, shutdown: &CancellationToken) {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = self.directory.caught_up() => {}
        }
        readiness.set(CONSUMER_NAME, true);
        tracing::info!(owner = %self.owner, "command processor started");
        loop {
            let first = tokio::select! {
                _ = shutdown.cancelled() => break,
                message = self.consumer.recv() => message,
                record = next_handed_off(&mut self.local_bus) => {
                    self.follow_generation();
                    self.sequence.handed_off(record);
                    while let Some(record) = self.local_bus.as_mut().and_then(LocalBus::try_recv) {
                        self.sequence.handed_off(record);
                    }
                    let ready = self.sequence.ready();
                    if !ready.is_empty() && self.decide_batches(ready, Way::HandedOff, shutdown).await.is_break() {
                        break;
                    }
                    continue;
                }
                () = self.consumer.context().assigned() => {
                    // A rebuild waits on the broker for as long as its timeouts allow: a
                    // stop does not wait for it.
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        () = self.take_assigned() => {}
                    }
                    continue;
                }
                () = self.stranded.tick() => {
                    self.stranded.check(&self.consumer);
                    continue;
                }
                () = owed_commits_due(&self.commits) => {
                    self.follow_generation();
                    if let Some(owed) = self.commits.due(tokio::time::Instant::now()) {
                        self.send_commits(owed);
                    }
                    continue;
                }
            };
            let first = match first {
                Ok(message) => message.detach(),
                Err(error) => {
                    tracing::warn!(%error, "receiving commands failed");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let records = self.drain(first);
            if self
                .decide_batches(records, Way::Consumed, shutdown)
                .await
                .is_break()
            {
                break;
            }
        }
    }

    /// Decides `records`, then the handed-off records they made next; breaks on `shutdown`.
    async fn decide_batches(
        &mut self,
        mut records: Vec<rdkafka::message::OwnedMessage>,
        mut way: Way,
        shutdown: &CancellationToken,
    ) -> std::ops::ControlFlow<()> {
        loop {
            // After a failed batch the view may be reloading: no decision on a half-read log.
            tokio::select! {
                _ = shutdown.cancelled() => return std::ops::ControlFlow::Break(()),
                () = self.directory.caught_up() => {}
            }
            if self.handle_batch(records, way).await {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            records = self.sequence.ready();
            if records.is_empty() {
                return std::ops::ControlFlow::Continue(());
            }
            way = Way::HandedOff;
        }
    }

    /// `first` and whatever else has already arrived, up to [`batch::MAX_COMMANDS`]. Records
    /// taken before a rebalance are dropped: their partitions may have moved, and those still
    /// held are delivered again from their committed offsets.
    fn drain(&self, first: rdkafka::message::OwnedMessage) -> Vec<rdkafka::message::OwnedMessage> {
        let mut generation = self.consumer.context().generation();
        let mut records = vec![first];
        // A poll that takes an event that is no record (the result of an offset commit)
        // also answers "not yet": only a few in a row mean the queue is empty.
        let mut empty_polls = 0;
        while records.len() < batch::MAX_COMMANDS {
            let Some(next) = self.consumer.recv().now_or_never() else {
                empty_polls += 1;
                if empty_polls == 8 {
                    break;
                }
                continue;
            };
            empty_polls = 0;
            let next = match next {
                Ok(next) => next.detach(),
                Err(error) => {
                    tracing::warn!(%error, "receiving commands failed");
                    break;
                }
            };
            let now = self.consumer.context().generation();
            if now != generation {
                records.clear();
                generation = now;
            }
            records.push(next);
        }
        records
    }

    /// Takes `partition`'s lease and rebuilds its aggregates.
    async fn acquire(&self, partition: i32) -> Result<OwnedPartition, ProcessorError> {
        ownership::acquire(
            partition,
            &self.owner,
            &self.pool,
            &self.producer,
            &self.codec,
            &self.topics,
            &self.kafka_config,
        )
        .await
    }

    /// Partitions may have moved since the state was built: under a new assignment it is
    /// stale.
    fn follow_generation(&mut self) {
        let generation = self.consumer.context().generation();
        if generation != self.generation {
            infra::own_writes::stopped_writing_all();
            self.partitions.clear();
            self.lost.clear();
            self.sequence.reset();
            self.commits.clear();
            self.generation = generation;
        }
    }

    /// Takes every assigned partition (its lease, its fences, its aggregates rebuilt) before
    /// its first command, so that this command does not wait for the rebuild. A partition
    /// that cannot be taken now is taken by its first command.
    async fn take_assigned(&mut self) {
        self.follow_generation();
        let assigned: Vec<i32> = match self.consumer.assignment() {
            Ok(assignment) => assignment
                .elements()
                .iter()
                .map(|e| e.partition())
                .collect(),
            Err(error) => {
                tracing::warn!(%error, "reading the assignment failed; partitions are taken by their first command");
                return;
            }
        };
        let wanted: Vec<i32> = assigned
            .into_iter()
            .filter(|p| !self.partitions.contains_key(p) && !self.lost.contains(p))
            .collect();
        // Together: each waits on the broker (its fences, the read of its partition), so the
        // first command waits for about one rebuild, not for one after the other.
        let taken =
            futures::future::join_all(wanted.iter().map(|&partition| self.acquire(partition)))
                .await;
        if self.generation != self.consumer.context().generation() {
            // Moved again meanwhile: the next assignment's wake-up takes its partitions.
            return;
        }
        let topic = self.topics.commands();
        // With no commit, the consumer starts where the partition does.
        let unplaced = wanted
            .iter()
            .any(|&p| self.consumer.context().resume_point(&topic, p).is_none());
        let starts = if unplaced {
            self.partition_starts(&topic).await
        } else {
            HashMap::new()
        };
        for (partition, taken) in wanted.into_iter().zip(taken) {
            match taken {
                Ok(owned) => {
                    self.partitions.insert(partition, owned);
                }
                Err(error) => {
                    tracing::warn!(partition, %error, "taking an assigned partition failed; its first command takes it");
                }
            }
            // Where the group's commits place it: every command before was decided. With no
            // commit the consumer starts where the partition does, and so does the sequence:
            // the first command of a new log is handed off too. (A commit that could not be
            // read places it too low, never too high: records wait for the consumer's first.)
            let resumes_at = self
                .consumer
                .context()
                .resume_point(&topic, partition)
                .or_else(|| starts.get(&partition).copied());
            if let Some(offset) = resumes_at {
                self.sequence.resumes_at(partition, offset);
            }
        }
    }

    /// The first offset of each partition of `topic`; none when the broker does not say.
    async fn partition_starts(&self, topic: &str) -> HashMap<i32, i64> {
        let ends = self.log_ends.of(vec![topic.to_owned()]).await;
        let Some([(_, watermarks)]) = ends.as_deref() else {
            tracing::warn!(
                "reading where the partitions start failed; their first commands wait for the consumer"
            );
            return HashMap::new();
        };
        (0..)
            .zip(watermarks)
            .map(|(partition, (low, _))| (partition, *low))
            .collect()
    }

    /// Decides `records` and answers them; whether a partition failed.
    async fn handle_batch(
        &mut self,
        records: Vec<rdkafka::message::OwnedMessage>,
        way: Way,
    ) -> bool {
        self.follow_generation();
        metrics::histogram!("plexica_command_batch_size").record(records.len() as f64);
        let mut batch = Batch::default();
        for message in &records {
            let partition = message.partition();
            if self.lost.contains(&partition)
                || batch.failed.contains(&partition)
                || self.consumer.context().is_before_resume_point(
                    message.topic(),
                    partition,
                    message.offset(),
                )
            {
                continue;
            }
            let next = match way {
                Way::Consumed => self.sequence.consumed(partition, message.offset()),
                // Placed under an assignment that has since changed: the consumer brings it.
                Way::HandedOff => self.sequence.is_placed(partition),
            };
            if !next {
                metrics::counter!("plexica_command_copies_skipped_total").increment(1);
                continue;
            }
            let mut staged = self.stage(message, &mut batch).await;
            if matches!(staged, Ok(Staging::AfterFlush)) {
                self.flush(&mut batch).await;
                if self.lost.contains(&partition) || batch.failed.contains(&partition) {
                    continue;
                }
                staged = self.stage(message, &mut batch).await;
            }
            if let Err(error) = staged {
                let (from, folded) = batch
                    .partitions
                    .remove(&partition)
                    .map_or((message.offset(), false), |p| (p.first_offset, p.folded));
                self.fail(&mut batch, partition, from, folded, &error);
            }
        }
        self.flush(&mut batch).await;
        !batch.failed.is_empty()
    }

    /// Decides one record into the batch and sends its events.
    async fn stage(
        &mut self,
        message: &rdkafka::message::OwnedMessage,
        batch: &mut Batch,
    ) -> Result<Staging, ProcessorError> {
        let (partition, offset) = (message.partition(), message.offset());
        let record: CommandRecord = match self.codec.decode(message.payload()).await {
            Ok(record) => record,
            Err(error) if error.is_retryable() => return Err(error.into()),
            Err(error) => {
                self.dead_letter(message, Failure::permanent(Stage::Envelope, &error))
                    .await?;
                batch.partition(partition, offset).last_offset = offset;
                return Ok(Staging::Staged);
            }
        };
        let Ok(command_id) = Uuid::parse_str(&record.command_id) else {
            let failure = Failure::permanent(
                Stage::Envelope,
                &MalformedCommand("command_id is not a UUID"),
            );
            self.dead_letter(message, failure).await?;
            batch.partition(partition, offset).last_offset = offset;
            return Ok(Staging::Staged);
        };
        if batch.holds(command_id) {
            return Ok(Staging::AfterFlush);
        }
        if !self.partitions.contains_key(&partition) {
            let owned = self.acquire(partition).await?;
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
        let Some(owned) = self.partitions.get(&partition) else {
            return Err(ProcessorError::NotOwned(partition));
        };
        let part = batch.partition(partition, offset);
        part.epoch = Some(owned.epoch);
        let context = Context {
            partition,
            command_id,
            correlation_id,
            sent_at,
        };
        let (outcome, effect) = match self.decide(owned, part, &context, &record).await? {
            Decision::Accepted { key, events } => (
                outcome(&record, true, vec![], None),
                Effect::Accepted { key, events },
            ),
            Decision::Repeated(outcome) => (outcome, Effect::Repeated),
            Decision::Rejected(rejection) => (
                outcome(
                    &record,
                    false,
                    vec![],
                    Some(problem(&rejection, command_id)),
                ),
                Effect::Rejected,
            ),
        };
        batch.stage(
            partition,
            offset,
            Staged {
                command_id,
                command_type: record.command_type,
                started,
                outcome,
                effect,
            },
        );
        Ok(Staging::Staged)
    }

    /// Waits for the batch's writes, checks the leases, then installs, answers and commits
    /// what held; a partition that failed is added to `batch.failed`.
    async fn flush(&mut self, batch: &mut Batch) {
        let partitions = batch.take();
        if partitions.is_empty() {
            return;
        }
        let started = std::time::Instant::now();
        // The events, in the log.
        let mut acknowledged = BTreeMap::new();
        for (partition, mut part) in partitions {
            match part.acknowledge_events().await {
                Ok(()) => {
                    acknowledged.insert(partition, part);
                }
                Err(error) => self.fail(batch, partition, part.first_offset, part.folded, &error),
            }
        }
        if !acknowledged.is_empty() {
            for part in acknowledged.values_mut() {
                part.hand_over();
            }
            // This process's projections and sagas may be resting: they read these events.
            infra::doorbell::ring(acknowledged.values().flat_map(PartitionBatch::written));
        }
        metrics::histogram!("plexica_command_stage_seconds", "stage" => "decided_and_appended")
            .record(started.elapsed().as_secs_f64());
        // The refusals, in the log before the lease check: a refusal that passes the check is
        // one the partition's next owner reads back, so a redelivery is answered with it (an
        // acceptance is read back from its events).
        let mut recorded = BTreeMap::new();
        for (partition, mut part) in acknowledged {
            match self.record_decisions(partition, &mut part).await {
                Ok(()) => {
                    recorded.insert(partition, part);
                }
                Err(error) => self.fail(batch, partition, part.first_offset, part.folded, &error),
            }
        }
        let decided = started.elapsed();
        let held: Vec<i32> = recorded
            .iter()
            .filter(|(_, part)| part.epoch.is_some())
            .map(|(partition, _)| *partition)
            .collect();
        let epochs = match ownership::lease_epochs(&self.pool, &held).await {
            Ok(epochs) => epochs,
            Err(error) => {
                for (partition, part) in recorded {
                    self.fail(batch, partition, part.first_offset, part.folded, &error);
                }
                return;
            }
        };
        metrics::histogram!("plexica_command_stage_seconds", "stage" => "lease_checked")
            .record((started.elapsed() - decided).as_secs_f64());
        let checked = started.elapsed();
        let mut answered = Vec::new();
        let mut commits = Vec::new();
        for (partition, mut part) in recorded {
            let recording = std::mem::take(&mut part.recording);
            if let Some(epoch) = part.epoch {
                let owned = self.partitions.get_mut(&partition);
                let Some(owned) = owned
                    .filter(|owned| owned.epoch == epoch && epochs.get(&partition) == Some(&epoch))
                else {
                    tracing::warn!(
                        partition,
                        "lease lost to another processor; leaving the partition to it"
                    );
                    self.fenced(partition, part.folded);
                    continue;
                };
                owned.aggregates.extend(part.aggregates);
                // Acknowledged before the lease was found held: before any fence that voids them.
                let appended = part
                    .decisions
                    .iter()
                    .filter(|staged| matches!(staged.effect, Effect::Accepted { .. }));
                for event in appended.flat_map(|staged| &staged.outcome.events) {
                    infra::own_writes::held(&event.topic, event.partition, event.offset);
                }
                for staged in part.decisions {
                    match &staged.effect {
                        Effect::Accepted { key, .. } => {
                            owned.remember(staged.command_id, Some(key.clone()));
                        }
                        Effect::Rejected => {
                            owned
                                .rejected
                                .insert(staged.command_id, staged.outcome.clone());
                            owned.remember(staged.command_id, None);
                        }
                        Effect::Repeated => {}
                    }
                    answered.push(staged);
                }
            }
            commits.push((partition, part.first_offset, part.last_offset, recording));
        }
        let outcomes: Vec<&CommandOutcome> = answered.iter().map(|s| &s.outcome).collect();
        // This process's requests are answered before the outcomes reach Redis: everything an
        // answer promises is in the log and the lease held. Redis serves other processes'
        // requests and repeated idempotency keys, and a repeat that comes before the outcome
        // is stored sends the command again, which is answered from its first decision.
        if let Some(local_bus) = &self.local_bus {
            local_bus.answer(&outcomes);
        }
        if let Err(error) = self.outcomes.publish(&outcomes).await {
            // Installed, and answered here only: read again, each is answered as decided before.
            tracing::warn!(%error, "publishing outcomes failed; the commands will be read again");
            for (partition, first, _, _) in commits {
                self.rewind(partition, first);
                batch.failed.insert(partition);
            }
            return;
        }
        metrics::histogram!("plexica_command_stage_seconds", "stage" => "outcome_published")
            .record((started.elapsed() - checked).as_secs_f64());
        let results = self.topics.command_results();
        for (partition, first, last, recording) in commits {
            match futures::future::try_join_all(
                recording
                    .into_iter()
                    .map(|delivery| infra::dead_letter::acknowledged(&results, delivery)),
            )
            .await
            {
                Ok(_) => {
                    if let Some(owed) =
                        self.commits
                            .decided(partition, last, tokio::time::Instant::now())
                    {
                        self.send_commits(owed);
                    }
                }
                Err(error) => {
                    // Answered, and its events in the log: read again, each acceptance is
                    // answered as decided before and its record written again.
                    tracing::warn!(%error, partition, "recording accepted decisions failed; the commands will be read again");
                    self.rewind(partition, first);
                    batch.failed.insert(partition);
                }
            }
        }
        for staged in answered {
            metrics::histogram!("plexica_command_decide_seconds", "command" => staged.command_type.clone())
                .record(staged.started.elapsed().as_secs_f64());
            metrics::counter!("plexica_commands_total", "command" => staged.command_type, "accepted" => staged.outcome.accepted.to_string())
                .increment(1);
        }
    }

    /// A partition whose batch failed: its state is dropped and it is read again from
    /// `from`, under a new lease whose fence voids whatever of the batch is half written; the
    /// rest of its records in `batch` wait for that.
    fn fail(
        &mut self,
        batch: &mut Batch,
        partition: i32,
        from: i64,
        folded: bool,
        error: &ProcessorError,
    ) {
        batch.failed.insert(partition);
        if folded {
            self.directory.reload();
        }
        infra::own_writes::stopped_writing(partition);
        self.partitions.remove(&partition);
        self.sequence.forget(partition);
        if let ProcessorError::Undecodable { .. } = error {
            // Deciding without that event could contradict the log: the partition stops, its
            // commands wait, and an operator is told.
            tracing::error!(%error, partition, "partition stopped: its log holds an event that cannot be decoded");
            metrics::gauge!("plexica_processor_stopped_partitions").increment(1.0);
            self.commits.forget(partition);
            self.lost.insert(partition);
            self.pause(partition);
            return;
        }
        // Whatever was written is in the log; the rebuild recognises a command applied whole.
        tracing::warn!(%error, partition, offset = from, "commands failed; they will be read again");
        self.rewind(partition, from);
    }

    /// Lost the lease: the partition's records stay uncommitted for the new owner.
    fn fenced(&mut self, partition: i32, folded: bool) {
        if folded {
            self.directory.reload();
        }
        self.commits.forget(partition);
        infra::own_writes::stopped_writing(partition);
        self.partitions.remove(&partition);
        self.sequence.forget(partition);
        self.lost.insert(partition);
        self.pause(partition);
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

    /// Commits `owed`, each partition's next command to read, without waiting.
    fn send_commits(&self, owed: Vec<(i32, i64)>) {
        let topic = self.topics.commands();
        let mut tpl = TopicPartitionList::new();
        for (partition, next) in owed {
            if let Err(error) = tpl.add_partition_offset(&topic, partition, Offset::Offset(next)) {
                tracing::warn!(%error, partition, "a command offset cannot be listed; it may be delivered again and will be recognised");
            }
        }
        if tpl.count() == 0 {
            return;
        }
        if let Err(error) = self.consumer.commit(&tpl, CommitMode::Async) {
            tracing::warn!(%error, "committing command offsets failed; they may be delivered again and will be recognised");
        }
    }

    fn pause(&self, partition: i32) {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.topics.commands(), partition);
        if let Err(error) = self.consumer.pause(&tpl) {
            tracing::warn!(%error, partition, "cannot pause a lost partition");
        }
    }

    fn rewind(&mut self, partition: i32, offset: i64) {
        self.sequence.forget(partition);
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

/// When the offsets owed are due; never while none are.
async fn owed_commits_due(commits: &OwedCommits) {
    match commits.deadline(tokio::time::Instant::now()) {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The next record handed off, or never without a hand-off.
async fn next_handed_off(local_bus: &mut Option<LocalBus>) -> rdkafka::message::OwnedMessage {
    match local_bus {
        Some(local_bus) => local_bus.recv().await,
        None => std::future::pending().await,
    }
}

/// What became of one record in [`Processor::stage`].
enum Staging {
    Staged,
    /// It repeats a command of the batch: decided once the batch so far is installed.
    AfterFlush,
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
