//! Whether a plugin's log goes on after a given event: the saga runner acts on an event only
//! when nothing followed it, so that a replay does not run again the steps of sagas that
//! finished long ago.
//!
//! While a saga runs, the lifecycle table accepts only that saga's own commands (an install
//! step, its failure, the update's or the uninstall's outcome), so any later event of the same
//! plugin is the outcome of the step the event asked for: the step was done.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use event_schemas::Envelope;
use infra::config::KafkaConfig;
use infra::kafka::{self, Admission};
use infra::own_writes::{self, WrittenAfter};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

/// Longest wait for one record while reading ahead: the records exist, they are below the
/// high watermark.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum LookAheadError {
    #[error("Kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("reading ahead in {topic}/{partition} stalled at offset {offset}")]
    Stalled {
        topic: String,
        partition: i32,
        offset: i64,
    },
    #[error("the high watermark lookup did not finish: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// What has been read ahead in one partition: `[from, to)`, with the last offset of each key
/// that the reader rule admits.
#[derive(Debug)]
struct Scanned {
    from: i64,
    to: i64,
    /// The highest writer fence read so far, so that the reader rule holds in the scan too.
    fence_epoch: i64,
    last_offset: HashMap<Vec<u8>, i64>,
}

/// Reads ahead of the saga runner, remembering what it read: a replay of a long log reads
/// each record once more, and a runner that is caught up only asks for the high watermark.
pub struct LookAhead {
    consumer: Arc<StreamConsumer>,
    scanned: HashMap<(String, i32), Scanned>,
    /// Each partition's high watermark as read during the runner's current batch.
    ///
    /// Whether an event is followed is a snapshot whenever it is taken (a record may follow
    /// right after), so an end read earlier in the batch answers as well for an event below
    /// it: the snapshot is at most one batch older. Asking the broker once an event made a
    /// replay of a long log one round trip an event (about 400 events/s on tansu, which
    /// served little else meanwhile). An event at or past the end read asks again, unless its
    /// own process wrote it and what follows it ([`own_writes`]): a runner that is caught up
    /// asks the broker only about events another process wrote.
    ends: HashMap<(String, i32), i64>,
}

impl LookAhead {
    /// `group` names the reader to the broker; it joins no group and commits nothing.
    pub fn new(kafka_config: &KafkaConfig, group: &str) -> Result<Self, KafkaError> {
        let consumer: StreamConsumer = kafka::consumer_config(kafka_config, group).create()?;
        Ok(Self {
            consumer: Arc::new(consumer),
            scanned: HashMap::new(),
            ends: HashMap::new(),
        })
    }

    /// The runner starts a batch: the ends read before it are not used again.
    pub fn next_batch(&mut self) {
        self.ends.clear();
    }

    /// Whether a record of `key` that the reader rule admits follows `offset` in the
    /// partition. `writer_epoch` is the event's own: having been admitted, it is the fence
    /// epoch in force at `offset`, which is where the scan takes the reader rule up.
    pub async fn is_followed(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        key: &[u8],
        writer_epoch: i64,
    ) -> Result<bool, LookAheadError> {
        let position = (topic.to_owned(), partition);
        let scanned = self
            .scanned
            .entry(position.clone())
            .or_insert_with(|| Scanned {
                from: offset + 1,
                to: offset + 1,
                fence_epoch: writer_epoch,
                last_offset: HashMap::new(),
            });
        // What was read ahead is of use only for events inside it; the runner may also have
        // been sent back (a rebalance, a failed batch).
        if offset + 1 < scanned.from || offset + 1 > scanned.to {
            *scanned = Scanned {
                from: offset + 1,
                to: offset + 1,
                fence_epoch: writer_epoch,
                last_offset: HashMap::new(),
            };
        }
        if scanned
            .last_offset
            .get(key)
            .is_some_and(|last| *last > offset)
        {
            return Ok(true);
        }
        // Its own process wrote the event and what follows it: no broker is asked.
        let written_end = match own_writes::after(topic, partition, offset, key) {
            Some(WrittenAfter::NoneOfTheKey) => {
                metrics::counter!("plexica_saga_log_ends_known_total").increment(1);
                return Ok(false);
            }
            Some(WrittenAfter::KeyFollows) => {
                metrics::counter!("plexica_saga_log_ends_known_total").increment(1);
                return Ok(true);
            }
            Some(WrittenAfter::EndsAt(end)) => Some(end),
            None => None,
        };
        let known_end = written_end.or_else(|| {
            self.ends
                .get(&position)
                .copied()
                .filter(|end| *end > offset + 1)
        });
        let high = match known_end {
            Some(end) => end,
            None => {
                let consumer = self.consumer.clone();
                let watermark_topic = topic.to_owned();
                // A metadata request that blocks: off the runtime's worker threads.
                let (_, high) = tokio::task::spawn_blocking(move || {
                    consumer.fetch_watermarks(&watermark_topic, partition, READ_TIMEOUT)
                })
                .await??;
                metrics::counter!("plexica_saga_log_end_lookups_total").increment(1);
                self.ends.insert(position, high);
                high
            }
        };
        if high > scanned.to {
            read(&self.consumer, topic, partition, scanned, high).await?;
        }
        Ok(scanned
            .last_offset
            .get(key)
            .is_some_and(|last| *last > offset))
    }
}

/// Reads `[scanned.to, high)` of the partition into `scanned`.
async fn read(
    consumer: &StreamConsumer,
    topic: &str,
    partition: i32,
    scanned: &mut Scanned,
    high: i64,
) -> Result<(), LookAheadError> {
    // From a record batch's start on every broker (tansu 0.6 answers a fetch from inside a
    // batch with the next batch): what is below `scanned.to` is passed over.
    let start = (scanned.to - kafka::MAX_BATCH_RECORDS).max(0);
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, partition, Offset::Offset(start))?;
    consumer.assign(&assignment)?;
    while scanned.to < high {
        let stalled = || LookAheadError::Stalled {
            topic: topic.to_owned(),
            partition,
            offset: scanned.to,
        };
        let message = tokio::time::timeout(READ_TIMEOUT, consumer.recv())
            .await
            .map_err(|_| stalled())??;
        if message.topic() != topic
            || message.partition() != partition
            || message.offset() < scanned.to
        {
            continue;
        }
        // The offsets of a partition need not be contiguous: the record says where we are.
        scanned.to = message.offset() + 1;
        let Some(Ok(envelope)) = message.headers().map(Envelope::from_headers) else {
            continue;
        };
        if kafka::admit(&mut scanned.fence_epoch, &envelope) != Admission::Apply {
            continue;
        }
        if let Some(key) = message.key() {
            scanned.last_offset.insert(key.to_vec(), message.offset());
        }
    }
    consumer.unassign()?;
    Ok(())
}
