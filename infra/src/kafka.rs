//! Kafka clients set up once for the whole platform, the rebalance context that lets a
//! consumer start from offsets it keeps itself, and the writer-fence reader rule.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use event_schemas::Envelope;
use event_schemas::topics::TopicSpec;
use futures::future::BoxFuture;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::producer::FutureProducer;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};

use crate::config::KafkaConfig;

/// A client of `brokers` named `name`: where every client of the project starts. The name
/// tells the broker's logs and request metrics, and a capture of its traffic, which client
/// asked (librdkafka names every client "rdkafka").
fn client_config(brokers: &str, name: &str) -> ClientConfig {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", brokers)
        .set("client.id", name)
        // Client metrics pushed to the broker (KIP-714) are read by nobody here, and asking
        // for a subscription costs every client a request every few seconds: on tansu, a
        // tenth of what an idle platform asks of it.
        .set("enable.metrics.push", "false");
    client
}

/// An idempotent producer that waits for all in-sync replicas: an acknowledged record
/// survives a broker crash and is never written twice by a retry.
pub fn producer(config: &KafkaConfig) -> KafkaResult<FutureProducer> {
    producer_config(config).create()
}

/// Most records a producer of this project puts in one record batch. tansu's memory engine
/// answers a fetch at an offset inside a batch from the *next* batch on; a consumer that
/// resumes from an offset of its own therefore starts this many records earlier (see
/// [`RebalanceContext::external`]) and skips what it already applied.
pub const MAX_BATCH_RECORDS: i64 = 1000;

/// Settings of the project's idempotent producers.
pub fn producer_config(config: &KafkaConfig) -> ClientConfig {
    let mut client = client_config(&config.brokers, "plexica-producer");
    client
        .set("enable.idempotence", "true")
        .set("acks", "all")
        // Kafka's default partitioner, so that keys land where any other client puts them.
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "1")
        .set("batch.num.messages", MAX_BATCH_RECORDS.to_string())
        .set("message.timeout.ms", "30000");
    client
}

/// How many KiB of records a consumer holds fetched ahead of its handler.
const PREFETCH_KIB: u32 = 8 * 1024;

/// Most bytes one fetch brings. tansu 0.6 ignores the per-partition limit and sends what the
/// request's total allows (librdkafka's default, 50 MB): a catalog rebuilding from offset 0
/// got 27,232 records in its first response and the other 72,768 in its second, each seconds
/// in the making, and waited for each instead of applying one while the next came. A
/// megabyte a fetch keeps a batch's work beside the next fetch; Redpanda and Kafka send no
/// more than a megabyte a partition anyway.
const FETCH_MAX_BYTES: u32 = 1024 * 1024;

/// How soon a consumer must see a new record, which sets how often it asks the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// On the path of a reply or a read (the command processor, the projections):
    /// `KAFKA_FETCH_WAIT_MAX_MS`.
    Interactive,
    /// On the path of a read, in the process of the command processor, which hands it the
    /// records it appends as the broker acknowledges them ([`crate::local_log`]): what it
    /// fetches is the rest (other processes' records), at the background pace.
    Handed,
    /// Nobody waits on it record by record: `KAFKA_BACKGROUND_FETCH_WAIT_MAX_MS`.
    Background,
}

impl Pace {
    pub fn fetch_wait_max_ms(self, config: &KafkaConfig) -> u32 {
        match self {
            Pace::Interactive => config.fetch_wait_max_ms,
            Pace::Handed | Pace::Background => config.background_fetch_wait_max_ms,
        }
    }

    /// Which of its process's records the consumer is handed: the processor's appends for one
    /// on a reply's path; what the catalog applied for the others, which read after it (the
    /// webhooks find an event's endpoints in the catalog, and taking the event at its
    /// acknowledgement they could pass the catalog).
    pub fn handed(self) -> crate::local_log::Stage {
        match self {
            Pace::Interactive | Pace::Handed => crate::local_log::Stage::Appended,
            Pace::Background => crate::local_log::Stage::Applied,
        }
    }
}

