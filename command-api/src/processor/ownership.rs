//! Taking a partition: bump its lease epoch, fence every event topic's partition with it, and
//! rebuild the partition's aggregates from the log up to those fences.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use domain::{AggregateKey, AggregateState};
use event_schemas::commands::{CommandOutcome, EventPosition, WriterFenced};
use event_schemas::envelope::FENCE_TYPE;
use event_schemas::{Codec, Envelope, Topics};
use infra::config::KafkaConfig;
use infra::kafka::{self, Admission};
use infra::whole_commands::WholeCommands;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use sqlx::PgPool;
use uuid::Uuid;

use super::ProcessorError;

/// One aggregate as the processor holds it.
#[derive(Debug, Clone)]
pub struct Aggregate {
    pub state: AggregateState,
    pub version: i64,
    /// Commands already applied, with the events each produced: a redelivered command is
    /// answered from here instead of being decided again.
    pub applied: HashMap<Uuid, Vec<EventPosition>>,
}

impl Aggregate {
    pub fn new(key: &AggregateKey) -> Self {
        Self {
            state: AggregateState::initial(key),
            version: 0,
            applied: HashMap::new(),
        }
    }
}

/// A partition this processor owns under a lease epoch.
#[derive(Debug)]
pub struct OwnedPartition {
    pub epoch: i64,
    pub aggregates: HashMap<AggregateKey, Aggregate>,
    /// Commands refused within [`DECISIONS_REMEMBERED`]: a redelivery gets the same refusal.
    pub rejected: HashMap<Uuid, CommandOutcome>,
    /// The decisions remembered, oldest first, so that they are forgotten once the window has
    /// passed: memory stays bounded by one window of commands, however long the process runs.
    pub remembered: VecDeque<Remembered>,
}

/// A decision as [`OwnedPartition::remembered`] keeps it.
#[derive(Debug, Clone)]
pub struct Remembered {
    /// Milliseconds since the Unix epoch.
    pub at: i64,
    pub command_id: Uuid,
    /// The aggregate that applied it; `None` for a refusal.
    pub applied_to: Option<AggregateKey>,
}

impl OwnedPartition {
    /// Remembers a decision taken now, and forgets those older than the window.
    pub fn remember(&mut self, command_id: Uuid, applied_to: Option<AggregateKey>) {
        self.remembered.push_back(Remembered {
            at: chrono::Utc::now().timestamp_millis(),
            command_id,
            applied_to,
        });
        self.forget_before(remembered_since());
    }

    fn forget_before(&mut self, since: i64) {
        while self.remembered.front().is_some_and(|r| r.at < since) {
            let Some(old) = self.remembered.pop_front() else {
                break;
            };
            match &old.applied_to {
                Some(key) => {
                    if let Some(aggregate) = self.aggregates.get_mut(key) {
                        aggregate.applied.remove(&old.command_id);
                    }
                }
                None => {
                    self.rejected.remove(&old.command_id);
                }
            }
        }
    }
}

/// How long a decision is remembered, so that a redelivered command or a request sent again
/// with its Idempotency-Key gets its first outcome: the idempotency window. A command older
/// than this is refused as expired instead of decided (`processor::decide`), and memory stays
/// bounded by the commands of one window.
pub const DECISIONS_REMEMBERED: Duration = Duration::from_secs(24 * 3600);

/// How long the rebuild waits for the registry to decode an event before it gives up the
/// partition for now.
const DECODE_PATIENCE: Duration = Duration::from_secs(30);

/// `ce_type` of a decision on `plexica.command-results`.
pub const OUTCOME_TYPE: &str = "plexica.command.decided";

/// Milliseconds since the Unix epoch from which decisions are remembered.
pub fn remembered_since() -> i64 {
    let window = i64::try_from(DECISIONS_REMEMBERED.as_millis()).unwrap_or(i64::MAX);
    chrono::Utc::now().timestamp_millis().saturating_sub(window)
}

/// Takes partition `partition`'s lease and returns it with its aggregates rebuilt.
pub async fn acquire(
    partition: i32,
    owner: &str,
    pool: &PgPool,
    producer: &FutureProducer,
    codec: &Codec,
    topics: &Topics,
    kafka_config: &KafkaConfig,
) -> Result<OwnedPartition, ProcessorError> {
    let mut epoch = take_lease(partition, owner, 1, pool).await?;
    let (aggregates, rejected, remembered) = loop {
        // The decisions' topic first: a decision before its fence was written after the
        // command's events, which are then before the event topics' fences too.
        let mut fences = HashMap::new();
        let results = topics.command_results();
        for topic in std::iter::once(results.clone()).chain(topics.event_topics()) {
            let offset = write_fence(&topic, partition, epoch, owner, producer, codec).await?;
            fences.insert(topic, offset);
        }
        let rebuilt = rebuild(partition, &fences, &results, codec, kafka_config).await?;
        if rebuilt.highest_fence < epoch {
            break (rebuilt.aggregates, rebuilt.rejected, rebuilt.remembered);
        }
        // The log holds fences of a higher epoch than the lease table knows: its database was
        // lost or restored. Readers would void what this epoch writes; take one above them all.
        tracing::warn!(
            partition,
            epoch,
            highest_fence = rebuilt.highest_fence,
            "the log has fences of a later epoch than the lease; taking a higher one"
        );
        epoch = take_lease(partition, owner, rebuilt.highest_fence + 1, pool).await?;
    };
    tracing::info!(
        partition,
        epoch,
        aggregates = aggregates.len(),
        rejected = rejected.len(),
        "partition acquired"
    );
    metrics::counter!("plexica_partition_acquisitions_total").increment(1);
    Ok(OwnedPartition {
        epoch,
        aggregates,
        rejected,
        remembered,
    })
}

