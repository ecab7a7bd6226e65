//! Records of the consumer's retry topic: a dead letter to process again, a key to release,
//! a replay.

use std::collections::HashMap;
use std::time::Duration;

use event_schemas::Envelope;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use sqlx::PgConnection;

use super::admission::{CHECKPOINT_COLUMNS, Checkpoint, CheckpointRow, Replay, TopicPartition};
use super::attempts::apply_with_retries;
use super::batch::BatchContext;
use super::delivered::Delivered;
use super::parking::ParkedKeys;
use super::schema::fence_in_force;
use super::{ConsumerSpec, Record, RecordHandler, RunnerError};
use crate::dead_letter::{self, control, header};
use crate::kafka::RebalanceContext;

/// Handles a record of the consumer's retry topic: a dead letter to process again, a key to
/// release, or a replay. Answers the DLQ (`resolved`, `retry-failed`) before the commit.
pub(super) async fn control_record<H: RecordHandler>(
    context: &BatchContext<'_>,
    handler: &mut H,
    tx: &mut PgConnection,
    message: &Delivered<'_>,
    parked: &mut ParkedKeys,
    checkpoints: &mut HashMap<TopicPartition, Checkpoint>,
) -> Result<(), RunnerError> {
    let spec = context.spec;
    let schema = &spec.schema;
    let text = |name: &str| {
        message
            .headers()
            .and_then(|h| event_schemas::envelope::header_str(h, name))
            .map(str::to_owned)
    };
    match text(header::RECORD).as_deref() {
        Some(control::RETRY) => {
            let Some(id) = text(header::ID).and_then(|id| uuid::Uuid::parse_str(&id).ok()) else {
                tracing::error!(consumer = %spec.name, offset = message.offset(), "retry record without a dead letter id ignored");
                return Ok(());
            };
            let done: Option<uuid::Uuid> = sqlx::query_scalar(&format!(
                "SELECT dead_letter_id FROM {schema}.resolved_dead_letters WHERE dead_letter_id = $1"
            ))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            if done.is_some() {
                // Sent twice (a DLQ worker stopped between sending and recording): the
                // first delivery had its effect.
                tracing::info!(consumer = %spec.name, %id, "dead letter already resolved; retry skipped");
                return Ok(());
            }
            let Some(origin) = dead_letter::Origin::retried(message) else {
                tracing::error!(consumer = %spec.name, offset = message.offset(), %id, "retry record without its original position ignored");
                return Ok(());
            };
            let round = text(header::RETRY_ROUND).unwrap_or_else(|| "0".to_owned());
            let envelope = message
                .headers()
                .and_then(|h| Envelope::from_headers(h).ok());
            let record = Record {
                message,
                envelope,
                origin,
            };
            let result = apply_with_retries(handler, tx, &record, 1, None).await?;
            let key = message.key();
            let about = [
                (header::ID, id.to_string()),
                (header::CONSUMER, spec.name.clone()),
                (header::RETRY_ROUND, round),
            ];
            match result {
                Ok(()) => {
                    sqlx::query(&format!(
                        "INSERT INTO {schema}.resolved_dead_letters (dead_letter_id) VALUES ($1)
                         ON CONFLICT DO NOTHING"
                    ))
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                    dead_letter::publish_record(
                        context.producer,
                        &spec.dlq_topic,
                        dead_letter::record::RESOLVED,
                        key,
                        &about,
                        None,
                    )
                    .await?;
                    metrics::counter!("plexica_dlq_retries_total", "consumer" => spec.name.clone(), "outcome" => "resolved").increment(1);
                }
                Err(failure) => {
                    let mut context_headers = about.to_vec();
                    context_headers.extend([
                        (header::ERROR_CLASS, failure.class.as_str().to_owned()),
                        (header::ERROR_MESSAGE, failure.message.clone()),
                        (
                            header::ERROR_CAUSES,
                            serde_json::to_string(&failure.causes).unwrap_or_default(),
                        ),
                    ]);
                    dead_letter::publish_record(
                        context.producer,
                        &spec.dlq_topic,
                        dead_letter::record::RETRY_FAILED,
                        key,
                        &context_headers,
                        None,
                    )
                    .await?;
                    metrics::counter!("plexica_dlq_retries_total", "consumer" => spec.name.clone(), "outcome" => "failed").increment(1);
                }
            }
        }
        Some(control::RELEASE) => {
            let Some(key) = message.key() else {
                return Ok(());
            };
            let through =
                text(header::RELEASE_THROUGH).and_then(|id| uuid::Uuid::parse_str(&id).ok());
            let current = parked.get(key).copied();
            // A release that knows of an older last dead letter than ours is stale: a record
            // was parked after the releaser looked, and it must be retried first.
            let release = match (current, through) {
                (None, _) => false,
                (Some(_), None) => true,
                (Some(current), Some(through)) => current.last == through,
            };
            if release {
                sqlx::query(&format!(
                    "WITH ledger AS (
                         UPDATE {schema}.dead_lettered SET released = true
                         WHERE record_key = $1 AND NOT released
                     ),
                     -- A key parked before the ledger was kept: at least its head is known.
                     head AS (
                         INSERT INTO {schema}.dead_lettered (dead_letter_id, record_key, released)
                         SELECT head_id, record_key, true FROM {schema}.parked_keys
                         WHERE record_key = $1
                         ON CONFLICT DO NOTHING
                     )
                     DELETE FROM {schema}.parked_keys WHERE record_key = $1"
                ))
                .bind(key)
                .execute(&mut *tx)
                .await?;
                parked.remove(key);
                tracing::info!(consumer = %spec.name, key = %String::from_utf8_lossy(key), "parked key released");
            } else {
                tracing::info!(consumer = %spec.name, key = %String::from_utf8_lossy(key), "stale release ignored");
            }
        }
        Some(control::REPLAY) => {
            replay(context, tx, message, checkpoints).await?;
        }
        other => {
            tracing::error!(consumer = %spec.name, offset = message.offset(), kind = ?other, "unknown control record ignored");
        }
    }
    Ok(())
}

