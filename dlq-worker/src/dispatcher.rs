//! Sends due dead letters back to their consumers (`plexica.retry.{consumer}`), releases
//! drained keys, and reports the DLQ's gauges. Every send is preceded by its record on the
//! DLQ (`retried`, `key-released`), so the log says what was sent even if the worker stops
//! in between.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use event_schemas::Topics;
use event_schemas::topics::{RETRYING_CONSUMERS, takes_retries_sql};
use infra::dead_letter::{self, control, header, record};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::{SCHEMA, WORKER_ACTOR};

/// How often the dispatcher looks for due work.
const POLL: Duration = Duration::from_millis(50);
/// Largest number of dead letters sent in one round.
const ROUND: i64 = 200;
/// A retry whose outcome has not come back in this time is sent again (its consumer skips
/// a dead letter it already resolved).
const OUTCOME_TIMEOUT_SECS: f64 = 300.0;
/// How often the gauges are refreshed.
const GAUGES_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("Postgres: {0}")]
    Postgres(#[from] sqlx::Error),
}

pub async fn run(
    producer: FutureProducer,
    topics: Topics,
    pool: PgPool,
    shutdown: CancellationToken,
) {
    let mut gauges_at = Instant::now();
    let mut swept = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(POLL) => {}
        }
        // Once, when the worker's tables exist.
        if !swept {
            match fail_unretryable(&pool).await {
                Ok(failed) => {
                    swept = true;
                    if failed > 0 {
                        tracing::info!(
                            failed,
                            "dead letters of consumers without retries now wait for an admin"
                        );
                    }
                }
                Err(error) => {
                    tracing::debug!(%error, "dead letters of consumers without retries not swept yet")
                }
            }
        }
        // Until the worker's consumer has made its tables (a new database), there is nothing
        // to send or release.
        if !swept {
            continue;
        }
        if let Err(error) = send_due(&producer, &topics, &pool).await {
            tracing::warn!(%error, "sending due retries failed; trying again");
        }
        if let Err(error) = release_drained(&producer, &topics, &pool).await {
            tracing::warn!(%error, "releasing drained keys failed; trying again");
        }
        if gauges_at.elapsed() >= GAUGES_EVERY {
            gauges_at = Instant::now();
            if let Err(error) = gauges(&pool).await {
                tracing::debug!(%error, "DLQ gauges not refreshed");
            }
        }
    }
}

/// Dead letters of consumers that read no retry topic, scheduled for a retry before the store
/// knew better: they wait for an admin. Returns how many.
async fn fail_unretryable(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let failed = sqlx::query(&format!(
        "UPDATE {SCHEMA}.dead_letters SET status = 'FAILED', next_retry_at = NULL, updated_at = now()
         WHERE status IN ('RETRY_SCHEDULED', 'RETRYING') AND NOT {}",
        takes_retries_sql(1)
    ))
    .bind(RETRYING_CONSUMERS.as_slice())
    .execute(pool)
    .await?;
    Ok(failed.rows_affected())
}

#[derive(sqlx::FromRow)]
struct Due {
    id: uuid::Uuid,
    consumer: String,
    record_key: Option<String>,
    payload: Option<Vec<u8>>,
    headers: serde_json::Value,
    retry_round: i32,
    original_topic: String,
    original_partition: i32,
    original_offset: i64,
}

async fn send_due(
    producer: &FutureProducer,
    topics: &Topics,
    pool: &PgPool,
) -> Result<(), DispatchError> {
    let mut tx = pool.begin().await?;
    sqlx::query(&format!(
        "UPDATE {SCHEMA}.dead_letters SET status = 'RETRY_SCHEDULED', next_retry_at = now()
         WHERE status = 'RETRYING' AND updated_at < now() - make_interval(secs => $1)"
    ))
    .bind(OUTCOME_TIMEOUT_SECS)
    .execute(&mut *tx)
    .await?;
    // SKIP LOCKED: several workers share the work without sending a dead letter twice.
    let due: Vec<Due> = sqlx::query_as(&format!(
        "SELECT id, consumer, record_key, payload, headers, retry_round, original_topic,
                original_partition, original_offset
         FROM {SCHEMA}.dead_letters
         WHERE status = 'RETRY_SCHEDULED' AND next_retry_at <= now() AND {}
         ORDER BY dlq_partition, dlq_offset LIMIT $1
         FOR UPDATE SKIP LOCKED",
        takes_retries_sql(2)
    ))
    .bind(ROUND)
    .bind(RETRYING_CONSUMERS.as_slice())
    .fetch_all(&mut *tx)
    .await?;
    if due.is_empty() {
        return Ok(());
    }
    for letter in &due {
        let round = letter.retry_round.saturating_add(1);
        let key = letter.record_key.as_deref().map(str::as_bytes);
        dead_letter::publish_record(
            producer,
            &topics.dlq(),
            record::RETRIED,
            key,
            &[
                (header::ID, letter.id.to_string()),
                (header::CONSUMER, letter.consumer.clone()),
                (header::RETRY_ROUND, round.to_string()),
                (header::ACTOR, WORKER_ACTOR.to_owned()),
            ],
            None,
        )
        .await?;
        send_retry(producer, topics, letter, round).await?;
        sqlx::query(&format!(
            "UPDATE {SCHEMA}.dead_letters
             SET status = 'RETRYING', retry_round = $2, next_retry_at = NULL, updated_at = now()
             WHERE id = $1"
        ))
        .bind(letter.id)
        .bind(round)
        .execute(&mut *tx)
        .await?;
        metrics::counter!("plexica_dlq_retry_attempts_total", "consumer" => letter.consumer.clone())
            .increment(1);
    }
    tx.commit().await?;
    Ok(())
}