/// Bumps the partition's lease epoch to at least `at_least`, for `owner`.
async fn take_lease(
    partition: i32,
    owner: &str,
    at_least: i64,
    pool: &PgPool,
) -> Result<i64, ProcessorError> {
    Ok(sqlx::query_scalar(
        "INSERT INTO command_leases (partition, epoch, owner) VALUES ($1, $3, $2)
         ON CONFLICT (partition) DO UPDATE
         SET epoch = GREATEST(command_leases.epoch + 1, $3), owner = excluded.owner,
             acquired_at = now()
         RETURNING epoch",
    )
    .bind(partition)
    .bind(owner)
    .bind(at_least)
    .fetch_one(pool)
    .await?)
}

/// The current lease epoch of each of `partitions` that has one.
pub async fn lease_epochs(
    pool: &PgPool,
    partitions: &[i32],
) -> Result<HashMap<i32, i64>, ProcessorError> {
    let rows: Vec<(i32, i64)> =
        sqlx::query_as("SELECT partition, epoch FROM command_leases WHERE partition = ANY($1)")
            .bind(partitions)
            .fetch_all(pool)
            .await?;
    Ok(rows.into_iter().collect())
}

async fn write_fence(
    topic: &str,
    partition: i32,
    epoch: i64,
    owner: &str,
    producer: &FutureProducer,
    codec: &Codec,
) -> Result<i64, ProcessorError> {
    let value = codec
        .encode(
            topic,
            &WriterFenced {
                epoch,
                owner: owner.to_owned(),
                partition,
            },
        )
        .await?;
    let mut envelope = Envelope::new(FENCE_TYPE, "/plexica/command-processor");
    envelope.writer_epoch = Some(epoch);
    let headers = envelope.to_headers();
    let delivery = producer
        .send(
            FutureRecord::<(), _>::to(topic)
                .partition(partition)
                .payload(&value)
                .headers(headers.clone()),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(e, _)| ProcessorError::Kafka(e))?;
    // Handed over like the events: a partition's first record is often its first fence, and
    // a consumer of this process takes a new partition's records from there.
    if infra::local_log::is_listened() {
        infra::local_log::appended(vec![OwnedMessage::new(
            Some(value),
            None,
            topic.to_owned(),
            delivery.timestamp,
            delivery.partition,
            delivery.offset,
            Some(headers),
        )]);
    }
    Ok(delivery.offset)
}

