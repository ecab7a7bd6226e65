//! The `webhooks` consumer: reads the core topics under the reader rule, and every plugin's
//! topic under the rule that a plugin's topic holds its own events only, and enqueues, in its
//! checkpoint's transaction, a delivery of each event to every endpoint it is for. An
//! endpoint of a tenant gets that tenant's events, and the catalogue's events that name no
//! tenant; a platform endpoint gets every event of its types.

use std::sync::Arc;

use event_schemas::envelope::forged_on_plugin_topic;
use event_schemas::events::{CoreEvent, RecordVisitor};
use event_schemas::record::AvroRecord;
use event_schemas::{Codec, Envelope, Topics};
use futures::future::BoxFuture;
use infra::consumer::{ConsumerSpec, Fencing, HandlerError, Record, RecordHandler};
use infra::dead_letter;
use rdkafka::Message;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::store;

/// The consumer's name in logs, metrics, dead letters and the DLQ admin API.
pub const CONSUMER: &str = event_schemas::topics::WEBHOOKS_CONSUMER;

pub fn spec(topics: &Topics) -> ConsumerSpec {
    ConsumerSpec {
        name: CONSUMER.to_owned(),
        group: topics.group("plexica.webhooks"),
        schema: store::SCHEMA.to_owned(),
        // The plugins' topics by pattern: a plugin enabled later is read too (the client
        // looks for new topics every `topic.metadata.refresh.interval.ms`).
        topics: vec![
            topics.plugins(),
            topics.tenants(),
            topics.registry(),
            topics.plugin_pattern(),
        ],
        fenced: Fencing::Topics(topics.event_topics().to_vec()),
        dlq_topic: topics.dlq(),
        retry_topic: Some(topics.retry(CONSUMER)),
        park_keys: true,
        pace: infra::kafka::Pace::Background,
        serving: None,
        hands_on: false,
    }
}

pub struct Enqueuer {
    codec: Arc<Codec>,
    topics: Topics,
    /// The schema of the catalog, whose `webhooks` table lists the endpoints.
    catalog: String,
}

impl Enqueuer {
    pub fn new(codec: Arc<Codec>, topics: Topics, catalog: impl Into<String>) -> Self {
        Self {
            codec,
            topics,
            catalog: catalog.into(),
        }
    }
}

struct ToJson;

impl<'a> RecordVisitor<'a> for ToJson {
    type Output = serde_json::Value;
    fn visit<T: AvroRecord + Sync>(self, record: &'a T) -> serde_json::Value {
        serde_json::to_value(record).unwrap_or(serde_json::Value::Null)
    }
}

/// An event as read: a core one, or a plugin's record.
pub enum Event {
    Core(CoreEvent),
    Plugin {
        /// The plugin whose topic it is on (and who wrote it).
        owner: String,
        value: apache_avro::types::Value,
    },
}

impl Event {
    fn data(self) -> serde_json::Value {
        match self {
            Event::Core(event) => event.visit(ToJson),
            Event::Plugin { value, .. } => {
                serde_json::Value::try_from(value).unwrap_or(serde_json::Value::Null)
            }
        }
    }
}

/// The body every endpoint receives: `type`, `timestamp` and `data` as the Standard Webhooks
/// specification suggests, with the event's id and tenant.
fn body(envelope: &Envelope, data: serde_json::Value) -> String {
    serde_json::json!({
        "type": envelope.event_type,
        "timestamp": envelope.time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "id": envelope.id,
        "tenantId": envelope.tenant_id,
        "data": data,
    })
    .to_string()
}

/// Whether plugin `owner`'s manifest declares that it publishes `event_type`. On tansu, which
/// has no ACLs, this is where the platform notices a plugin that publishes past its manifest
/// (with a bare Kafka client, not the SDK): such a record is dead-lettered, never delivered.
async fn declared(
    tx: &mut PgConnection,
    catalog: &str,
    owner: &str,
    event_type: &str,
) -> Result<(), HandlerError> {
    let declared: Option<bool> = sqlx::query_scalar(&format!(
        "SELECT coalesce(manifest->'events'->'publishes' ? $2, false)
         FROM {catalog}.plugins WHERE id = $1"
    ))
    .bind(owner)
    .bind(event_type)
    .fetch_optional(&mut *tx)
    .await
    .map_err(catalog_error)?;
    match declared {
        Some(true) => Ok(()),
        Some(false) => Err(HandlerError::Permanent(
            format!(
                "plugin {owner} published `{event_type}`, which its manifest does not declare \
                 (events.publishes)"
            )
            .into(),
        )),
        // The catalog has not caught up with the plugin's registration yet.
        None => Err(HandlerError::Unavailable(
            format!("plugin {owner} is not in the catalog yet").into(),
        )),
    }
}

