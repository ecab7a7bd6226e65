//! The command side's single entry point: which aggregate a command addresses, and the pure
//! `decide` and `evolve` that the command processor runs for it.

use std::fmt;
use std::str::FromStr;

use event_schemas::events::CoreEvent;
use uuid::Uuid;

use crate::directory::Directory;
use crate::plugin::{Plugin, PluginCommand, PluginId};
use crate::plugin_health::{PluginHealth, PluginHealthCommand};
use crate::registry::{RegistryCommand, RegistryEntry};
use crate::rejection::{FieldError, Reason, Rejection};
use crate::reservation::{ReservationCommand, ReservationScope, Reservations};
use crate::tenant::{Tenant, TenantCommand, TenantId};
use crate::webhook::{Webhook, WebhookCommand, WebhookId};

/// Names one aggregate; the Kafka key of its commands and events (`plugin:crm`,
/// `plugin-health:crm`, `tenant:0190…`, `reservation:permission-keys`, `registry:crm`,
/// `webhook:0190…`), so
/// that all of them share a partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AggregateKey {
    Plugin(PluginId),
    /// What the runtime observes of a plugin's instance, apart from its lifecycle.
    PluginHealth(PluginId),
    Tenant(TenantId),
    Reservation(ReservationScope),
    /// A plugin's registry entry, apart from its lifecycle (`plugin:{id}`).
    Registry(PluginId),
    Webhook(WebhookId),
}

impl fmt::Display for AggregateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AggregateKey::Plugin(id) => write!(f, "plugin:{id}"),
            AggregateKey::PluginHealth(id) => write!(f, "plugin-health:{id}"),
            AggregateKey::Tenant(id) => write!(f, "tenant:{id}"),
            AggregateKey::Reservation(scope) => write!(f, "reservation:{scope}"),
            AggregateKey::Registry(id) => write!(f, "registry:{id}"),
            AggregateKey::Webhook(id) => write!(f, "webhook:{id}"),
        }
    }
}

impl FromStr for AggregateKey {
    type Err = FieldError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            Some(("plugin", id)) => Ok(AggregateKey::Plugin(PluginId::parse(id)?)),
            Some(("plugin-health", id)) => Ok(AggregateKey::PluginHealth(PluginId::parse(id)?)),
            Some(("tenant", id)) => Uuid::parse_str(id)
                .map(|id| AggregateKey::Tenant(TenantId(id)))
                .map_err(|e| FieldError::new("", format!("`{id}` is not a tenant id: {e}"))),
            Some(("reservation", scope)) => {
                ReservationScope::parse(scope).map(AggregateKey::Reservation)
            }
            Some(("registry", id)) => Ok(AggregateKey::Registry(PluginId::parse(id)?)),
            Some(("webhook", id)) => Uuid::parse_str(id)
                .map(|id| AggregateKey::Webhook(WebhookId(id)))
                .map_err(|e| FieldError::new("", format!("`{id}` is not a webhook id: {e}"))),
            _ => Err(FieldError::new(
                "",
                format!("`{s}` is not an aggregate key"),
            )),
        }
    }
}

impl AggregateKey {
    /// The aggregate an event belongs to, read from the event's body.
    pub fn of_event(event: &CoreEvent) -> Result<Self, FieldError> {
        match event {
            CoreEvent::Plugin(e) => Ok(AggregateKey::Plugin(PluginId::parse(e.plugin_id())?)),
            CoreEvent::PluginHealth(e) => {
                Ok(AggregateKey::PluginHealth(PluginId::parse(e.plugin_id())?))
            }
            CoreEvent::Tenant(e) => format!("tenant:{}", e.tenant_id()).parse(),
            CoreEvent::Registry(e) => e.aggregate_key().parse(),
            CoreEvent::Webhook(e) => format!("webhook:{}", e.webhook_id()).parse(),
        }
    }
}

/// A command addressed to one aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Plugin {
        id: PluginId,
        command: PluginCommand,
    },
    PluginHealth {
        id: PluginId,
        command: PluginHealthCommand,
    },
    Tenant {
        id: TenantId,
        command: TenantCommand,
    },
    Reservation {
        scope: ReservationScope,
        command: ReservationCommand,
    },
    Registry {
        id: PluginId,
        command: RegistryCommand,
    },
    Webhook {
        id: WebhookId,
        command: WebhookCommand,
    },
}

impl Command {
    pub fn aggregate_key(&self) -> AggregateKey {
        match self {
            Command::Plugin { id, .. } => AggregateKey::Plugin(id.clone()),
            Command::PluginHealth { id, .. } => AggregateKey::PluginHealth(id.clone()),
            Command::Tenant { id, .. } => AggregateKey::Tenant(*id),
            Command::Reservation { scope, .. } => AggregateKey::Reservation(*scope),
            Command::Registry { id, .. } => AggregateKey::Registry(id.clone()),
            Command::Webhook { id, .. } => AggregateKey::Webhook(*id),
        }
    }

