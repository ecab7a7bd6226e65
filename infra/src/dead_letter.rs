//! Publishing a record a consumer could not process to `plexica.dlq`, with the context an
//! admin needs to understand, retry or discard it. The record keeps its key, value and
//! original headers; the `dlq-*` headers say where it came from and what went wrong.

use std::time::Duration;

use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

pub mod header {
    pub const RECORD: &str = "dlq-record";
    pub const ORIGINAL_TOPIC: &str = "dlq-original-topic";
    pub const ORIGINAL_PARTITION: &str = "dlq-original-partition";
    pub const ORIGINAL_OFFSET: &str = "dlq-original-offset";
    pub const ORIGINAL_TIMESTAMP: &str = "dlq-original-timestamp";
    pub const CONSUMER: &str = "dlq-consumer";
    pub const ERROR_CLASS: &str = "dlq-error-class";
    pub const ERROR_MESSAGE: &str = "dlq-error-message";
    pub const ERROR_CAUSES: &str = "dlq-error-causes";
    pub const ATTEMPTS: &str = "dlq-attempts";
    pub const FIRST_FAILURE_AT: &str = "dlq-first-failure-at";
}

/// Whether trying again may help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    Retryable,
    Permanent,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Retryable => "retryable",
            ErrorClass::Permanent => "permanent",
        }
    }
}

/// Why a record could not be processed.
#[derive(Debug, Clone)]
pub struct Failure {
    pub class: ErrorClass,
    pub message: String,
    /// The error's sources, outermost first.
    pub causes: Vec<String>,
    pub attempts: u32,
    pub first_failure_at: chrono::DateTime<chrono::Utc>,
}

impl Failure {
    pub fn permanent(error: &(dyn std::error::Error + 'static)) -> Self {
        Self::from_error(ErrorClass::Permanent, error, 1)
    }

    pub fn from_error(
        class: ErrorClass,
        error: &(dyn std::error::Error + 'static),
        attempts: u32,
    ) -> Self {
        let mut causes = Vec::new();
        let mut source = error.source();
        while let Some(cause) = source {
            causes.push(cause.to_string());
            source = cause.source();
        }
        Self {
            class,
            message: error.to_string(),
            causes,
            attempts,
            first_failure_at: chrono::Utc::now(),
        }
    }
}

/// Writes `message` to the DLQ and waits for the broker's acknowledgement: only then may the
/// consumer move past it.
pub async fn publish(
    producer: &FutureProducer,
    dlq_topic: &str,
    consumer: &str,
    message: &impl Message,
    failure: &Failure,
) -> Result<(), rdkafka::error::KafkaError> {
    let mut headers = OwnedHeaders::new();
    if let Some(original) = message.headers() {
        for h in original.iter() {
            headers = headers.insert(Header {
                key: h.key,
                value: h.value,
            });
        }
    }
    let causes = serde_json::to_string(&failure.causes).unwrap_or_default();
    let context = [
        (header::RECORD, "dead-lettered".to_owned()),
        (header::ORIGINAL_TOPIC, message.topic().to_owned()),
        (header::ORIGINAL_PARTITION, message.partition().to_string()),
        (header::ORIGINAL_OFFSET, message.offset().to_string()),
        (
            header::ORIGINAL_TIMESTAMP,
            message
                .timestamp()
                .to_millis()
                .unwrap_or_default()
                .to_string(),
        ),
        (header::CONSUMER, consumer.to_owned()),
        (header::ERROR_CLASS, failure.class.as_str().to_owned()),
        (header::ERROR_MESSAGE, failure.message.clone()),
        (header::ERROR_CAUSES, causes),
        (header::ATTEMPTS, failure.attempts.to_string()),
        (
            header::FIRST_FAILURE_AT,
            failure.first_failure_at.to_rfc3339(),
        ),
    ];
    for (key, value) in &context {
        headers = headers.insert(Header {
            key,
            value: Some(value.as_str()),
        });
    }
    let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(dlq_topic).headers(headers);
    if let Some(key) = message.key() {
        record = record.key(key);
    }
    if let Some(payload) = message.payload() {
        record = record.payload(payload);
    }
    producer
        .send(record, Duration::from_secs(30))
        .await
        .map(|_| ())
        .map_err(|(error, _)| error)
}