/// An error reading the catalog's tables. The projections part makes them, and may start
/// after this one (compose starts `command-api` first, and a new database has none): until
/// they exist the record waits, as when the catalog lags, instead of being dead-lettered.
fn catalog_error(error: sqlx::Error) -> HandlerError {
    // A missing schema in `catalog.webhooks` is reported as a missing table too.
    if infra::postgres::is_undefined_table(&error) {
        HandlerError::Unavailable(format!("the catalog is not there yet: {error}").into())
    } else {
        HandlerError::from(error)
    }
}

/// The record's headers as `[name, value]` pairs, for its dead letter.
fn headers_json(message: &impl Message) -> serde_json::Value {
    use rdkafka::message::Headers;
    let Some(headers) = message.headers() else {
        return serde_json::json!([]);
    };
    headers
        .iter()
        .map(|h| {
            serde_json::json!([
                h.key,
                h.value.map(|v| String::from_utf8_lossy(v).into_owned())
            ])
        })
        .collect()
}

impl RecordHandler for Enqueuer {
    const TRANSACTIONAL: bool = true;
    type Decoded = Event;

    fn ddl(&self, schema: &str) -> String {
        store::ddl(schema)
    }

    fn decode<'a>(
        &'a mut self,
        record: &'a Record<'a>,
    ) -> BoxFuture<'a, Result<Event, HandlerError>> {
        Box::pin(async move {
            let payload = record.message.payload();
            let Some(owner) = self.topics.plugin_owner(record.message.topic()) else {
                return Ok(Event::Core(self.codec.decode_event(payload).await?));
            };
            let envelope = record.envelope.as_ref().ok_or_else(|| {
                HandlerError::Permanent("the record has no CloudEvents headers".into())
            })?;
            if let Some(forged) = forged_on_plugin_topic(owner, envelope) {
                return Err(HandlerError::Permanent(forged.into()));
            }
            let (_, value) = self.codec.decode_value(payload).await?;
            Ok(Event::Plugin {
                owner: owner.to_owned(),
                value,
            })
        })
    }

    fn apply<'a>(
        &'a mut self,
        tx: &'a mut PgConnection,
        record: &'a Record<'a>,
        event: Event,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            let Some(envelope) = &record.envelope else {
                return Err(HandlerError::Permanent(
                    "the record has no CloudEvents headers".into(),
                ));
            };
            let tenant = envelope
                .tenant_id
                .as_deref()
                .and_then(|t| Uuid::parse_str(t).ok());
            let key = record
                .message
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .unwrap_or_else(|| envelope.id.to_string());
            let message = record.message;
            // A record sent back from the DLQ (an admin's retry) carries its dead letter's id.
            // When the deliverer dead-lettered it, the retry makes the event's failed
            // deliveries pending again, and nothing else; when this consumer did (a registry
            // outage while decoding), no delivery of it exists yet and it is enqueued as any
            // record.
            if let Some(headers) = message.headers()
                && event_schemas::envelope::header_str(headers, dead_letter::header::ID).is_some()
                && store::retry_failed(tx, store::SCHEMA, envelope.id).await? > 0
            {
                return Ok(());
            }
            if let Event::Plugin { owner, .. } = &event {
                declared(tx, &self.catalog, owner, &envelope.event_type).await?;
            }
            let headers = headers_json(message);
            let event_type = envelope.event_type.as_str();
            let body = body(envelope, event.data());
            store::enqueue(
                tx,
                store::SCHEMA,
                &self.catalog,
                store::Enqueued {
                    event_id: envelope.id,
                    event_type,
                    tenant,
                    public: domain::webhook::is_public_platform_event(event_type),
                    ordering_key: &key,
                    body: &body,
                    // Where the event was written: a delivery that fails for good names it.
                    source: store::Source {
                        topic: &record.origin.topic,
                        partition: record.origin.partition,
                        offset: record.origin.offset,
                        timestamp_ms: record.origin.timestamp_ms,
                        key: message.key(),
                        value: message.payload(),
                        headers: &headers,
                    },
                },
            )
            .await
            .map_err(catalog_error)?;
            Ok(())
        })
    }
}