/// Settings of an interactive consumer in `group` that commits nothing by itself.
pub fn consumer_config(config: &KafkaConfig, group: &str) -> ClientConfig {
    paced_consumer_config(config, group, Pace::Interactive)
}

/// Settings of a consumer in `group`, at `pace`, that commits nothing by itself.
pub fn paced_consumer_config(config: &KafkaConfig, group: &str, pace: Pace) -> ClientConfig {
    let mut client = client_config(&config.brokers, group);
    client
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        // A consumer subscribed by pattern (the webhooks' plugin topics) sees a topic created
        // later within this long, instead of librdkafka's five minutes.
        .set("topic.metadata.refresh.interval.ms", "10000")
        .set(
            "fetch.wait.max.ms",
            pace.fetch_wait_max_ms(config).to_string(),
        )
        .set("session.timeout.ms", config.session_timeout_ms.to_string())
        // What librdkafka fetches ahead of the handler: its default of 64 MiB a consumer,
        // times the twenty consumers of `plexica all`, is memory a rebuild fills and nobody
        // needs (a projection applies a few MiB of records a second).
        .set("queued.max.messages.kbytes", PREFETCH_KIB.to_string())
        .set("fetch.max.bytes", FETCH_MAX_BYTES.to_string())
        // Several heartbeats per session, and no more than one a second.
        .set(
            "heartbeat.interval.ms",
            (config.session_timeout_ms / 3).clamp(100, 1000).to_string(),
        );
    client
}

/// Reads where the log's partitions begin and end, for progress and lag reports.
#[derive(Clone)]
pub struct LogEnds {
    /// No group: it only asks for watermarks.
    client: Arc<BaseConsumer>,
}

/// A topic's `(low, high)` watermarks by partition.
pub type TopicEnds = (String, Vec<(i64, i64)>);

impl LogEnds {
    pub fn new(config: &KafkaConfig) -> KafkaResult<Self> {
        let client = client_config(&config.brokers, "plexica-log-ends").create::<BaseConsumer>()?;
        Ok(Self {
            client: Arc::new(client),
        })
    }

    /// Each topic's `(low, high)` watermarks by partition; none when the broker does not
    /// answer.
    pub async fn of(&self, topics: Vec<String>) -> Option<Vec<TopicEnds>> {
        let client = self.client.clone();
        // librdkafka's metadata and watermark calls block: keep them off the async workers.
        tokio::task::spawn_blocking(move || {
            let timeout = Duration::from_secs(2);
            let mut ends = Vec::with_capacity(topics.len());
            for topic in topics {
                let metadata = client.fetch_metadata(Some(&topic), timeout).ok()?;
                let partitions = metadata.topics().first()?.partitions().len();
                let mut watermarks = Vec::with_capacity(partitions);
                for partition in 0..partitions {
                    let partition = i32::try_from(partition).ok()?;
                    watermarks.push(client.fetch_watermarks(&topic, partition, timeout).ok()?);
                }
                ends.push((topic, watermarks));
            }
            Some(ends)
        })
        .await
        .ok()
        .flatten()
    }

    /// Where each of `partitions` ends, in one request, asked at once; none when the broker
    /// does not answer within `timeout`. The answer's future holds no borrow of `self`.
    pub fn partition_ends(
        &self,
        partitions: &TopicPartitionList,
        timeout: Duration,
    ) -> impl Future<Output = Option<TopicPartitionList>> + Send + 'static {
        let client = self.client.clone();
        // librdkafka's offset calls block: off the async workers, and under way already when
        // the future is first polled.
        let answer = at_their_ends(partitions).map(|latest| {
            tokio::task::spawn_blocking(move || client.offsets_for_times(latest, timeout))
        });
        async move {
            answer
                .inspect_err(
                    |error| tracing::debug!(%error, "a partition to look at cannot be listed"),
                )
                .ok()?
                .await
                .ok()?
                .inspect_err(
                    |error| tracing::debug!(%error, "asking where the partitions end failed"),
                )
                .ok()
        }
    }
}

