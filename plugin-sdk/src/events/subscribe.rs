//! Subscribing to the event types the manifest declares, through the platform's consumer
//! runner: at least once, a consumer group per plugin, the checkpoint in the handler's
//! transaction, the reader rule on `core.*`, and a record the handler cannot process parked
//! and dead-lettered to the platform's DLQ (its key's later records wait behind it).

use std::collections::BTreeSet;
use std::sync::Arc;

use event_schemas::events::EventStream;
use event_schemas::record::AvroRecord;
use event_schemas::{Codec, CodecError, CoreEvent, Envelope};
use futures::future::BoxFuture;
use infra::consumer::{ConsumerSpec, Fencing, HandlerError, Record, RecordHandler, RunnerError};
use infra::http::Readiness;
use rdkafka::message::Message;
use secrecy::ExposeSecret;
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{EventContext, EventsConfig};

#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    #[error("`{0}` is neither a core event type nor a plugin's (`plugin.<pluginId>.<name>`)")]
    UnknownType(String),
    #[error("the manifest subscribes to no event type")]
    NothingToRead,
    #[error("the schema registry: {0}")]
    Registry(#[from] CodecError),
    #[error("the broker: {0}")]
    Broker(#[from] rdkafka::error::KafkaError),
    #[error("the consumer stopped: {0}")]
    Runner(#[from] RunnerError),
}

/// What an event carries: a core event, decoded, or another plugin's record, which the
/// handler reads as its own type with [`ReceivedEvent::record`].
#[derive(Debug, Clone)]
pub enum Body {
    Core(CoreEvent),
    Plugin {
        /// The full name of the record's Avro schema.
        schema: String,
        value: apache_avro::types::Value,
    },
}

/// An event as a subscription hands it over: its headers and its body.
#[derive(Debug, Clone)]
pub struct ReceivedEvent {
    pub envelope: Envelope,
    pub body: Body,
}

#[derive(Debug, thiserror::Error)]
#[error("the event is not a `{wanted}` record: {reason}")]
pub struct NotThisRecord {
    wanted: &'static str,
    reason: String,
}

/// A record of another type will not become this one: dead-letter it.
impl From<NotThisRecord> for HandlerError {
    fn from(error: NotThisRecord) -> Self {
        HandlerError::Permanent(Box::new(error))
    }
}

impl ReceivedEvent {
    pub fn event_type(&self) -> &str {
        &self.envelope.event_type
    }

    /// The tenant the event is about, if any.
    pub fn tenant(&self) -> Option<Uuid> {
        Uuid::parse_str(self.envelope.tenant_id.as_deref()?).ok()
    }

    /// The context of the events this one causes; none without a tenant.
    pub fn context(&self) -> Option<EventContext> {
        EventContext::caused_by(&self.envelope)
    }

    /// A plugin event's record as `T`: a record of another schema is an error that will not
    /// pass, so return it as [`HandlerError::Permanent`] (`?` does).
    pub fn record<T: AvroRecord>(&self) -> Result<T, NotThisRecord> {
        let not = |reason: String| NotThisRecord {
            wanted: T::FULL_NAME,
            reason,
        };
        match &self.body {
            Body::Plugin { schema, value } if schema == T::FULL_NAME => {
                apache_avro::from_value(value).map_err(|e| not(e.to_string()))
            }
            Body::Plugin { schema, .. } => Err(not(format!("its schema is `{schema}`"))),
            Body::Core(event) => Err(not(format!("it is the core event {}", event.event_type()))),
        }
    }

    /// Points `tx` at the schema of the event's tenant, for the rest of the transaction: the
    /// handler's unqualified tables are the tenant's, and its writes commit with the
    /// checkpoint.
    pub async fn enter_tenant(&self, tx: &mut PgConnection) -> Result<(), HandlerError> {
        let tenant = self.tenant().ok_or_else(|| {
            HandlerError::Permanent("the event names no tenant (its tenant-id header)".into())
        })?;
        let schema = domain::TenantSchema::of(tenant);
        // A tenant just created (its `core.tenant.created` is read here as soon as the
        // platform reads it) may not have its schema, or this plugin's tables in it, yet: the
        // platform records the plugin's migrations there once they ran. Until then the event
        // waits (the batch is applied again after a backoff); nothing is dead-lettered.
        // The catalog, not `to_regclass`: the latter needs a right on the schema that the
        // platform grants only when it runs the migrations.
        let ready: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = $1 AND c.relname = current_user || '_migrations')",
        )
        .bind(schema.to_string())
        .fetch_one(&mut *tx)
        .await?;
        if !ready {
            return Err(HandlerError::Unavailable(
                format!("tenant {tenant}'s schema is not ready for this plugin yet").into(),
            ));
        }
        sqlx::query(&format!("SET LOCAL search_path TO {schema}"))
            .execute(tx)
            .await?;
        Ok(())
    }
}