/// The dead letter's record as it was (key, value, original headers), with what its
/// consumer needs to answer for it.
async fn send_retry(
    producer: &FutureProducer,
    topics: &Topics,
    letter: &Due,
    round: i32,
) -> Result<(), DispatchError> {
    let original: BTreeMap<String, String> =
        serde_json::from_value(letter.headers.clone()).unwrap_or_default();
    let context = [
        (header::RECORD, control::RETRY.to_owned()),
        (header::ID, letter.id.to_string()),
        (header::RETRY_ROUND, round.to_string()),
        (header::ORIGINAL_TOPIC, letter.original_topic.clone()),
        (
            header::ORIGINAL_PARTITION,
            letter.original_partition.to_string(),
        ),
        (header::ORIGINAL_OFFSET, letter.original_offset.to_string()),
    ];
    let mut headers = OwnedHeaders::new();
    for (name, value) in original
        .iter()
        .filter(|(name, _)| !name.starts_with("dlq-"))
    {
        headers = headers.insert(Header {
            key: name,
            value: Some(value.as_str()),
        });
    }
    for (name, value) in &context {
        headers = headers.insert(Header {
            key: name,
            value: Some(value.as_str()),
        });
    }
    let topic = topics.retry(&letter.consumer);
    let mut message: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&topic).headers(headers);
    if let Some(key) = &letter.record_key {
        message = message.key(key.as_bytes());
    }
    if let Some(payload) = &letter.payload {
        message = message.payload(payload);
    }
    let delivered = producer
        .send(message, Duration::from_secs(30))
        .await
        .map_err(|(error, _)| error)?;
    // The consumer it retries may be resting in this process.
    infra::doorbell::ring([(topic.as_str(), delivered.partition)]);
    Ok(())
}

/// Sends `release` for every key whose queue drained, naming the last dead letter it knew
/// of: a consumer that parked another record since ignores it.
async fn release_drained(
    producer: &FutureProducer,
    topics: &Topics,
    pool: &PgPool,
) -> Result<(), DispatchError> {
    let mut tx = pool.begin().await?;
    let drained: Vec<(String, String, uuid::Uuid)> = sqlx::query_as(&format!(
        "SELECT consumer, record_key, last_id FROM {SCHEMA}.parked_keys
         WHERE status = 'DRAINED' LIMIT $1 FOR UPDATE SKIP LOCKED"
    ))
    .bind(ROUND)
    .fetch_all(&mut *tx)
    .await?;
    for (consumer, key, last) in &drained {
        crate::release(producer, topics, consumer, key, Some(*last), WORKER_ACTOR).await?;
        sqlx::query(&format!(
            "UPDATE {SCHEMA}.parked_keys SET status = 'RELEASED', released_at = now()
             WHERE consumer = $1 AND record_key = $2"
        ))
        .bind(consumer)
        .bind(key)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

async fn gauges(pool: &PgPool) -> Result<(), sqlx::Error> {
    let counts: Vec<(String, String, i64)> = sqlx::query_as(&format!(
        "SELECT consumer, status, count(*) FROM {SCHEMA}.dead_letters GROUP BY consumer, status"
    ))
    .fetch_all(pool)
    .await?;
    for status in [
        "RETRY_SCHEDULED",
        "RETRYING",
        "FAILED",
        "PARKED",
        "RESOLVED",
        "DISCARDED",
    ] {
        let consumers: std::collections::BTreeSet<&String> =
            counts.iter().map(|(c, _, _)| c).collect();
        for consumer in consumers {
            let count = counts
                .iter()
                .find(|(c, s, _)| c == consumer && s == status)
                .map_or(0, |(_, _, n)| *n);
            metrics::gauge!("plexica_dlq_dead_letters", "consumer" => consumer.clone(), "state" => status)
                .set(count as f64);
        }
    }
    let parked: Vec<(String, i64, Option<f64>)> = sqlx::query_as(&format!(
        "SELECT consumer, count(*) FILTER (WHERE status <> 'RELEASED'),
                extract(epoch FROM now() - min(parked_at) FILTER (WHERE status <> 'RELEASED'))::float8
         FROM {SCHEMA}.parked_keys GROUP BY consumer"
    ))
    .fetch_all(pool)
    .await?;
    for (consumer, count, oldest) in parked {
        metrics::gauge!("plexica_dlq_parked_keys", "consumer" => consumer.clone())
            .set(count as f64);
        metrics::gauge!("plexica_dlq_oldest_parked_seconds", "consumer" => consumer)
            .set(oldest.unwrap_or(0.0));
    }
    Ok(())
}
