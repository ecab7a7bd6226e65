//! `GET /api/v1/asyncapi.json`: the log as an AsyncAPI 3 document, generated from what is
//! declared once: the topic catalogue, every `core.*` event with its Avro schema (the events
//! table of `event-schemas`), the CloudEvents headers of the envelope, and the events the
//! installed plugins declare in their manifests (`events.publishes`) on `plugin.{id}`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use event_schemas::Topics;
use event_schemas::envelope::header;
use event_schemas::events::{DeclaredEvent, EventStream};
use infra::actor::Actor;
use infra::http::Problem;
use infra::openapi::Problems;
use infra::policy::Access;
use serde_json::{Map, Value, json};
use sqlx::PgPool;

use crate::schema::CATALOG;

/// What the document is generated from besides the catalog.
pub struct AsyncApiSource {
    pub topics: Topics,
    pub brokers: String,
}

/// The Confluent wire format: a magic byte and a schema id before the Avro body.
const CONTENT_TYPE: &str = "application/vnd.apache.avro+binary";
const AVRO_SCHEMA_FORMAT: &str = "application/vnd.apache.avro+json;version=1.9.0";

#[utoipa::path(
    get,
    path = "/api/v1/asyncapi.json",
    tag = "reads",
    responses((status = 200, description = "the topics, their events and headers as an AsyncAPI 3 document", body = serde_json::Value), Problems),
    security(("bearer" = []))
)]
pub async fn asyncapi(
    State(pool): State<PgPool>,
    State(source): State<Arc<AsyncApiSource>>,
    actor: Actor,
) -> Result<Json<Value>, Problem> {
    actor.authorize(Access::ReadRegistry)?;
    let installed: Vec<(String, Option<Value>)> = sqlx::query_as(&format!(
        "SELECT id, manifest -> 'events' -> 'publishes' FROM {CATALOG}.plugins
         WHERE status IN ('INSTALLED', 'ACTIVE', 'DISABLED') ORDER BY id"
    ))
    .fetch_all(&pool)
    .await
    .map_err(|error| {
        tracing::error!(%error, "read model query failed");
        Problem::internal("the read model could not be queried")
    })?;
    let plugins = installed.into_iter().map(|(id, publishes)| {
        let types = publishes
            .as_ref()
            .and_then(Value::as_array)
            .map(|types| {
                types
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        (id, types)
    });
    Ok(Json(document(&source, plugins)))
}

/// The document for the core streams and `plugins`, each `(id, declared event types)`.
pub fn document(
    source: &AsyncApiSource,
    plugins: impl IntoIterator<Item = (String, Vec<String>)>,
) -> Value {
    let topics = &source.topics;
    let mut channels = Map::new();
    let mut operations = Map::new();
    let mut messages = Map::new();
    let core = EventStream::ALL.map(|stream| {
        let description = match stream {
            EventStream::Plugins => {
                "Plugin lifecycle (the aggregate is `plugin:{id}`) and what the runtime observes of its instances (`plugin-health:{id}`)."
            }
            EventStream::Tenants => "Tenants and their plugins: the aggregate is `tenant:{uuid}`.",
            EventStream::Registry => {
                "Reservations of unique names and each plugin's registry entry."
            }
        };
        (stream.topic(topics), description, stream.declared())
    });
    for (topic, description, declared) in core {
        let mut refs = Map::new();
        for event in declared {
            refs.insert(event.event_type.to_owned(), message_ref(event.event_type));
            messages.insert(event.event_type.to_owned(), core_message(event));
        }
        channels.insert(
            topic.clone(),
            json!({
                "address": topic,
                "description": format!(
                    "{description} Written only by the command processor; a reader applies a record only under the writer-fence rule (see the README)."
                ),
                "messages": refs,
            }),
        );
        operations.insert(format!("receive {topic}"), receive(&topic));
    }
    for (plugin, types) in plugins {
        let topic = topics.plugin(&plugin);
        let mut refs = Map::new();
        for event_type in types {
            refs.insert(event_type.clone(), message_ref(&event_type));
            messages.insert(
                event_type.clone(),
                json!({
                    "name": event_type,
                    "title": event_type,
                    "contentType": CONTENT_TYPE,
                    "summary": format!(
                        "Declared by plugin `{plugin}`; its Avro schema is in the schema registry under `{topic}-<record full name>`."
                    ),
                    "headers": headers(),
                }),
            );
        }
        channels.insert(
            topic.clone(),
            json!({
                "address": topic,
                "description": format!("Events plugin `{plugin}` publishes, as its manifest declares."),
                "messages": refs,
            }),
        );
        operations.insert(format!("receive {topic}"), receive(&topic));
    }
    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "Plexica event log",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Every plugin-lifecycle, registry and tenant change as an event. Keys are aggregate keys; values are Avro in the Confluent wire format, with schemas in the registry under the TopicRecordName strategy.",
        },
        "defaultContentType": CONTENT_TYPE,
        "servers": {
            "log": {"host": source.brokers, "protocol": "kafka"},
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    })
}