/// Moves the checkpoints of the consumer's topics back to an offset or a time. The rows are
/// marked `rewound`, so whichever instance owns a partition seeks back before it reads on.
pub(super) async fn replay(
    context: &BatchContext<'_>,
    tx: &mut PgConnection,
    message: &Delivered<'_>,
    checkpoints: &mut HashMap<TopicPartition, Checkpoint>,
) -> Result<(), RunnerError> {
    let spec = context.spec;
    let schema = &spec.schema;
    let text = |name: &str| {
        message
            .headers()
            .and_then(|h| event_schemas::envelope::header_str(h, name))
            .map(str::to_owned)
    };
    let from_offset = text(header::REPLAY_FROM_OFFSET).and_then(|o| o.parse::<i64>().ok());
    let from_time = text(header::REPLAY_FROM_TIMESTAMP).and_then(|t| t.parse::<i64>().ok());
    let only = text(header::REPLAY_TOPIC);
    let topics: Vec<&String> = spec
        .topics
        .iter()
        .filter(|t| only.as_ref().is_none_or(|only| only == *t))
        .collect();
    #[derive(sqlx::FromRow)]
    struct Row {
        topic: String,
        partition: i32,
        #[sqlx(flatten)]
        checkpoint: CheckpointRow,
    }
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT topic, partition, {CHECKPOINT_COLUMNS}
         FROM {schema}.checkpoints WHERE topic = ANY($1) FOR UPDATE"
    ))
    .bind(topics.iter().map(|t| t.as_str()).collect::<Vec<_>>())
    .fetch_all(&mut *tx)
    .await?;
    // What this batch holds is newer than the rows.
    let current: Vec<(TopicPartition, Checkpoint)> = rows
        .into_iter()
        .map(|row| {
            let key = TopicPartition::new(row.topic, row.partition);
            let checkpoint = checkpoints
                .get(&key)
                .copied()
                .unwrap_or_else(|| row.checkpoint.into());
            (key, checkpoint)
        })
        .collect();
    let mut starts: HashMap<TopicPartition, i64> = HashMap::new();
    match (from_offset, from_time) {
        (Some(offset), _) => {
            starts.extend(current.iter().map(|(key, _)| (key.clone(), offset.max(0))));
        }
        (None, Some(time)) => {
            let mut query = TopicPartitionList::new();
            for (TopicPartition { topic, partition }, _) in &current {
                query.add_partition_offset(topic, *partition, Offset::Offset(time))?;
            }
            let consumer = context.consumer;
            let found = crate::kafka::blocking(|| {
                consumer.offsets_for_times(query, Duration::from_secs(10))
            })?;
            for element in found.elements() {
                // No record at or after the time: nothing of the partition to replay.
                if let Offset::Offset(offset) = element.offset() {
                    starts.insert(
                        TopicPartition::new(element.topic(), element.partition()),
                        offset,
                    );
                }
            }
        }
        (None, None) => {
            tracing::error!(consumer = %spec.name, "replay without a start ignored");
            return Ok(());
        }
    }
    for (key, mut checkpoint) in current {
        let Some(&start) = starts.get(&key) else {
            continue;
        };
        if start >= checkpoint.next_offset {
            continue;
        }
        // A replay during a replay keeps the first one's end and fence epoch.
        let (until, fence_epoch) = match checkpoint.replay {
            Some(earlier) => (earlier.until, earlier.fence_epoch),
            None => (checkpoint.next_offset, checkpoint.fence_epoch),
        };
        checkpoint.replay = Some(Replay {
            until,
            from_ms: from_time.unwrap_or(0),
            fence_epoch,
        });
        checkpoint.next_offset = start;
        checkpoint.rewound = true;
        // The fence in force at `start`: a zombie's record after it stays void when read
        // again; the fences read again from there raise it as before.
        checkpoint.fence_epoch = fence_in_force(&mut *tx, schema, &key, start).await?;
        tracing::info!(consumer = %spec.name, topic = %key.topic, partition = key.partition, offset = start, "replay: checkpoint moved back");
        checkpoints.insert(key, checkpoint);
    }
    Ok(())
}

/// Seeks the partitions a replay moved back, where this instance has them.
pub(super) fn seek_rewound(
    spec: &ConsumerSpec,
    consumer: &StreamConsumer<RebalanceContext>,
    positions: &HashMap<TopicPartition, Checkpoint>,
) {
    for (TopicPartition { topic, partition }, checkpoint) in positions {
        if !checkpoint.rewound {
            continue;
        }
        let result = crate::kafka::blocking(|| {
            consumer.seek(
                topic,
                *partition,
                Offset::Offset(checkpoint.next_offset),
                Duration::from_secs(5),
            )
        });
        if let Err(error) = result {
            // Another instance may own the partition; it seeks on its next record.
            tracing::debug!(consumer = %spec.name, %topic, partition, %error, "seek after replay failed");
        }
    }
}
