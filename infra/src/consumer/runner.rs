//! The main loop: receive a batch, apply it until it commits, seek where it says.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::admission::{Checkpoint, TopicPartition};
use super::batch::{Attempt, BatchContext, BatchError, Seeks, apply_batch};
use super::control::seek_rewound;
use super::delivered::Delivered;
use super::local::LocalFeed;
use super::parking::ParkedKeys;
use super::resting::{Partition, Resting};
use super::schema::{load_checkpoints, load_parked_keys, prepare_schema, retry_ddl};
use super::{ConsumerSpec, MAX_BATCH, RecordHandler, RunnerError};
use crate::config::KafkaConfig;
use crate::group_member::GroupMember;
use crate::http::Readiness;
use crate::kafka::{self, RebalanceContext};
use crate::local_log::Stage;

/// How long a consumer waits before reading again a command whose last event it has not seen.
const HELD_BACK_PAUSE: Duration = Duration::from_millis(20);
/// How often a consumer tells its group how far it got. Only monitoring reads it, and each
/// commit is a write of the broker's (on tansu an SQLite transaction): once a batch, every
/// consumer of a busy platform made the broker write hundreds of times a second.
const INFORMATIONAL_COMMIT_EVERY: Duration = Duration::from_secs(1);

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
            let checkpoints = load_checkpoints(&pool, &schema)
                .await
                .map_err(|e| e.to_string())?;
            Ok(checkpoints
                .into_iter()
                .map(|(tp, offset)| ((tp.topic, tp.partition), offset))
                .collect())
        }
        .boxed()
    }));
    let consumer = GroupMember::new(
        kafka::paced_consumer_config(kafka_config, &spec.group, spec.pace)
            .create_with_context(context)?,
    );
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
        kafka_config.session_timeout(),
    );
    // What this instance last saw, reloaded after every rebalance; each batch reads its keys'
    // rows again under its locks.
    let mut parked = ParkedKeys::new();
    let mut parked_generation = None;
    // Where this consumer sought back after a gap: the same gap seen again is accepted.
    let mut gaps: HashMap<TopicPartition, (i64, u8)> = HashMap::new();
    let mut progress = InformationalProgress::default();
    let mut local = LocalFeed::new(&spec.name, spec.pace.handed(), &spec.topics);
    if spec.hands_on {
        Stage::Applied.feeds(spec.topics.iter().cloned());
    }
    let mut resting = Resting::new(
        kafka_config,
        &spec.name,
        Some((spec.pace.handed(), spec.topics.iter().cloned().collect())),
    )?;
    readiness.set(&spec.name, true);
    tracing::info!(consumer = %spec.name, topics = ?spec.topics, "consumer started");

    loop {
        let generation = || consumer.context().generation();
        // Read before anything is taken: a rebalance while the batch gathers or applies makes
        // it teach the local feed nothing.
        let gathered_in = generation();
        let first = tokio::select! {
            _ = shutdown.cancelled() => break,
            message = consumer.recv() => Arrival::Fetched(message),
            handed = local.recv(consumer.context()) => Arrival::Handed(handed),
            () = consumer.context().assigned() => {
                metrics::counter!("plexica_consumer_assignments_total", "consumer" => spec.name.clone())
                    .increment(1);
                continue;
            }
            () = stranded.tick() => {
                stranded.check(&consumer);
                continue;
            }
            () = progress.due() => {
                progress.commit(&consumer);
                continue;
            }
            wake = resting.changed() => {
                let generation = generation();
                resting.wake(&consumer, wake, &|partition| local.fed_to(partition, generation));
                continue;
            }
        };
        let missed = local.missed();
        if !missed.is_empty() {
            let generation = generation();
            resting.missed(&consumer, &missed, &|partition| {
                local.fed_to(partition, generation)
            });
        }
        let mut batch: Vec<Delivered<'_>> = match first {
            Arrival::Handed(handed) => handed,
            Arrival::Fetched(Ok(message)) => {
                if local.admit_fetched(&message, gathered_in) {
                    vec![Delivered::Fetched(message)]
                } else {
                    Vec::new()
                }
            }
            Arrival::Fetched(Err(error)) => {
                if spec.topics.iter().any(|t| t.starts_with('^'))
                    && kafka::is_pattern_without_topics(&error)
                {
                    // Subscribed by pattern before any topic matches it (no plugin yet).
                    tracing::debug!(consumer = %spec.name, %error, "no topic matches the pattern yet");
                } else {
                    tracing::warn!(consumer = %spec.name, %error, "receiving failed");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        while batch.len() < MAX_BATCH {
            match consumer.recv().now_or_never() {
                Some(Ok(message)) => {
                    if local.admit_fetched(&message, gathered_in) {
                        batch.push(Delivered::Fetched(message));
                    }
                }
                Some(Err(error)) => {
                    tracing::warn!(consumer = %spec.name, %error, "receiving failed");
                    break;
                }
                None => break,
            }
        }
        let room = MAX_BATCH.saturating_sub(batch.len());
        batch.extend(local.more(consumer.context(), room));
        let read = PartitionsRead::of(&batch);
        resting.read(&consumer, &read.fetched, &read.fed);
        if batch.is_empty() {
            // Copies of records already applied, handed over by this process.
            continue;
        }
        let handed = batch
            .iter()
            .filter(|record| matches!(record, Delivered::Handed(..)))
            .count();
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
            let mut seeks = Seeks::default();
            match apply_batch(
                &context,
                &mut handler,
                &batch,
                &mut working,
                &gaps,
                &mut seeks,
                Attempt {
                    savepoints,
                    first: first_attempt.as_deref(),
                },
            )
            .await
            {
                Ok(positions) => {
                    parked = working;
                    for (TopicPartition { topic, partition }, (offset, tried, target)) in seeks.gaps
                    {
                        let sought = kafka::blocking(|| {
                            consumer.seek(&topic, partition, target, Duration::from_secs(5))
                        });
                        match sought {
                            Ok(()) => {
                                tracing::warn!(consumer = %spec.name, %topic, partition, offset, ?target, "records skipped by the broker; sought back");
                                gaps.insert(TopicPartition::new(topic, partition), (offset, tried));
                            }
                            // No longer ours (a rebalance): its next owner starts at the checkpoint.
                            Err(error) => {
                                tracing::warn!(consumer = %spec.name, %topic, partition, %error, "seek back to the checkpoint failed")
                            }
                        }
                    }
                    for (TopicPartition { topic, partition }, head) in &seeks.open_commands {
                        let sought = kafka::blocking(|| {
                            consumer.seek(
                                topic,
                                *partition,
                                Offset::Offset(*head),
                                Duration::from_secs(5),
                            )
                        });
                        if let Err(error) = sought {
                            tracing::warn!(consumer = %spec.name, %topic, partition, %error, "seek back to an open command failed");
                        }
                    }
                    if !seeks.open_commands.is_empty() {
                        // The command's writer is between two events, or gone until its
                        // partition's next owner fences it: read again shortly, not in a spin.
                        tokio::time::sleep(HELD_BACK_PAUSE).await;
                    }
                    break Some(positions);
                }
                Err(BatchError::NeedsSavepoints(failed)) => {
                    savepoints = true;
                    first_attempt = failed;
                }
                Err(BatchError::Runner(error)) => {
                    attempt += 1;
                    metrics::counter!("plexica_consumer_batch_failures_total", "consumer" => spec.name.clone())
                        .increment(1);
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
        metrics::counter!("plexica_consumer_handed_records_total", "consumer" => spec.name.clone())
            .increment(handed as u64);
        local.committed(&positions, gathered_in, generation());
        if spec.hands_on {
            hand_on(&spec, &batch, &positions);
        }
        metrics::gauge!("plexica_consumer_parked_keys", "consumer" => spec.name.clone())
            .set(parked.len() as f64);
        seek_rewound(&spec, &consumer, &positions);
        progress.reached(&positions);
        // A long batch is reading too: the rest counts from its end.
        resting.read(&consumer, &read.fetched, &read.fed);
    }
    progress.commit(&consumer);
    consumer.leave(kafka_config.session_timeout()).await;
    tracing::info!(consumer = %spec.name, "consumer stopped");
    Ok(())
}

/// The partitions a batch brings records of, each once, by the way they came.
#[derive(Default)]
struct PartitionsRead {
    fetched: Vec<Partition>,
    /// Handed over by this process.
    fed: Vec<Partition>,
}

impl PartitionsRead {
    fn of(batch: &[Delivered<'_>]) -> Self {
        let mut read = Self::default();
        for record in batch {
            let list = match record {
                Delivered::Fetched(_) => &mut read.fetched,
                Delivered::Handed(..) => &mut read.fed,
            };
            if !list.iter().any(|(topic, partition)| {
                topic == record.topic() && *partition == record.partition()
            }) {
                list.push((record.topic().to_owned(), record.partition()));
            }
        }
        read
    }
}

/// Hands the records of `batch` that its commit settled, in runs of consecutive offsets, to
/// the consumers of this process that read after this one. Those of its retry topic stay: no
/// follower reads it.
fn hand_on(
    spec: &ConsumerSpec,
    batch: &[Delivered<'_>],
    positions: &HashMap<TopicPartition, Checkpoint>,
) {
    if !Stage::Applied.is_listened() {
        return;
    }
    let mut settled: BTreeMap<TopicPartition, Vec<OwnedMessage>> = BTreeMap::new();
    for record in batch {
        if !spec.topics.iter().any(|topic| topic == record.topic()) {
            continue;
        }
        let partition = TopicPartition::new(record.topic(), record.partition());
        let Some(checkpoint) = positions.get(&partition) else {
            continue;
        };
        // Moved back, or held back (a command whose last event is not read yet): what it
        // holds is read again before it is settled.
        if checkpoint.rewound
            || checkpoint.replay.is_some()
            || record.offset() >= checkpoint.next_offset
        {
            continue;
        }
        settled
            .entry(partition)
            .or_default()
            .push(record.to_owned_record());
    }
    for mut records in settled.into_values() {
        records.sort_by_key(Message::offset);
        records.dedup_by_key(|record| record.offset());
        let mut run = Vec::new();
        for record in records {
            if run
                .last()
                .is_some_and(|last: &OwnedMessage| last.offset() + 1 != record.offset())
            {
                Stage::Applied.hand(std::mem::take(&mut run));
            }
            run.push(record);
        }
        Stage::Applied.hand(run);
    }
}

/// What woke the runner for a new batch.
enum Arrival<'a> {
    Fetched(rdkafka::error::KafkaResult<rdkafka::message::BorrowedMessage<'a>>),
    /// Records this process appended, taken where the consumer's partitions go on.
    Handed(Vec<Delivered<'static>>),
}

/// How far this consumer got, told to its group at most every
/// [`INFORMATIONAL_COMMIT_EVERY`]; only monitoring reads it (the checkpoints are in Postgres).
#[derive(Default)]
struct InformationalProgress {
    /// Positions reached since the last commit.
    pending: HashMap<TopicPartition, i64>,
    /// When the first of them was reached: the commit is due a period later.
    since: Option<tokio::time::Instant>,
}

impl InformationalProgress {
    fn reached(&mut self, positions: &HashMap<TopicPartition, Checkpoint>) {
        for (partition, checkpoint) in positions {
            self.pending
                .insert(partition.clone(), checkpoint.next_offset);
        }
        self.since.get_or_insert_with(tokio::time::Instant::now);
    }

    /// Ready when a commit is due; never while nothing is pending.
    async fn due(&self) {
        match self.since {
            Some(since) => tokio::time::sleep_until(since + INFORMATIONAL_COMMIT_EVERY).await,
            None => std::future::pending().await,
        }
    }

    fn commit(&mut self, consumer: &StreamConsumer<RebalanceContext>) {
        self.since = None;
        let mut tpl = TopicPartitionList::new();
        for (TopicPartition { topic, partition }, next_offset) in self.pending.drain() {
            if tpl
                .add_partition_offset(&topic, partition, Offset::Offset(next_offset))
                .is_err()
            {
                return;
            }
        }
        if tpl.count() == 0 {
            return;
        }
        if let Err(error) = consumer.commit(&tpl, CommitMode::Async) {
            tracing::debug!(%error, "informational offset commit failed");
        }
    }
}