/// `partitions` placed at their ends: the question "where do they end" that
/// `offsets_for_times` answers.
pub fn at_their_ends(partitions: &TopicPartitionList) -> KafkaResult<TopicPartitionList> {
    let mut latest = TopicPartitionList::new();
    for partition in partitions.elements() {
        latest.add_partition_offset(partition.topic(), partition.partition(), Offset::End)?;
    }
    Ok(latest)
}

/// Creates the topics that do not exist yet; existing ones are left as they are.
pub async fn create_topics(config: &KafkaConfig, specs: &[TopicSpec]) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> =
        client_config(&config.brokers, "plexica-admin").create()?;
    let retention: Vec<String> = specs
        .iter()
        .map(|s| s.retention_ms.unwrap_or(-1).to_string())
        .collect();
    let new_topics: Vec<NewTopic<'_>> = specs
        .iter()
        .zip(&retention)
        .map(|(spec, retention)| {
            let topic = NewTopic::new(
                &spec.name,
                spec.partitions,
                TopicReplication::Fixed(config.replication_factor),
            )
            .set("retention.ms", retention);
            match spec.cleanup_policy {
                Some(policy) => topic.set("cleanup.policy", policy),
                None => topic,
            }
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in admin.create_topics(&new_topics, &options).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(KafkaError::AdminOp(code)).inspect_err(|_| {
                    tracing::error!(%topic, ?code, "creating topic failed");
                });
            }
        }
    }
    Ok(())
}

/// How many partitions each of `topics` has on the brokers at `brokers`, through one client;
/// a topic that does not exist (or is not in the metadata yet) is left out.
pub async fn partition_counts(
    brokers: &str,
    topics: Vec<String>,
) -> Result<HashMap<String, usize>, KafkaError> {
    let client: BaseConsumer = client_config(brokers, "plexica-partition-counts").create()?;
    // librdkafka's metadata call blocks: keep it off the async workers.
    tokio::task::spawn_blocking(move || {
        let mut counts = HashMap::new();
        for topic in topics {
            let metadata = client.fetch_metadata(Some(&topic), Duration::from_secs(10))?;
            if let Some(found) = metadata
                .topics()
                .first()
                .filter(|t| t.error().is_none() && !t.partitions().is_empty())
            {
                counts.insert(topic, found.partitions().len());
            }
        }
        Ok(counts)
    })
    .await
    .map_err(|_| KafkaError::Canceled)?
}

/// Loads the offsets a consumer should start from for newly assigned partitions.
/// Start offsets by topic and partition.
pub type StartOffsetMap = HashMap<(String, i32), i64>;

pub type StartOffsets = Arc<
    dyn Fn(Vec<(String, i32)>) -> BoxFuture<'static, Result<HashMap<(String, i32), i64>, String>>
        + Send
        + Sync,
>;

/// Consumer context that counts rebalances and, when given a loader, assigns partitions at
/// offsets kept outside Kafka (a projection's checkpoints) instead of the group's commits.
pub struct RebalanceContext {
    generation: AtomicU64,
    start_offsets: Option<(StartOffsets, tokio::runtime::Handle)>,
    /// Per partition, the offset the consumer resumes at: the fetch starts
    /// [`MAX_BATCH_RECORDS`] earlier and the consumer skips the records below it.
    resume_points: Mutex<HashMap<(String, i32), i64>>,
    /// Woken when partitions are assigned, for a consumer that prepares for them before
    /// their first record.
    assigned: tokio::sync::Notify,
}

impl RebalanceContext {
    /// Starts from the group's committed offsets (less [`MAX_BATCH_RECORDS`], see
    /// [`RebalanceContext::is_before_resume_point`]).
    pub fn committed() -> Self {
        Self {
            generation: AtomicU64::new(0),
            start_offsets: None,
            resume_points: Mutex::default(),
            assigned: tokio::sync::Notify::new(),
        }
    }

