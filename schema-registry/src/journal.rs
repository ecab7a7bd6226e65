//! The registry's journal on the log (issue 12, DESIGN.md §3): every schema, subject version
//! and compatibility level is written to `plexica.schemas` before the registry answers, and
//! the registry replays that topic into Postgres when it starts. Postgres is a cache of the
//! journal: a lost or restored database loses no schema, so the event log stays decodable,
//! as Confluent's and Redpanda's registries keep theirs in a `_schemas` topic.

use std::sync::Arc;
use std::time::Duration;

use infra::config::KafkaConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use crate::compatibility::Level;
use crate::store;

/// One fact of the registry, keyed so that a compacted topic keeps the latest of each.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Entry {
    Schema {
        id: i32,
        /// sha256 of `canonical`, hex.
        fingerprint: String,
        canonical: String,
        schema: String,
    },
    Version {
        subject: String,
        version: i32,
        id: i32,
    },
    /// A subject's level (`""` for the global one); `None` when it was removed.
    Level {
        subject: String,
        level: Option<String>,
    },
}

impl Entry {
    fn key(&self) -> String {
        match self {
            Entry::Schema { id, .. } => format!("schema:{id}"),
            Entry::Version {
                subject, version, ..
            } => format!("version:{version}:{subject}"),
            Entry::Level { subject, .. } => format!("level:{subject}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("Postgres: {0}")]
    Postgres(#[from] sqlx::Error),
    #[error("entry at offset {offset} of the journal is unreadable: {reason}")]
    Unreadable { offset: i64, reason: String },
    #[error("the journal could not be read to its end: {0}")]
    Stalled(&'static str),
}

/// Writes the registry's facts to its topic.
#[derive(Clone)]
pub struct Journal {
    producer: FutureProducer,
    topic: String,
}

impl Journal {
    pub fn new(kafka: &KafkaConfig, topic: String) -> Result<Self, JournalError> {
        Ok(Journal {
            producer: infra::kafka::producer(kafka)?,
            topic,
        })
    }

    /// Appends `entries` and returns once the broker has acknowledged them all.
    pub async fn append(&self, entries: &[Entry]) -> Result<(), JournalError> {
        for entry in entries {
            let value = serde_json::to_vec(entry).unwrap_or_default();
            self.producer
                .send(
                    FutureRecord::to(&self.topic)
                        .partition(0)
                        .key(&entry.key())
                        .payload(&value),
                    Duration::from_secs(30),
                )
                .await
                .map_err(|(error, _)| error)?;
        }
        Ok(())
    }
}

/// Replays the journal into Postgres: what the log knows and the database lacks is put back.
/// Returns the number of entries read.
pub async fn restore(
    kafka: &KafkaConfig,
    topic: &str,
    pool: &PgPool,
) -> Result<usize, JournalError> {
    let consumer: Arc<StreamConsumer> =
        Arc::new(infra::kafka::consumer_config(kafka, "plexica.schema-registry.restore").create()?);
    // A metadata request blocks: off the runtime's worker threads.
    let (low, high) = {
        let (consumer, topic) = (consumer.clone(), topic.to_owned());
        tokio::task::spawn_blocking(move || {
            consumer.fetch_watermarks(&topic, 0, Duration::from_secs(10))
        })
        .await
        .map_err(|_| JournalError::Stalled("the watermark request was cancelled"))??
    };
    if high <= low {
        return Ok(0);
    }
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, 0, Offset::Offset(low))?;
    consumer.assign(&assignment)?;
    let mut tx = pool.begin().await?;
    let mut read = 0;
    loop {
        let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .map_err(|_| JournalError::Stalled("no record within 30 s"))??;
        let offset = message.offset();
        let entry: Entry =
            serde_json::from_slice(message.payload().unwrap_or_default()).map_err(|e| {
                JournalError::Unreadable {
                    offset,
                    reason: e.to_string(),
                }
            })?;
        apply(&mut tx, &entry).await.map_err(|e| match e {
            JournalError::Unreadable { reason, .. } => JournalError::Unreadable { offset, reason },
            other => other,
        })?;
        read += 1;
        if offset + 1 >= high {
            break;
        }
    }
    // Ids registered from now on follow the highest one the journal knows.
    sqlx::query(
        "SELECT setval(pg_get_serial_sequence('schema_registry_schemas', 'id'),
                       GREATEST((SELECT max(id) FROM schema_registry_schemas), 1))",
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(read)
}

/// Writes to an empty journal what Postgres holds: a registry that kept its schemas only in
/// Postgres (before the journal existed) puts them on the log once.
pub async fn backfill(journal: &Journal, pool: &PgPool) -> Result<usize, JournalError> {
    let schemas: Vec<(i32, Vec<u8>, String, String)> = sqlx::query_as(
        "SELECT id, fingerprint, canonical, schema FROM schema_registry_schemas ORDER BY id",
    )
    .fetch_all(pool)
    .await?;
    let versions: Vec<(String, i32, i32)> = sqlx::query_as(
        "SELECT subject, version, schema_id FROM schema_registry_subject_versions
         ORDER BY subject, version",
    )
    .fetch_all(pool)
    .await?;
    let levels: Vec<(String, String)> =
        sqlx::query_as("SELECT subject, compatibility FROM schema_registry_config")
            .fetch_all(pool)
            .await?;
    let entries: Vec<Entry> = schemas
        .into_iter()
        .map(|(id, fingerprint, canonical, schema)| Entry::Schema {
            id,
            fingerprint: hex::encode(fingerprint),
            canonical,
            schema,
        })
        .chain(
            versions
                .into_iter()
                .map(|(subject, version, id)| Entry::Version {
                    subject,
                    version,
                    id,
                }),
        )
        .chain(levels.into_iter().map(|(subject, level)| Entry::Level {
            subject,
            level: Some(level),
        }))
        .collect();
    journal.append(&entries).await?;
    Ok(entries.len())
}

async fn apply(tx: &mut sqlx::PgConnection, entry: &Entry) -> Result<(), JournalError> {
    match entry {
        Entry::Schema {
            id,
            fingerprint,
            canonical,
            schema,
        } => {
            let fingerprint = hex::decode(fingerprint).map_err(|e| JournalError::Unreadable {
                offset: 0,
                reason: format!("fingerprint `{fingerprint}`: {e}"),
            })?;
            sqlx::query(
                "INSERT INTO schema_registry_schemas (id, fingerprint, canonical, schema)
                 OVERRIDING SYSTEM VALUE VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            )
            .bind(id)
            .bind(fingerprint)
            .bind(canonical)
            .bind(schema)
            .execute(&mut *tx)
            .await?;
        }
        Entry::Version {
            subject,
            version,
            id,
        } => {
            sqlx::query(
                "INSERT INTO schema_registry_subject_versions (subject, version, schema_id)
                 VALUES ($1, $2, $3)
                 ON CONFLICT (subject, version) DO UPDATE SET schema_id = excluded.schema_id",
            )
            .bind(subject)
            .bind(version)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        Entry::Level { subject, level } => match level.as_deref().map(Level::parse) {
            Some(Some(level)) => store::set_level(&mut *tx, subject, level).await?,
            Some(None) => {
                return Err(JournalError::Unreadable {
                    offset: 0,
                    reason: format!("unknown level {level:?}"),
                });
            }
            None => {
                store::delete_level(&mut *tx, subject).await?;
            }
        },
    }
    Ok(())
}
