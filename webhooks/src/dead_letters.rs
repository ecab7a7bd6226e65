//! A delivery that failed for good becomes a dead letter of consumer `webhooks` in the
//! platform's DLQ: the event's record as it was read, with the delivery's failure. An admin's
//! retry sends the record back to the `webhooks` consumer, which makes the event's failed
//! deliveries pending again ([`crate::store::retry_failed`]).

use infra::dead_letter::{self, DeadLetter, ErrorClass, Failure, Origin, Parking, Stage};
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage, Timestamp};
use rdkafka::producer::FutureProducer;

use crate::enqueue::CONSUMER;
use crate::store::UnsentDeadLetter;

pub async fn publish(
    producer: &FutureProducer,
    dlq_topic: &str,
    failed: &UnsentDeadLetter,
) -> Result<(), rdkafka::error::KafkaError> {
    let mut headers = OwnedHeaders::new();
    for pair in failed.record_headers.as_array().into_iter().flatten() {
        if let Some(name) = pair.get(0).and_then(serde_json::Value::as_str) {
            headers = headers.insert(Header {
                key: name,
                value: pair.get(1).and_then(serde_json::Value::as_str),
            });
        }
    }
    let message = OwnedMessage::new(
        failed.record_value.clone(),
        failed.record_key.clone(),
        failed.source_topic.clone(),
        Timestamp::CreateTime(failed.source_timestamp_ms),
        failed.source_partition,
        failed.source_offset,
        Some(headers),
    );
    let origin = Origin {
        topic: failed.source_topic.clone(),
        partition: failed.source_partition,
        offset: failed.source_offset,
        timestamp_ms: failed.source_timestamp_ms,
    };
    let failure = Failure {
        class: match failed.failure_class.as_deref() {
            Some("permanent") => ErrorClass::Permanent,
            _ => ErrorClass::Retryable,
        },
        message: format!(
            "webhook {}: {}",
            failed.webhook_id,
            failed
                .last_error
                .as_deref()
                .unwrap_or("the delivery failed")
        ),
        causes: Vec::new(),
        attempts: u32::try_from(failed.attempts).unwrap_or(0),
        first_failure_at: failed.created_at,
        stage: Stage::Handler,
    };
    dead_letter::publish(
        producer,
        dlq_topic,
        DeadLetter {
            id: failed.dead_letter_id,
            consumer: CONSUMER,
            origin: &origin,
            message: &message,
            failure: &failure,
            parking: Parking::default(),
        },
    )
    .await
}