    /// Starts from the offsets `load` returns, less [`MAX_BATCH_RECORDS`] so that the first
    /// fetch begins at a batch boundary on every broker: the consumer skips the records below
    /// its own offsets. `load` runs inside the rebalance callback, which must block for it:
    /// the consumer must be polled from a multi-threaded Tokio runtime.
    pub fn external(load: StartOffsets) -> Self {
        Self {
            generation: AtomicU64::new(0),
            start_offsets: Some((load, tokio::runtime::Handle::current())),
            resume_points: Mutex::default(),
            assigned: tokio::sync::Notify::new(),
        }
    }

    /// Changes whenever partitions are assigned or revoked: state built for the previous
    /// assignment may belong to another consumer now.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Resolves once partitions have been assigned since the last call (at once when they
    /// were assigned meanwhile). The consumer must be polled for an assignment to happen.
    pub async fn assigned(&self) {
        self.assigned.notified().await;
    }

    /// Whether `offset` lies before where the consumer resumed `partition` of `topic`: a
    /// record handled already, delivered again because the fetch started a batch early.
    pub fn is_before_resume_point(&self, topic: &str, partition: i32, offset: i64) -> bool {
        self.resume_points()
            .get(&(topic.to_owned(), partition))
            .is_some_and(|resume| offset < *resume)
    }

    /// The offset the consumer resumed `partition` of `topic` at, when it resumed at one of
    /// its own (the group's commit, or a rewind).
    pub fn resume_point(&self, topic: &str, partition: i32) -> Option<i64> {
        self.resume_points()
            .get(&(topic.to_owned(), partition))
            .copied()
    }

    /// Makes the consumer resume `partition` of `topic` at `offset`: seek it to the returned
    /// offset, which is where a fetch is sure to start at or before `offset` on every broker.
    pub fn resume_at(&self, topic: &str, partition: i32, offset: i64) -> i64 {
        self.resume_points()
            .insert((topic.to_owned(), partition), offset);
        (offset - MAX_BATCH_RECORDS).max(0)
    }

    fn resume_points(&self) -> std::sync::MutexGuard<'_, HashMap<(String, i32), i64>> {
        // The map holds plain offsets: one left by a panicking holder is still valid.
        self.resume_points
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn start_at_committed_offsets(
        &self,
        consumer: &BaseConsumer<Self>,
        tpl: &mut TopicPartitionList,
    ) {
        let committed = match consumer.committed_offsets(tpl.clone(), Duration::from_secs(10)) {
            Ok(committed) => committed,
            Err(error) => {
                tracing::warn!(%error, "reading the committed offsets failed; the fetch starts at them as they are");
                return;
            }
        };
        for element in committed.elements() {
            if let Offset::Offset(offset) = element.offset() {
                let start = self.resume_at(element.topic(), element.partition(), offset);
                if let Err(error) = tpl.set_partition_offset(
                    element.topic(),
                    element.partition(),
                    Offset::Offset(start),
                ) {
                    tracing::error!(%error, topic = element.topic(), partition = element.partition(), "cannot set a start offset");
                }
            }
        }
    }

