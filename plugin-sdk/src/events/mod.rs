//! Events on the log (DESIGN.md §8): a plugin publishes the event types its manifest declares
//! on its own topic `plugin.{id}`, and subscribes to the `core.*` and other plugins' types
//! its manifest declares, through the platform's own consumer runner (checkpoints in the
//! handler's transaction, the writer-fence reader rule on `core.*`, keys parked behind a
//! dead letter, the platform's DLQ).
//!
//! On tansu, which has no ACLs, the SDK is what keeps a plugin to its manifest: it refuses to
//! publish a type the manifest does not declare, or on any topic but the plugin's own.

mod publish;
mod subscribe;

use std::collections::BTreeSet;

use event_schemas::record::AvroRecord;
use event_schemas::{Envelope, Topics};
use secrecy::SecretString;
use uuid::Uuid;

use crate::config::ConfigError;
use crate::context::RequestContext;

pub use infra::consumer::HandlerError;
pub use publish::{PublishError, Publisher};
pub use subscribe::{
    Body, EventHandler, NotThisRecord, ReceivedEvent, SubscribeError, Subscription,
};

/// An event type of this plugin: its record, and its name, which the SDK puts after
/// `plugin.{pluginId}.` to make its CloudEvents type (`plugin.crm.deal-won`).
pub trait PluginEvent: AvroRecord + Sync {
    const NAME: &'static str;
}

/// What the platform tells a plugin about its place on the log (the process driver sets these
/// variables from the manifest and the platform's configuration).
#[derive(Debug, Clone)]
pub struct EventsConfig {
    pub plugin_id: String,
    /// The broker, as the platform's own components read it (`KAFKA_BROKERS`,
    /// `KAFKA_FETCH_WAIT_MAX_MS`, `PLEXICA_TOPIC_PREFIX`, …).
    pub kafka: infra::config::KafkaConfig,
    pub schema_registry_url: String,
    /// The plugin's own identity: it registers the schemas of the plugin's topic.
    pub token: SecretString,
    /// The plugin's own Postgres schema, where its consumer keeps its checkpoints.
    pub schema: String,
    /// The event types the manifest says the plugin publishes.
    pub publishes: BTreeSet<String>,
    /// The event types the manifest says the plugin subscribes to.
    pub subscribes: BTreeSet<String>,
}

#[derive(clap::Parser)]
struct KafkaEnvironment {
    #[command(flatten)]
    kafka: infra::config::KafkaConfig,
}

impl EventsConfig {
    /// Reads the process's environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        let kafka = <KafkaEnvironment as clap::Parser>::try_parse_from(["plugin"])
            .map_err(|e| ConfigError::Invalid {
                name: "KAFKA_*",
                value: e.to_string(),
            })?
            .kafka;
        Self::from_lookup(kafka, |name| std::env::var(name).ok())
    }

    /// Reads the variables from `lookup`, with the broker settings `kafka`.
    pub fn from_lookup(
        kafka: infra::config::KafkaConfig,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let get = |name: &'static str| lookup(name).ok_or(ConfigError::Missing(name));
        let types = |name: &'static str| -> BTreeSet<String> {
            lookup(name)
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect()
        };
        Ok(Self {
            plugin_id: get("PLEXICA_PLUGIN_ID")?,
            kafka,
            schema_registry_url: get("SCHEMA_REGISTRY_URL")?,
            token: SecretString::from(get("PLEXICA_PLUGIN_TOKEN")?),
            schema: get("PLEXICA_PLUGIN_SCHEMA")?,
            publishes: types("PLEXICA_PLUGIN_PUBLISHES"),
            subscribes: types("PLEXICA_PLUGIN_SUBSCRIBES"),
        })
    }

    pub(crate) fn topics(&self) -> Topics {
        Topics::new(self.kafka.topic_prefix.clone(), self.kafka.partitions)
    }

    /// The CloudEvents type of this plugin's event `name`.
    pub fn event_type(&self, name: &str) -> String {
        format!("plugin.{}.{name}", self.plugin_id)
    }
}

/// What an event is published for: the request or the event that caused it. Its tenant,
/// user, trace and correlation travel in the event's headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventContext {
    pub tenant: Uuid,
    pub user: Option<String>,
    pub traceparent: Option<String>,
    /// Ties together everything one request started.
    pub correlation_id: Option<String>,
    /// The event that caused this one, if an event did.
    pub causation_id: Option<Uuid>,
}

impl From<&RequestContext> for EventContext {
    fn from(request: &RequestContext) -> Self {
        Self {
            tenant: request.tenant,
            user: request.user.clone(),
            traceparent: request.traceparent.clone(),
            correlation_id: request.trace_id.clone(),
            causation_id: None,
        }
    }
}

impl EventContext {
    /// The context of an event caused by the one `envelope` carries; none without a tenant.
    pub fn caused_by(envelope: &Envelope) -> Option<Self> {
        let tenant = Uuid::parse_str(envelope.tenant_id.as_deref()?).ok()?;
        Some(Self {
            tenant,
            user: envelope.user_id.clone(),
            traceparent: envelope.traceparent.clone(),
            correlation_id: envelope
                .correlation_id
                .clone()
                .or_else(|| Some(envelope.id.to_string())),
            causation_id: Some(envelope.id),
        })
    }
}
