//! Synthesised event logs, written straight to the `core.*` topics as the command processor
//! writes them (Avro through the registry, CloudEvents headers, aggregate versions and a
//! writer epoch), so that projections can be measured on more events than the command side
//! could produce in a bench's time.

use event_schemas::events::{
    PluginEnabled, PluginInstallRequested, PluginInstallStepCompleted, PluginInstalled,
    PluginRegistered, TenantCreated, TenantPluginEnabled,
};
use event_schemas::{Codec, CoreEvent, Envelope, PluginEvent, TenantEvent, Topics};
use futures::future::try_join_all;
use infra::config::KafkaConfig;
use plexica::PlatformConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::process::Isolation;

/// The install saga's steps, as the command processor records them.
const INSTALL_STEPS: [&str; 5] = [
    "DEPENDENCIES_CHECKED",
    "PERMISSIONS_RESERVED",
    "MIGRATIONS_APPLIED",
    "ROUTES_REGISTERED",
    "HEALTH_CHECKED",
];

/// The events of a plugin taken to ACTIVE, `length` of them at most (9 reach ACTIVE; more
/// toggle it between DISABLED and ACTIVE).
pub fn plugin_history(id: &str, length: usize) -> Vec<CoreEvent> {
    let version = "1.0.0".to_owned();
    let manifest = crate::manifest(id, &version);
    let mut events = vec![PluginEvent::Registered(PluginRegistered {
        plugin_id: id.to_owned(),
        name: format!("Plugin {id}"),
        version: version.clone(),
        description: Some("A plugin made by the benchmarks".to_owned()),
        manifest: manifest.to_string(),
    })];
    events.push(PluginEvent::InstallRequested(PluginInstallRequested {
        plugin_id: id.to_owned(),
        version: version.clone(),
    }));
    for step in INSTALL_STEPS {
        events.push(PluginEvent::InstallStepCompleted(
            PluginInstallStepCompleted {
                plugin_id: id.to_owned(),
                version: version.clone(),
                step: step.to_owned(),
            },
        ));
    }
    events.push(PluginEvent::Installed(PluginInstalled {
        plugin_id: id.to_owned(),
        version: version.clone(),
    }));
    while events.len() < length {
        let toggle = if events.len() % 2 == 0 {
            PluginEvent::Enabled(PluginEnabled {
                plugin_id: id.to_owned(),
                version: version.clone(),
            })
        } else {
            PluginEvent::Disabled(event_schemas::events::PluginDisabled {
                plugin_id: id.to_owned(),
                version: version.clone(),
                reason: Some("benchmark".to_owned()),
            })
        };
        events.push(toggle);
    }
    events.truncate(length);
    events.into_iter().map(CoreEvent::Plugin).collect()
}

/// A tenant that enables `plugins`.
pub fn tenant_history(id: uuid::Uuid, plugins: &[String]) -> Vec<CoreEvent> {
    let tenant_id = id.to_string();
    let mut events = vec![TenantEvent::Created(TenantCreated {
        tenant_id: tenant_id.clone(),
        slug: format!("t-{}", &id.simple().to_string()[20..]),
        name: format!("Tenant {tenant_id}"),
    })];
    events.extend(plugins.iter().map(|plugin| {
        TenantEvent::PluginEnabled(TenantPluginEnabled {
            tenant_id: tenant_id.clone(),
            plugin_id: plugin.clone(),
            plugin_version: "1.0.0".to_owned(),
            configuration: "{}".to_owned(),
        })
    }));
    events.into_iter().map(CoreEvent::Tenant).collect()
}

/// A record as it goes on the log: an event, or bytes no reader can decode.
pub enum Entry {
    Event(CoreEvent),
    Poison,
}

/// Writes aggregates' histories to the isolation's topics.
pub struct LogWriter {
    producer: FutureProducer,
    codec: Codec,
    topics: Topics,
}

impl LogWriter {
    pub async fn new(isolation: &Isolation, registry_url: &str) -> Self {
        Self::on(&isolation.config, &isolation.topics, registry_url).await
    }

    /// A writer on the topics of `topics` (a running test platform's, say) of the platform
    /// configured by `config`.
    pub async fn on(config: &PlatformConfig, topics: &Topics, registry_url: &str) -> Self {
        infra::kafka::create_topics(&config.kafka, &topics.catalogue())
            .await
            .expect("the bench topics are created");
        Self {
            producer: producer(&config.kafka),
            codec: crate::codec(config, registry_url),
            topics: topics.clone(),
        }
    }

    /// Writes one record of `key` as its aggregate's version `version`.
    pub async fn append(&self, key: &str, version: u64, entry: &Entry) {
        self.append_with(key, version, entry, |_| {}).await;
    }

    /// Writes one record of `key` as its aggregate's version `version`, its envelope as `edit`
    /// leaves it (a writer of the log other than the command processor may put anything there).
    pub async fn append_with(
        &self,
        key: &str,
        version: u64,
        entry: &Entry,
        edit: impl FnOnce(&mut Envelope),
    ) {
        let delivery = self.send(key, version, entry, edit).await;
        acknowledged(vec![delivery]).await;
    }