    fn load_start_offsets(&self, tpl: &mut TopicPartitionList) {
        let Some((load, runtime)) = &self.start_offsets else {
            return;
        };
        let partitions: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect();
        let mut attempt = 0;
        let loaded = loop {
            let result = load_blocking(runtime, load(partitions.clone()));
            match result {
                Ok(offsets) => break Some(offsets),
                Err(LoadFailure::RuntimeGone) => {
                    // The consumer is closing in a runtime that shuts down: it reads nothing
                    // more, and waiting here would only hold up its leaving the group.
                    tracing::info!(
                        "the runtime is shutting down: partitions assigned while the consumer closes are never read"
                    );
                    break None;
                }
                Err(LoadFailure::Failed(error)) if attempt < 5 => {
                    attempt += 1;
                    tracing::warn!(%error, attempt, "loading start offsets failed; retrying");
                    std::thread::sleep(Duration::from_millis(200 * attempt));
                }
                Err(LoadFailure::Failed(error)) => {
                    tracing::error!(%error, "loading start offsets failed; starting from the beginning, the checkpoints skip what was applied");
                    break None;
                }
            }
        };
        for (topic, partition) in partitions {
            let offset = match &loaded {
                Some(offsets) => match offsets.get(&(topic.clone(), partition)) {
                    Some(offset) => Offset::Offset(self.resume_at(&topic, partition, *offset)),
                    None => {
                        // No checkpoint: nothing of it applied, so the consumer goes on from
                        // the log's first offset, and takes a run its process appends there
                        // (a new partition's first records) without waiting for a fetch.
                        self.resume_points().insert((topic.clone(), partition), 0);
                        Offset::Beginning
                    }
                },
                None => Offset::Beginning,
            };
            if let Err(error) = tpl.set_partition_offset(&topic, partition, offset) {
                tracing::error!(%error, %topic, partition, "cannot set a start offset");
            }
        }
    }
}

/// Runs `load` on `runtime` and waits for it, at most 30 s. Not `block_on`: a consumer
/// dropped while its runtime shuts down still gets a rebalance callback, and a future
/// blocked on in it would wait forever for a runtime that no longer polls; a task spawned on
/// it is dropped instead, which ends the wait at once.
fn load_blocking(
    runtime: &tokio::runtime::Handle,
    load: BoxFuture<'static, Result<StartOffsetMap, String>>,
) -> Result<StartOffsetMap, LoadFailure> {
    let (sender, receiver) = std::sync::mpsc::channel();
    runtime.spawn(async move {
        let _ = sender.send(load.await);
    });
    match blocking(|| receiver.recv_timeout(Duration::from_secs(30))) {
        Ok(loaded) => loaded.map_err(LoadFailure::Failed),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(LoadFailure::RuntimeGone),
        Err(timeout) => Err(LoadFailure::Failed(format!(
            "the start offsets did not load: {timeout}"
        ))),
    }
}

/// Why start offsets did not load.
enum LoadFailure {
    /// The runtime dropped the load unfinished: it is shutting down, and will run no other.
    RuntimeGone,
    Failed(String),
}

/// Runs `work`, which blocks (a metadata request, a seek, the rebalance callback's waits), so
/// that the Tokio worker it runs on hands its other tasks to the rest of the pool meanwhile.
/// On a current-thread runtime there is no other worker: it just runs.
pub fn blocking<R>(work: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) if runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

impl ClientContext for RebalanceContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        if is_pattern_without_topics(&error) && reason.contains(": ^") {
            // A pattern subscription (`^…`) before any topic matches it: nothing is wrong.
            tracing::debug!(%error, reason, "no topic matches the subscribed pattern yet");
        } else {
            tracing::error!(%error, reason, "librdkafka");
        }
    }
}

/// The error a consumer subscribed by pattern reports while no topic matches the pattern.
pub fn is_pattern_without_topics(error: &rdkafka::error::KafkaError) -> bool {
    error.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition)
}

impl ConsumerContext for RebalanceContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        // The callback runs inside the consumer's poll, on an async worker, and waits for
        // the broker and Postgres: off that worker.
        let result = blocking(|| match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                // The assignment replaces the previous one whole (eager rebalancing).
                self.resume_points().clear();
                if self.start_offsets.is_some() {
                    self.load_start_offsets(tpl);
                } else {
                    self.start_at_committed_offsets(consumer, tpl);
                }
                tracing::info!(partitions = ?describe(tpl), "partitions assigned");
                let assigned = consumer.assign(tpl);
                if assigned.is_ok() {
                    // A permit if nobody waits yet: the next wait returns at once.
                    self.assigned.notify_one();
                }
                assigned
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                tracing::info!(partitions = ?describe(tpl), "partitions revoked");
                consumer.unassign()
            }
            other => {
                tracing::error!(error = ?other, "rebalance failed");
                consumer.unassign()
            }
        });
        if let Err(error) = result {
            tracing::error!(%error, "applying the assignment failed");
        }
    }
}