/// Reads each event topic's partition from the start up to our fence, applying the reader
/// rule, and folds whole commands' events into aggregates; reads the refusals of the last
/// [`DECISIONS_REMEMBERED`] from `results` up to our fence there.
async fn rebuild(
    partition: i32,
    fences: &HashMap<String, i64>,
    results: &str,
    codec: &Codec,
    kafka_config: &KafkaConfig,
) -> Result<Rebuilt, ProcessorError> {
    let consumer: StreamConsumer =
        kafka::consumer_config(kafka_config, "plexica.command-processor.rebuild").create()?;
    let mut assignment = TopicPartitionList::new();
    for topic in fences.keys() {
        assignment.add_partition_offset(topic, partition, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;

    let mut aggregates: HashMap<AggregateKey, Aggregate> = HashMap::new();
    let mut rejected = HashMap::new();
    let mut remembered = VecDeque::new();
    let since = remembered_since();
    let mut fence_epochs: HashMap<String, i64> = HashMap::new();
    let mut commands: HashMap<String, WholeCommands<Read>> = HashMap::new();
    let mut remaining: HashMap<&str, i64> = fences.iter().map(|(t, o)| (t.as_str(), *o)).collect();
    while !remaining.is_empty() {
        let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .map_err(|_| ProcessorError::RebuildStalled(partition))??;
        let topic = message.topic();
        let Some(fence_offset) = remaining.get(topic).copied() else {
            continue;
        };
        if message.offset() >= fence_offset {
            // A command still open here is followed by our fence: void, to be decided again.
            remaining.remove(topic);
            continue;
        }
        let Some(Ok(envelope)) = message.headers().map(Envelope::from_headers) else {
            continue;
        };
        let fence_epoch = fence_epochs.entry(topic.to_owned()).or_default();
        let whole = commands.entry(topic.to_owned()).or_default();
        match kafka::admit(fence_epoch, &envelope) {
            Admission::Apply => {}
            Admission::Fence { .. } => {
                whole.interrupt();
                continue;
            }
            Admission::Void { .. } | Admission::Unfenced => continue,
        }
        let recent = message.timestamp().to_millis().is_some_and(|t| t >= since);
        if topic == results {
            if recent
                && envelope.event_type == OUTCOME_TYPE
                && let Ok(outcome) = codec.decode::<CommandOutcome>(message.payload()).await
                && !outcome.accepted
                && let Ok(command_id) = Uuid::parse_str(&outcome.command_id)
            {
                remembered.push_back(Remembered {
                    at: message.timestamp().to_millis().unwrap_or(since),
                    command_id,
                    applied_to: None,
                });
                rejected.insert(command_id, outcome);
            }
            continue;
        }
        let read = Read {
            offset: message.offset(),
            payload: message.payload().map(<[u8]>::to_vec),
            envelope: envelope.clone(),
            recent,
            at: message.timestamp().to_millis().unwrap_or(since),
        };
        let released = whole.admit(&envelope, read);
        for read in released.apply {
            if let Some(first) = fold(&mut aggregates, topic, partition, read, codec).await? {
                remembered.push_back(first);
            }
        }
    }
    let highest_fence = fence_epochs.values().copied().max().unwrap_or(0);
    // The results and the event topics interleave in time: oldest first across both.
    remembered.make_contiguous().sort_by_key(|r| r.at);
    Ok(Rebuilt {
        aggregates,
        rejected,
        remembered,
        highest_fence,
    })
}

/// A partition's state as the log leaves it up to the new owner's fences.
struct Rebuilt {
    aggregates: HashMap<AggregateKey, Aggregate>,
    rejected: HashMap<Uuid, CommandOutcome>,
    remembered: VecDeque<Remembered>,
    /// The highest epoch of the fences read before the new owner's own.
    highest_fence: i64,
}

/// An event record read during the rebuild, held until its command is whole.
struct Read {
    offset: i64,
    payload: Option<Vec<u8>>,
    envelope: Envelope,
    /// Written within [`DECISIONS_REMEMBERED`]: its command is remembered as applied.
    recent: bool,
    /// Broker time, milliseconds since the Unix epoch.
    at: i64,
}

/// Folds one event of a whole command into its aggregate.
async fn fold(
    aggregates: &mut HashMap<AggregateKey, Aggregate>,
    topic: &str,
    partition: i32,
    read: Read,
    codec: &Codec,
) -> Result<Option<Remembered>, ProcessorError> {
    // A skipped event would leave the aggregate in a state the log does not give, and a
    // command decided on it could contradict the log: wait out a registry outage, and stop
    // at a record that can never be decoded.
    let event =
        match kafka::decode_event_within(codec, read.payload.as_deref(), DECODE_PATIENCE).await {
            Ok(event) => event,
            Err(error) if error.is_retryable() => return Err(error.into()),
            Err(error) => {
                return Err(ProcessorError::Undecodable {
                    topic: topic.to_owned(),
                    partition,
                    offset: read.offset,
                    reason: error.to_string(),
                });
            }
        };
    let Ok(key) = AggregateKey::of_event(&event) else {
        return Ok(None);
    };
    let envelope = read.envelope;
    let aggregate = aggregates
        .entry(key.clone())
        .or_insert_with(|| Aggregate::new(&key));
    aggregate.state = domain::evolve(aggregate.state.clone(), &event);
    aggregate.version = envelope
        .aggregate_version
        .and_then(|v| i64::try_from(v).ok())
        .unwrap_or(aggregate.version + 1);
    let mut first = None;
    if let Some(command_id) = envelope.causation_id.filter(|_| read.recent) {
        if !aggregate.applied.contains_key(&command_id) {
            first = Some(Remembered {
                at: read.at,
                command_id,
                applied_to: Some(key.clone()),
            });
        }
        aggregate
            .applied
            .entry(command_id)
            .or_default()
            .push(EventPosition {
                topic: topic.to_owned(),
                partition,
                offset: read.offset,
                event_type: envelope.event_type,
                aggregate_version: aggregate.version,
            });
    }
    Ok(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_older_than_the_window_are_forgotten_and_later_ones_kept() {
        let key: AggregateKey = "plugin:crm".parse().expect("a key");
        let (old, recent, refused) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let mut aggregate = Aggregate::new(&key);
        aggregate.applied.insert(old, vec![]);
        aggregate.applied.insert(recent, vec![]);
        let mut owned = OwnedPartition {
            epoch: 1,
            aggregates: HashMap::from([(key.clone(), aggregate)]),
            rejected: HashMap::new(),
            remembered: VecDeque::from([Remembered {
                at: 0,
                command_id: old,
                applied_to: Some(key.clone()),
            }]),
        };
        owned.remembered.push_back(Remembered {
            at: remembered_since() + 60_000,
            command_id: recent,
            applied_to: Some(key.clone()),
        });
        owned.remember(refused, None);
        let applied = &owned.aggregates[&key].applied;
        assert!(!applied.contains_key(&old), "outside the window");
        assert!(applied.contains_key(&recent));
        assert_eq!(owned.remembered.len(), 2);
    }
}