    async fn send(
        &self,
        key: &str,
        version: u64,
        entry: &Entry,
        edit: impl FnOnce(&mut Envelope),
    ) -> rdkafka::producer::DeliveryFuture {
        let (topic, payload, event_type) = match entry {
            Entry::Event(event) => {
                let topic = event.stream().topic(&self.topics);
                let payload = self
                    .codec
                    .encode_event(&topic, event)
                    .await
                    .expect("the event encodes");
                (topic, payload, event.event_type())
            }
            Entry::Poison => (
                self.topics.plugins(),
                b"not an Avro record".to_vec(),
                "core.plugin.enabled",
            ),
        };
        let mut envelope = Envelope::new(event_type, "/plexica/bench");
        envelope.subject = Some(key.to_owned());
        envelope.aggregate_version = Some(version);
        envelope.writer_epoch = Some(1);
        envelope.causation_id = Some(uuid::Uuid::now_v7());
        edit(&mut envelope);
        self.producer
            .send_result(
                FutureRecord::to(&topic)
                    .key(key)
                    .payload(&payload)
                    .headers(envelope.to_headers()),
            )
            .map_err(|(error, _)| error)
            .expect("the producer queue takes the record")
    }

    /// Writes `histories` (aggregate key → its records in order) round by round, so that
    /// aggregates interleave as they do on a live log. Returns the number of records.
    pub async fn write(&self, histories: Vec<(String, Vec<Entry>)>) -> usize {
        let longest = histories.iter().map(|(_, h)| h.len()).max().unwrap_or(0);
        let mut written = 0;
        let mut pending = Vec::new();
        for round in 0..longest {
            for (key, history) in &histories {
                let Some(entry) = history.get(round) else {
                    continue;
                };
                let version = u64::try_from(round + 1).unwrap_or(u64::MAX);
                let delivery = self.send(key, version, entry, |_| {}).await;
                pending.push(delivery);
                written += 1;
                if pending.len() >= 10_000 {
                    acknowledged(std::mem::take(&mut pending)).await;
                }
            }
        }
        acknowledged(pending).await;
        written
    }
}

fn producer(kafka: &KafkaConfig) -> FutureProducer {
    let mut config = infra::kafka::producer_config(kafka);
    config
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "200000");
    config.create().expect("a producer")
}

async fn acknowledged(deliveries: Vec<rdkafka::producer::DeliveryFuture>) {
    let results = try_join_all(deliveries)
        .await
        .expect("the producer delivered every record");
    for result in results {
        result
            .map_err(|(error, _)| error)
            .expect("the broker took the record");
    }
}

/// Every record of `topic` as it is now, with its envelope, in each partition's order.
pub async fn read_log(app: &crate::TestApp, topic: &str) -> Vec<(i32, i64, Envelope)> {
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::message::Message;
    use rdkafka::{Offset, TopicPartitionList};
    use std::time::Duration;

    let consumer: StreamConsumer =
        infra::kafka::consumer_config(&app.config.kafka, "e2e-log-reader")
            .create()
            .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    let mut ends = std::collections::HashMap::new();
    for partition in 0..app.config.kafka.partitions {
        let (_, high) = consumer
            .fetch_watermarks(topic, partition, Duration::from_secs(10))
            .expect("watermarks");
        if high > 0 {
            ends.insert(partition, high);
            assignment
                .add_partition_offset(topic, partition, Offset::Beginning)
                .expect("assignment");
        }
    }
    consumer.assign(&assignment).expect("assign");
    let mut records = Vec::new();
    while !ends.is_empty() {
        let message = tokio::time::timeout(Duration::from_secs(10), consumer.recv())
            .await
            .expect("the log is readable")
            .expect("no Kafka error");
        if let Some(envelope) = message
            .headers()
            .and_then(|h| Envelope::from_headers(h).ok())
        {
            records.push((message.partition(), message.offset(), envelope));
        }
        if ends
            .get(&message.partition())
            .is_some_and(|end| message.offset() + 1 >= *end)
        {
            ends.remove(&message.partition());
        }
    }
    records
}

/// Moves the stopped platform's command processor back to the start of `plexica.commands`,
/// as a crash before its offset commits would leave it: every command is delivered again.
pub fn rewind_command_processor(config: &plexica::PlatformConfig) {
    use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
    use rdkafka::{Offset, TopicPartitionList};

    let topics = Topics::new(config.kafka.topic_prefix.clone(), config.kafka.partitions);
    let group = topics.group("plexica.command-processor");
    let rewinder: StreamConsumer = infra::kafka::consumer_config(&config.kafka, &group)
        .create()
        .expect("consumer");
    let mut offsets = TopicPartitionList::new();
    for partition in 0..config.kafka.partitions {
        offsets
            .add_partition_offset(&topics.commands(), partition, Offset::Offset(0))
            .expect("offsets");
    }
    rewinder
        .commit(&offsets, CommitMode::Sync)
        .expect("rewound");
}