fn message_ref(event_type: &str) -> Value {
    json!({"$ref": format!("#/components/messages/{}", pointer_token(event_type))})
}

fn receive(topic: &str) -> Value {
    json!({
        "action": "receive",
        "channel": {"$ref": format!("#/channels/{}", pointer_token(topic))},
    })
}

/// A name as one JSON Pointer reference token (RFC 6901): `~` first, then `/`. A plugin's
/// declared event types are any text its manifest holds.
fn pointer_token(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

fn core_message(event: &DeclaredEvent) -> Value {
    // The schemas are checked in and parsed by the codec's tests: a failure here is a build
    // that never passed them, and the text is still served.
    let schema = serde_json::from_str::<Value>(event.schema)
        .unwrap_or_else(|_| Value::String(event.schema.to_owned()));
    json!({
        "name": event.event_type,
        "title": event.event_type,
        "contentType": CONTENT_TYPE,
        "headers": headers(),
        "payload": {"schemaFormat": AVRO_SCHEMA_FORMAT, "schema": schema},
        "x-avro-full-name": event.full_name,
    })
}

/// The CloudEvents headers (Kafka binary mode) and Plexica's own, as the envelope writes them.
fn headers() -> Value {
    let text = |description: &str| json!({"type": "string", "description": description});
    json!({
        "type": "object",
        "required": [header::SPEC_VERSION, header::ID, header::TYPE, header::SOURCE, header::TIME],
        "properties": {
            header::SPEC_VERSION: text("CloudEvents version, `1.0`"),
            header::ID: text("the event's id (a UUID)"),
            header::TYPE: text("the event type, e.g. `core.plugin.installed`"),
            header::SOURCE: text("who wrote it"),
            header::TIME: text("when it happened (RFC 3339)"),
            header::SUBJECT: text("the aggregate key"),
            header::CONTENT_TYPE: text("`application/avro`"),
            header::TENANT_ID: text("the tenant the event concerns, when it concerns one"),
            header::USER_ID: text("who sent the command"),
            header::TRACEPARENT: text("W3C trace context"),
            header::CORRELATION_ID: text("the operation (saga) the event belongs to"),
            header::CAUSATION_ID: text("the command that caused it"),
            header::AGGREGATE_VERSION: text("the aggregate's version after the event"),
            header::WRITER_EPOCH: text("the writer's lease epoch: the reader rule"),
            header::COMMAND_PART: text("`i/n`: this is event i of the command's n; apply none before the last is read"),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use event_schemas::CoreEvent;

    #[test]
    fn every_declared_event_has_its_message_schema_and_channel() {
        let source = AsyncApiSource {
            topics: Topics::new("", 3),
            brokers: "127.0.0.1:9092".to_owned(),
        };
        let doc = document(
            &source,
            [("crm".to_owned(), vec!["plugin.crm.deal.won".to_owned()])],
        );
        assert_eq!(doc["asyncapi"], "3.0.0");
        for event_type in CoreEvent::types() {
            let message = &doc["components"]["messages"][event_type];
            assert_eq!(
                message["payload"]["schema"]["type"], "record",
                "{event_type}"
            );
        }
        let installed = &doc["channels"]["core.plugins"]["messages"]["core.plugin.installed"];
        assert_eq!(
            installed["$ref"],
            "#/components/messages/core.plugin.installed"
        );
        let crm = &doc["channels"]["plugin.crm"];
        assert_eq!(crm["address"], "plugin.crm");
        assert!(crm["messages"]["plugin.crm.deal.won"].is_object());
        assert_eq!(doc["operations"]["receive plugin.crm"]["action"], "receive");
    }

    #[test]
    fn a_declared_type_with_pointer_characters_is_referenced_escaped() {
        assert_eq!(pointer_token("a~b/c"), "a~0b~1c");
        assert_eq!(
            message_ref("plugin.x/y")["$ref"],
            "#/components/messages/plugin.x~1y"
        );
    }
}
