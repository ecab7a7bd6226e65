//! Publishing this plugin's events on its topic `plugin.{id}`.

use std::sync::Arc;
use std::time::Duration;

use event_schemas::{Codec, CodecError, Envelope};
use rdkafka::producer::{FutureProducer, FutureRecord};
use secrecy::ExposeSecret;
use uuid::Uuid;

use super::{EventContext, EventsConfig, PluginEvent};

/// How long a publish waits for the broker's acknowledgement.
const ACK_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(
        "the manifest does not declare `{0}` in events.publishes: a plugin publishes only what it declares"
    )]
    Undeclared(String),
    #[error("the event's record could not be encoded or its schema registered: {0}")]
    Encoding(#[from] CodecError),
    #[error("the broker did not take the event: {0}")]
    Broker(#[from] rdkafka::error::KafkaError),
}

impl PublishError {
    /// Whether publishing the same event again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            PublishError::Undeclared(_) => false,
            PublishError::Encoding(error) => error.is_retryable(),
            PublishError::Broker(_) => true,
        }
    }
}

/// Publishes this plugin's declared events, Avro-encoded with their schema registered on first
/// use, with the CloudEvents headers of the platform's envelope.
#[derive(Clone)]
pub struct Publisher {
    producer: FutureProducer,
    codec: Arc<Codec>,
    config: Arc<EventsConfig>,
    topic: String,
}

impl Publisher {
    pub fn new(config: &EventsConfig) -> Result<Self, PublishError> {
        Ok(Self {
            producer: infra::kafka::producer(&config.kafka)?,
            codec: Arc::new(Codec::new(
                &config.schema_registry_url,
                Some(config.token.expose_secret()),
            )?),
            topic: config.topics().plugin(&config.plugin_id),
            config: Arc::new(config.clone()),
        })
    }

    /// Publishes `event` under `key` (what orders it: events of one key are read in the order
    /// they were published), once the broker has it. Returns the event's id.
    pub async fn publish<E: PluginEvent>(
        &self,
        context: &EventContext,
        key: &str,
        event: &E,
    ) -> Result<Uuid, PublishError> {
        let event_type = self.config.event_type(E::NAME);
        if !self.config.publishes.contains(&event_type) {
            return Err(PublishError::Undeclared(event_type));
        }
        let payload = self.codec.encode(&self.topic, event).await?;
        let mut envelope = Envelope::new(
            event_type,
            format!("plexica/plugin/{}", self.config.plugin_id),
        );
        envelope.subject = Some(key.to_owned());
        envelope.tenant_id = Some(context.tenant.to_string());
        envelope.user_id = context.user.clone();
        envelope.traceparent = context.traceparent.clone();
        envelope.correlation_id = context.correlation_id.clone();
        envelope.causation_id = context.causation_id;
        let record = FutureRecord::to(&self.topic)
            .key(key)
            .payload(&payload)
            .headers(envelope.to_headers());
        self.producer
            .send(record, ACK_TIMEOUT)
            .await
            .map_err(|(error, _)| PublishError::Broker(error))?;
        Ok(envelope.id)
    }
}