fn describe(tpl: &TopicPartitionList) -> Vec<String> {
    tpl.elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(offset) => format!("{}/{}@{offset}", e.topic(), e.partition()),
            other => format!("{}/{}@{other:?}", e.topic(), e.partition()),
        })
        .collect()
}

/// How a reader treats one record of a fenced topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// A valid record: apply it.
    Apply,
    /// A fence: nothing to apply, and records of lower epochs are void from here on.
    Fence { epoch: i64 },
    /// Written by a writer that had already been fenced: never apply it.
    Void { writer_epoch: i64, fence_epoch: i64 },
    /// No writer headers: not written by the command processor, so it is not a fact of the
    /// log. Dead-letter it as a permanent error.
    Unfenced,
}

/// Decodes an event, trying again what may pass (the registry out of reach) with a doubling
/// pause until `patience` has run out: for readers that must not skip an event.
pub async fn decode_event_within(
    codec: &event_schemas::Codec,
    bytes: Option<&[u8]>,
    patience: Duration,
) -> Result<event_schemas::CoreEvent, event_schemas::CodecError> {
    let started = std::time::Instant::now();
    let mut pause = Duration::from_millis(100);
    loop {
        match codec.decode_event(bytes).await {
            Err(error) if error.is_retryable() && started.elapsed() + pause < patience => {
                tracing::warn!(%error, retry_in_ms = pause.as_millis() as u64, "decoding an event failed; trying again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            decoded => return decoded,
        }
    }
}

/// The reader rule: within a partition, once a fence of epoch N has been read, records with a
/// lower `writer-epoch` are void. `fence_epoch` is the highest fence read so far in the
/// partition; it travels with the reader's offset so that the rule survives restarts.
pub fn admit(fence_epoch: &mut i64, envelope: &Envelope) -> Admission {
    match envelope.writer_epoch {
        Some(epoch) if envelope.is_fence() => {
            *fence_epoch = (*fence_epoch).max(epoch);
            Admission::Fence { epoch }
        }
        Some(writer_epoch) if writer_epoch < *fence_epoch => Admission::Void {
            writer_epoch,
            fence_epoch: *fence_epoch,
        },
        Some(_) => Admission::Apply,
        None => Admission::Unfenced,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use event_schemas::envelope::FENCE_TYPE;

    fn record(event_type: &str, epoch: Option<i64>) -> Envelope {
        let mut envelope = Envelope::new(event_type, "/test");
        envelope.writer_epoch = epoch;
        envelope
    }

    #[test]
    fn records_of_a_fenced_writer_are_void_after_the_fence_only() {
        let mut fence = 0;
        let zombie = record("core.plugin.registered", Some(1));
        assert_eq!(admit(&mut fence, &zombie), Admission::Apply);
        assert_eq!(
            admit(&mut fence, &record(FENCE_TYPE, Some(2))),
            Admission::Fence { epoch: 2 }
        );
        assert_eq!(
            admit(&mut fence, &zombie),
            Admission::Void {
                writer_epoch: 1,
                fence_epoch: 2
            }
        );
        assert_eq!(
            admit(&mut fence, &record("core.plugin.registered", Some(2))),
            Admission::Apply
        );
    }

    #[test]
    fn an_older_fence_never_lowers_the_bar_and_unsigned_records_are_flagged() {
        let mut fence = 5;
        admit(&mut fence, &record(FENCE_TYPE, Some(3)));
        assert_eq!(fence, 5);
        assert_eq!(
            admit(&mut fence, &record("core.plugin.registered", None)),
            Admission::Unfenced
        );
    }
}
