//! The DLQ worker: a first-class consumer of `plexica.dlq` that keeps every dead letter, with
//! the context its consumer recorded, in Postgres where admins can inspect it.

use std::collections::BTreeMap;

use event_schemas::Topics;
use event_schemas::envelope::header_str;
use futures::future::BoxFuture;
use infra::config::KafkaConfig;
use infra::consumer::{ConsumerSpec, HandlerError, Record, RecordHandler, RunnerError};
use infra::dead_letter::header;
use infra::http::Readiness;
use rdkafka::Message;
use rdkafka::message::Headers;
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

/// Postgres schema of the dead-letter store.
pub const SCHEMA: &str = "dlq";

pub fn spec(topics: &Topics) -> ConsumerSpec {
    ConsumerSpec {
        name: "dlq-worker".to_owned(),
        group: topics.group("plexica.dlq-worker"),
        schema: SCHEMA.to_owned(),
        topics: vec![topics.dlq()],
        fenced: false,
        dlq_topic: topics.dlq(),
    }
}

pub async fn run(
    kafka: &KafkaConfig,
    topics: &Topics,
    pool: PgPool,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> Result<(), RunnerError> {
    infra::consumer::run(
        spec(topics),
        DeadLetterStore,
        kafka,
        pool,
        readiness,
        shutdown,
    )
    .await
}

pub struct DeadLetterStore;

#[derive(Debug, thiserror::Error)]
#[error("DLQ record without the `{0}` header")]
struct MissingContext(&'static str);

impl RecordHandler for DeadLetterStore {
    fn ddl(&self, schema: &str) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {schema}.dead_letters (
                 id uuid PRIMARY KEY,
                 consumer text NOT NULL,
                 original_topic text NOT NULL,
                 original_partition integer NOT NULL,
                 original_offset bigint NOT NULL,
                 original_timestamp timestamptz,
                 record_key text,
                 event_type text,
                 error_class text NOT NULL,
                 error_message text NOT NULL,
                 error_causes jsonb NOT NULL DEFAULT '[]',
                 attempts integer NOT NULL,
                 first_failure_at timestamptz,
                 status text NOT NULL DEFAULT 'PARKED',
                 payload bytea,
                 headers jsonb NOT NULL,
                 dlq_partition integer NOT NULL,
                 dlq_offset bigint NOT NULL,
                 dead_lettered_at timestamptz NOT NULL DEFAULT now(),
                 UNIQUE (consumer, original_topic, original_partition, original_offset)
             );
             CREATE INDEX IF NOT EXISTS dead_letters_consumer_status
                 ON {schema}.dead_letters (consumer, status);"
        )
    }

    fn apply<'a>(
        &'a mut self,
        tx: &'a mut PgConnection,
        record: &'a Record<'a>,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            let message = record.message;
            let Some(headers) = message.headers() else {
                return Err(HandlerError::Permanent(Box::new(MissingContext(
                    header::CONSUMER,
                ))));
            };
            let text = |name: &'static str| header_str(headers, name).map(str::to_owned);
            let required = |name: &'static str| {
                text(name).ok_or(HandlerError::Permanent(Box::new(MissingContext(name))))
            };
            // Only `dead-lettered` records exist so far; later records (retried, discarded, ...)
            // will change the status of the dead letter they name.
            if text(header::RECORD).as_deref() != Some("dead-lettered") {
                return Ok(());
            }
            let number = |name: &'static str| -> Result<i64, HandlerError> {
                required(name)?
                    .parse()
                    .map_err(|e: std::num::ParseIntError| HandlerError::Permanent(Box::new(e)))
            };
            let all_headers: BTreeMap<String, String> = headers
                .iter()
                .map(|h| {
                    let value = h.value.map(String::from_utf8_lossy).unwrap_or_default();
                    (h.key.to_owned(), value.into_owned())
                })
                .collect();
            let causes: serde_json::Value = text(header::ERROR_CAUSES)
                .and_then(|c| serde_json::from_str(&c).ok())
                .unwrap_or_else(|| serde_json::json!([]));
            let original_timestamp = text(header::ORIGINAL_TIMESTAMP)
                .and_then(|t| t.parse::<i64>().ok())
                .and_then(chrono::DateTime::from_timestamp_millis);
            let first_failure_at = text(header::FIRST_FAILURE_AT)
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
                .map(|t| t.with_timezone(&chrono::Utc));
            let original_partition = i32::try_from(number(header::ORIGINAL_PARTITION)?)
                .map_err(|e| HandlerError::Permanent(Box::new(e)))?;
            let attempts = i32::try_from(number(header::ATTEMPTS)?).unwrap_or(i32::MAX);
            sqlx::query(&format!(
            "INSERT INTO {SCHEMA}.dead_letters
                 (id, consumer, original_topic, original_partition, original_offset, original_timestamp,
                  record_key, event_type, error_class, error_message, error_causes, attempts,
                  first_failure_at, payload, headers, dlq_partition, dlq_offset)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
             ON CONFLICT (consumer, original_topic, original_partition, original_offset) DO NOTHING"
        ))
        .bind(uuid::Uuid::now_v7())
        .bind(required(header::CONSUMER)?)
        .bind(required(header::ORIGINAL_TOPIC)?)
        .bind(original_partition)
        .bind(number(header::ORIGINAL_OFFSET)?)
        .bind(original_timestamp)
        .bind(message.key().map(|k| String::from_utf8_lossy(k).into_owned()))
        .bind(text(event_schemas::envelope::header::TYPE))
        .bind(required(header::ERROR_CLASS)?)
        .bind(required(header::ERROR_MESSAGE)?)
        .bind(causes)
        .bind(attempts)
        .bind(first_failure_at)
        .bind(message.payload())
        .bind(serde_json::to_value(&all_headers).unwrap_or_default())
        .bind(message.partition())
        .bind(message.offset())
        .execute(tx)
        .await
        .map_err(|e| HandlerError::Retryable(Box::new(e)))?;
            Ok(())
        })
    }
}