    /// A stable name for logs, metrics and the command record.
    pub fn command_type(&self) -> &'static str {
        match self {
            Command::Plugin { command, .. } => command.kind().command_type(),
            Command::PluginHealth { command, .. } => command.command_type(),
            Command::Tenant { command, .. } => command.kind().command_type(),
            Command::Reservation { command, .. } => command.command_type(),
            Command::Registry { command, .. } => command.command_type(),
            Command::Webhook { command, .. } => command.command_type(),
        }
    }

    /// The command's parameters as they travel in the command record.
    pub fn payload(&self) -> String {
        let value = match self {
            Command::Plugin { command, .. } => serde_json::to_string(command),
            Command::PluginHealth { command, .. } => serde_json::to_string(command),
            Command::Tenant { command, .. } => serde_json::to_string(command),
            Command::Reservation { command, .. } => serde_json::to_string(command),
            Command::Registry { command, .. } => serde_json::to_string(command),
            Command::Webhook { command, .. } => serde_json::to_string(command),
        };
        // Serialising plain data with string keys into a String cannot fail.
        value.unwrap_or_default()
    }

    /// Reads a command back from its record: the log is an edge too, so it is parsed again.
    pub fn from_record(aggregate_key: &str, payload: &str) -> Result<Self, Rejection> {
        let key: AggregateKey = aggregate_key
            .parse()
            .map_err(|e| Rejection::invalid(Reason::MalformedCommandRecord, vec![e]))?;
        let malformed = |e: serde_json::Error| {
            Rejection::invalid(
                Reason::MalformedCommandRecord,
                vec![FieldError::new("", e.to_string())],
            )
        };
        Ok(match key {
            AggregateKey::Plugin(id) => Command::Plugin {
                id,
                command: serde_json::from_str(payload).map_err(malformed)?,
            },
            AggregateKey::PluginHealth(id) => Command::PluginHealth {
                id,
                command: serde_json::from_str(payload).map_err(malformed)?,
            },
            AggregateKey::Tenant(id) => Command::Tenant {
                id,
                command: serde_json::from_str(payload).map_err(malformed)?,
            },
            AggregateKey::Reservation(scope) => Command::Reservation {
                scope,
                command: serde_json::from_str(payload).map_err(malformed)?,
            },
            AggregateKey::Registry(id) => Command::Registry {
                id,
                command: serde_json::from_str(payload).map_err(malformed)?,
            },
            AggregateKey::Webhook(id) => Command::Webhook {
                id,
                command: serde_json::from_str(payload).map_err(malformed)?,
            },
        })
    }
}

/// The state of any aggregate, as the command processor holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AggregateState {
    Plugin(Plugin),
    PluginHealth(PluginHealth),
    Tenant(Tenant),
    Reservation(Reservations),
    Registry(RegistryEntry),
    Webhook(Webhook),
}

impl AggregateState {
    /// The state before the aggregate's first event.
    pub fn initial(key: &AggregateKey) -> Self {
        match key {
            AggregateKey::Plugin(_) => AggregateState::Plugin(Plugin::default()),
            AggregateKey::PluginHealth(_) => AggregateState::PluginHealth(PluginHealth::default()),
            AggregateKey::Tenant(_) => AggregateState::Tenant(Tenant::default()),
            AggregateKey::Reservation(_) => AggregateState::Reservation(Reservations::default()),
            AggregateKey::Registry(_) => AggregateState::Registry(RegistryEntry::default()),
            AggregateKey::Webhook(_) => AggregateState::Webhook(Webhook::default()),
        }
    }
}

/// Decides what a command does to an aggregate: the events to append, or why not. Rules
/// that look beyond the aggregate read `directory`, the global view of the others.
pub fn decide(
    state: &AggregateState,
    command: &Command,
    directory: &Directory,
) -> Result<Vec<CoreEvent>, Rejection> {
    match (state, command) {
        (AggregateState::Plugin(plugin), Command::Plugin { id, command }) => Ok(plugin
            .decide(id, command, directory)?
            .into_iter()
            .map(CoreEvent::from)
            .collect()),
        (AggregateState::PluginHealth(health), Command::PluginHealth { id, command }) => Ok(health
            .decide(id, command)
            .into_iter()
            .map(CoreEvent::from)
            .collect()),
        (AggregateState::Tenant(tenant), Command::Tenant { id, command }) => Ok(tenant
            .decide(*id, command, directory)?
            .into_iter()
            .map(CoreEvent::from)
            .collect()),
        (AggregateState::Reservation(reservations), Command::Reservation { scope, command }) => {
            Ok(reservations
                .decide(*scope, command)?
                .into_iter()
                .map(CoreEvent::from)
                .collect())
        }
        (AggregateState::Registry(entry), Command::Registry { id, command }) => Ok(entry
            .decide(id, command, directory)?
            .into_iter()
            .map(CoreEvent::from)
            .collect()),
        (AggregateState::Webhook(webhook), Command::Webhook { id, command }) => Ok(webhook
            .decide(*id, command)?
            .into_iter()
            .map(CoreEvent::from)
            .collect()),
        _ => Err(Rejection::new(
            Reason::WrongAggregate,
            format!(
                "a {} command cannot apply to this aggregate",
                command.command_type()
            ),
        )),
    }
}

/// Folds one event into an aggregate's state.
pub fn evolve(state: AggregateState, event: &CoreEvent) -> AggregateState {
    match (state, event) {
        (AggregateState::Plugin(plugin), CoreEvent::Plugin(e)) => {
            AggregateState::Plugin(plugin.evolve(e))
        }
        (AggregateState::PluginHealth(health), CoreEvent::PluginHealth(e)) => {
            AggregateState::PluginHealth(health.evolve(e))
        }
        (AggregateState::Tenant(tenant), CoreEvent::Tenant(e)) => {
            AggregateState::Tenant(tenant.evolve(e))
        }
        (AggregateState::Reservation(reservations), CoreEvent::Registry(e)) => {
            AggregateState::Reservation(reservations.evolve(e))
        }
        (AggregateState::Registry(entry), CoreEvent::Registry(e)) => {
            AggregateState::Registry(entry.evolve(e))
        }
        (AggregateState::Webhook(webhook), CoreEvent::Webhook(e)) => {
            AggregateState::Webhook(webhook.evolve(e))
        }
        // Keys route events to their aggregate, so a mismatch means a foreign record: ignore it.
        (state, _) => state,
    }
}