/// What a plugin does with the events it subscribed to, in the consumer's transaction.
pub trait EventHandler: Send + 'static {
    /// Handles one event. An error rolls back what it wrote; a [`HandlerError::Retryable`]
    /// is tried again in line, then the event is dead-lettered like a permanent one.
    fn handle<'a>(
        &'a mut self,
        tx: &'a mut PgConnection,
        event: &'a ReceivedEvent,
    ) -> BoxFuture<'a, Result<(), HandlerError>>;
}

/// The plugin's consumer of the types its manifest subscribes to.
pub struct Subscription {
    spec: ConsumerSpec,
    codec: Arc<Codec>,
    subscribes: BTreeSet<String>,
    config: EventsConfig,
}

impl Subscription {
    pub fn new(config: &EventsConfig) -> Result<Self, SubscribeError> {
        if config.subscribes.is_empty() {
            return Err(SubscribeError::NothingToRead);
        }
        let topics = config.topics();
        let mut read = BTreeSet::new();
        let mut fenced = BTreeSet::new();
        for event_type in &config.subscribes {
            let core = EventStream::ALL
                .into_iter()
                .find(|stream| stream.declared().any(|d| d.event_type == event_type));
            match core {
                Some(stream) => {
                    fenced.insert(stream.topic(&topics));
                    read.insert(stream.topic(&topics));
                }
                None => {
                    let plugin = event_type
                        .strip_prefix("plugin.")
                        .and_then(|rest| rest.split_once('.'))
                        .map(|(plugin, _)| plugin)
                        .filter(|plugin| !plugin.is_empty())
                        .ok_or_else(|| SubscribeError::UnknownType(event_type.clone()))?;
                    read.insert(topics.plugin(plugin));
                }
            }
        }
        let name = event_schemas::topics::plugin_consumer(&config.plugin_id);
        let retry_topic = topics.retry(&name);
        Ok(Self {
            spec: ConsumerSpec {
                group: topics.group(&name),
                name,
                schema: config.schema.clone(),
                topics: read.into_iter().collect(),
                fenced: Fencing::Topics(fenced.into_iter().collect()),
                dlq_topic: topics.dlq(),
                // The DLQ worker sends a retried dead letter, a key's release and a replay here.
                retry_topic: Some(retry_topic),
                park_keys: true,
                pace: infra::kafka::Pace::Interactive,
                serving: None,
                hands_on: false,
            },
            codec: Arc::new(Codec::new(
                &config.schema_registry_url,
                Some(config.token.expose_secret()),
            )?),
            subscribes: config.subscribes.clone(),
            config: config.clone(),
        })
    }

    /// The topics it reads.
    pub fn topics(&self) -> &[String] {
        &self.spec.topics
    }

    /// Hands every subscribed event to `handler` until `shutdown`; `pool` is the plugin's own
    /// database role, whose schema keeps the consumer's checkpoints.
    pub async fn run<H: EventHandler>(
        self,
        handler: H,
        pool: PgPool,
        readiness: Readiness,
        shutdown: CancellationToken,
    ) -> Result<(), SubscribeError> {
        let adapter = Adapter {
            handler,
            codec: self.codec,
            subscribes: self.subscribes,
            topics: self.config.topics(),
        };
        infra::consumer::run(
            self.spec,
            adapter,
            &self.config.kafka,
            pool,
            readiness,
            shutdown,
        )
        .await?;
        Ok(())
    }
}

/// The plugin's handler as the runner sees it.
struct Adapter<H> {
    handler: H,
    codec: Arc<Codec>,
    subscribes: BTreeSet<String>,
    topics: event_schemas::Topics,
}

impl<H: EventHandler> RecordHandler for Adapter<H> {
    type Decoded = Option<ReceivedEvent>;

    fn ddl(&self, _schema: &str) -> String {
        String::new()
    }

    fn decode<'a>(
        &'a mut self,
        record: &'a Record<'a>,
    ) -> BoxFuture<'a, Result<Self::Decoded, HandlerError>> {
        Box::pin(async move {
            let envelope = record.envelope.clone().ok_or_else(|| {
                HandlerError::Permanent(
                    "the record has no CloudEvents headers: it is not an event".into(),
                )
            })?;
            // A topic carries more types than one subscribes to.
            if !self.subscribes.contains(&envelope.event_type) {
                return Ok(None);
            }
            if let Some(forged) = self
                .topics
                .plugin_owner(record.message.topic())
                .and_then(|owner| event_schemas::envelope::forged_on_plugin_topic(owner, &envelope))
            {
                return Err(HandlerError::Permanent(forged.into()));
            }
            let bytes = record.message.payload();
            let body = if envelope.event_type.starts_with("core.") {
                Body::Core(self.codec.decode_event(bytes).await?)
            } else {
                let (schema, value) = self.codec.decode_value(bytes).await?;
                Body::Plugin { schema, value }
            };
            Ok(Some(ReceivedEvent { envelope, body }))
        })
    }

    fn apply<'a>(
        &'a mut self,
        tx: &'a mut PgConnection,
        _record: &'a Record<'a>,
        decoded: Self::Decoded,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            match decoded {
                Some(event) => self.handler.handle(tx, &event).await,
                None => Ok(()),
            }
        })
    }
}
