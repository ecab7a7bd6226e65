//! Taking a partition: bump its lease epoch, fence every event topic's partition with it, and
//! rebuild the partition's aggregates from the log up to those fences.

use std::collections::HashMap;
use std::time::Duration;

use domain::{AggregateKey, AggregateState};
use event_schemas::commands::{EventPosition, WriterFenced};
use event_schemas::envelope::FENCE_TYPE;
use event_schemas::{Codec, Envelope, Topics};
use infra::config::KafkaConfig;
use infra::kafka::{self, Admission};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
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
    let epoch: i64 = sqlx::query_scalar(
        "INSERT INTO command_leases (partition, epoch, owner) VALUES ($1, 1, $2)
         ON CONFLICT (partition) DO UPDATE
         SET epoch = command_leases.epoch + 1, owner = excluded.owner, acquired_at = now()
         RETURNING epoch",
    )
    .bind(partition)
    .bind(owner)
    .fetch_one(pool)
    .await?;

    let mut fences = HashMap::new();
    for topic in topics.event_topics() {
        let offset = write_fence(&topic, partition, epoch, owner, producer, codec).await?;
        fences.insert(topic, offset);
    }
    let aggregates = rebuild(partition, &fences, codec, kafka_config).await?;
    tracing::info!(
        partition,
        epoch,
        aggregates = aggregates.len(),
        "partition acquired"
    );
    metrics::counter!("plexica_partition_acquisitions_total").increment(1);
    Ok(OwnedPartition { epoch, aggregates })
}

/// Is `epoch` still the partition's current lease?
pub async fn still_owner(
    pool: &PgPool,
    partition: i32,
    epoch: i64,
) -> Result<bool, ProcessorError> {
    let current: Option<i64> =
        sqlx::query_scalar("SELECT epoch FROM command_leases WHERE partition = $1")
            .bind(partition)
            .fetch_optional(pool)
            .await?;
    Ok(current == Some(epoch))
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
    let delivery = producer
        .send(
            FutureRecord::<(), _>::to(topic)
                .partition(partition)
                .payload(&value)
                .headers(envelope.to_headers()),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(e, _)| ProcessorError::Kafka(e))?;
    Ok(delivery.offset)
}

/// Reads each event topic's partition from the start up to our fence, applying the reader
/// rule, and folds the events into aggregates.
async fn rebuild(
    partition: i32,
    fences: &HashMap<String, i64>,
    codec: &Codec,
    kafka_config: &KafkaConfig,
) -> Result<HashMap<AggregateKey, Aggregate>, ProcessorError> {
    let consumer: StreamConsumer =
        kafka::consumer_config(kafka_config, "plexica.command-processor.rebuild").create()?;
    let mut assignment = TopicPartitionList::new();
    for topic in fences.keys() {
        assignment.add_partition_offset(topic, partition, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;

    let mut aggregates: HashMap<AggregateKey, Aggregate> = HashMap::new();
    let mut fence_epochs: HashMap<String, i64> = HashMap::new();
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
            remaining.remove(topic);
            continue;
        }
        let Some(Ok(envelope)) = message.headers().map(Envelope::from_headers) else {
            continue;
        };
        let fence_epoch = fence_epochs.entry(topic.to_owned()).or_default();
        if kafka::admit(fence_epoch, &envelope) != Admission::Apply {
            continue;
        }
        // Records that do not decode are the projections' to dead-letter; the command side
        // can only skip them.
        let Ok(event) = codec.decode_event(message.payload()).await else {
            tracing::warn!(
                topic,
                partition,
                offset = message.offset(),
                "undecodable event skipped in rebuild"
            );
            continue;
        };
        let Ok(key) = AggregateKey::of_event(&event) else {
            continue;
        };
        let aggregate = aggregates
            .entry(key.clone())
            .or_insert_with(|| Aggregate::new(&key));
        aggregate.state = domain::evolve(aggregate.state.clone(), &event);
        aggregate.version = envelope
            .aggregate_version
            .and_then(|v| i64::try_from(v).ok())
            .unwrap_or(aggregate.version + 1);
        if let Some(command_id) = envelope.causation_id {
            aggregate
                .applied
                .entry(command_id)
                .or_default()
                .push(EventPosition {
                    topic: topic.to_owned(),
                    partition,
                    offset: message.offset(),
                    event_type: envelope.event_type.clone(),
                    aggregate_version: aggregate.version,
                });
        }
    }
    Ok(aggregates)
}
