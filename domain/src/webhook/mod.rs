//! A webhook endpoint (Phase 2 plan, M2.4): where the platform POSTs the events an admin
//! chose. The aggregate is `webhook:{id}`; a tenant admin's endpoint receives its tenant's
//! events, a super admin's (a platform endpoint) everyone's.
//!
//! ```text
//! command          accepted when                               event
//! register         the id is new                               registered
//! update           it exists and the actor may manage it       updated (unless nothing changes)
//! rotate-secret    it exists and the actor may manage it       secret-rotated
//! disable          it exists and the actor may manage it       disabled (unless it is)
//! enable           it exists and the actor may manage it       enabled (unless it is)
//! delete           it exists and the actor may manage it       deleted
//! ```
//! A tenant admin is told that another tenant's endpoint does not exist. The signing secret
//! is never decided here: whoever holds the platform's webhook key derives it from the
//! endpoint's id and the aggregate version of the event that set it.

use event_schemas::events::{
    CoreEvent, WebhookDeleted, WebhookDisabled, WebhookEnabled, WebhookEvent, WebhookRegistered,
    WebhookSecretRotated, WebhookUpdated,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::plugin::PluginId;
use crate::rejection::{FieldError, Reason, Rejection};
use crate::tenant::TenantId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WebhookId(pub Uuid);

impl std::fmt::Display for WebhookId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Where events are POSTed: an absolute `http` or `https` URL with a host, no credentials
/// (they would be printed wherever the URL is) and no fragment, at most 2,048 characters.
/// Whether its address may be reached is the deliverer's to judge, when it resolves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct WebhookUrl(url::Url);

impl WebhookUrl {
    pub const MAX_LENGTH: usize = 2048;

    pub fn parse(text: &str) -> Result<Self, FieldError> {
        let invalid = |message: String| FieldError::new("/url", message);
        if text.len() > Self::MAX_LENGTH {
            return Err(invalid(format!(
                "the URL has {} bytes; at most {}",
                text.len(),
                Self::MAX_LENGTH
            )));
        }
        let url = url::Url::parse(text).map_err(|e| invalid(format!("not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid(format!(
                "the scheme `{}` is not http or https",
                url.scheme()
            )));
        }
        if url.host().is_none() {
            return Err(invalid("the URL names no host".to_owned()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid(
                "the URL holds credentials; authenticate with the signature instead".to_owned(),
            ));
        }
        if url.fragment().is_some() {
            return Err(invalid("the URL has a fragment".to_owned()));
        }
        Ok(Self(url))
    }

    pub fn as_url(&self) -> &url::Url {
        &self.0
    }
}

impl TryFrom<String> for WebhookUrl {
    type Error = FieldError;
    fn try_from(text: String) -> Result<Self, FieldError> {
        Self::parse(&text)
    }
}

impl From<WebhookUrl> for String {
    fn from(url: WebhookUrl) -> Self {
        url.0.into()
    }
}

impl std::fmt::Display for WebhookUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The event types an endpoint receives: 1 to 50 distinct types, each a `core.*` type or a
/// plugin's `plugin.{id}.{name}`, kept sorted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<String>", into = "Vec<String>")]
pub struct EventTypes(Vec<String>);

impl EventTypes {
    pub const MAX: usize = 50;

    pub fn parse(types: Vec<String>) -> Result<Self, FieldError> {
        if types.is_empty() || types.len() > Self::MAX {
            return Err(FieldError::new(
                "/events",
                format!(
                    "{} event types; 1 to {} are allowed",
                    types.len(),
                    Self::MAX
                ),
            ));
        }
        for (index, event_type) in types.iter().enumerate() {
            if !is_event_type(event_type) {
                return Err(FieldError::new(
                    format!("/events/{index}"),
                    format!(
                        "`{}` is neither a core event type (see /api/v1/asyncapi.json), nor \
                         one of `plugin.published`, `plugin.updated`, `plugin.installed` and \
                         `plugin.reviewed`, nor a plugin's `plugin.<id>.<name>`",
                        event_type.escape_debug()
                    ),
                ));
            }
        }
        let mut types: Vec<String> = types
            .into_iter()
            .map(|t| match short_name(&t) {
                Some(canonical) => canonical.to_owned(),
                None => t,
            })
            .collect();
        types.sort();
        types.dedup();
        Ok(Self(types))
    }

    pub fn contains(&self, event_type: &str) -> bool {
        self.0
            .binary_search_by(|t| t.as_str().cmp(event_type))
            .is_ok()
    }

    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

impl TryFrom<Vec<String>> for EventTypes {
    type Error = FieldError;
    fn try_from(types: Vec<String>) -> Result<Self, FieldError> {
        Self::parse(types)
    }
}

impl From<EventTypes> for Vec<String> {
    fn from(types: EventTypes) -> Self {
        types.0
    }
}

/// The marketplace plan's names for the events an endpoint may want (Phase 2, M2.4), and the
/// event types they stand for; an endpoint is registered with the latter.
pub const SHORT_NAMES: [(&str, &str); 4] = [
    ("plugin.published", "core.registry.version-published"),
    ("plugin.updated", "core.plugin.updated"),
    ("plugin.installed", "core.plugin.installed"),
    ("plugin.reviewed", "core.registry.review-submitted"),
];

fn short_name(text: &str) -> Option<&'static str> {
    SHORT_NAMES
        .iter()
        .find(|(short, _)| *short == text)
        .map(|(_, canonical)| *canonical)
}

fn is_event_type(text: &str) -> bool {
    if short_name(text).is_some() || CoreEvent::types().any(|known| known == text) {
        return true;
    }
    let Some(rest) = text.strip_prefix("plugin.") else {
        return false;
    };
    let Some((plugin, name)) = rest.split_once('.') else {
        return false;
    };
    PluginId::parse(plugin).is_ok()
        && !name.is_empty()
        && name.len() <= 100
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
}

/// Whether an event that names no tenant may go to a tenant's endpoint: what every tenant
/// admin may read anyway (the plugin catalogue and registry: ReadRegistry), and nothing that
/// is about other tenants or the platform's own endpoints (reserved names, webhooks).
pub fn is_public_platform_event(event_type: &str) -> bool {
    (event_type.starts_with("core.plugin.") || event_type.starts_with("core.registry."))
        && !matches!(
            event_type,
            "core.registry.names-reserved" | "core.registry.names-released"
        )
}

/// What an admin says the endpoint is for: at most 500 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Description(String);

impl Description {
    pub fn parse(text: String) -> Result<Self, FieldError> {
        let invalid = |message: &str| FieldError::new("/description", message);
        if text.chars().count() > 500 {
            return Err(invalid("longer than 500 characters"));
        }
        if text.chars().any(char::is_control) {
            return Err(invalid("holds a control character"));
        }
        Ok(Self(text))
    }
}

impl TryFrom<String> for Description {
    type Error = FieldError;
    fn try_from(text: String) -> Result<Self, FieldError> {
        Self::parse(text)
    }
}

impl From<Description> for String {
    fn from(description: Description) -> Self {
        description.0
    }
}

/// Who acts on an endpoint: a super admin, who may manage every endpoint, or a tenant's
/// admin, who may manage that tenant's only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "tenant", rename_all = "kebab-case")]
pub enum Manager {
    Platform,
    Tenant(TenantId),
}

impl Manager {
    /// The tenant whose events an endpoint it registers receives; none for the platform.
    pub fn tenant(self) -> Option<TenantId> {
        match self {
            Manager::Platform => None,
            Manager::Tenant(tenant) => Some(tenant),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case")]
pub enum WebhookCommand {
    Register {
        by: Manager,
        url: WebhookUrl,
        events: EventTypes,
        description: Option<Description>,
    },
    /// Each field given replaces the endpoint's; `description: Some(None)` clears it.
    Update {
        by: Manager,
        url: Option<WebhookUrl>,
        events: Option<EventTypes>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<Option<Description>>,
    },
    RotateSecret {
        by: Manager,
    },
    /// Stops deliveries until `Enable`; the platform sends it for an endpoint failing for a
    /// day.
    Disable {
        by: Manager,
        reason: Option<Description>,
    },
    Enable {
        by: Manager,
    },
    Delete {
        by: Manager,
    },
}

impl WebhookCommand {
    pub fn command_type(&self) -> &'static str {
        match self {
            WebhookCommand::Register { .. } => "webhook.register",
            WebhookCommand::Update { .. } => "webhook.update",
            WebhookCommand::RotateSecret { .. } => "webhook.rotate-secret",
            WebhookCommand::Disable { .. } => "webhook.disable",
            WebhookCommand::Enable { .. } => "webhook.enable",
            WebhookCommand::Delete { .. } => "webhook.delete",
        }
    }

    fn manager(&self) -> Manager {
        match self {
            WebhookCommand::Register { by, .. }
            | WebhookCommand::Update { by, .. }
            | WebhookCommand::RotateSecret { by }
            | WebhookCommand::Disable { by, .. }
            | WebhookCommand::Enable { by }
            | WebhookCommand::Delete { by } => *by,
        }
    }
}

/// An endpoint as its events made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub tenant: Option<String>,
    pub url: String,
    pub events: Vec<String>,
    pub description: Option<String>,
    pub disabled: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Webhook {
    #[default]
    Unregistered,
    Registered(Endpoint),
    Deleted,
}

impl Webhook {
    pub fn decide(
        &self,
        id: WebhookId,
        command: &WebhookCommand,
    ) -> Result<Vec<WebhookEvent>, Rejection> {
        let webhook_id = id.to_string();
        let not_found = || {
            Rejection::new(
                Reason::WebhookNotFound,
                format!("no webhook has the id {id}"),
            )
        };
        let endpoint = match (self, command) {
            (
                Webhook::Unregistered,
                WebhookCommand::Register {
                    by,
                    url,
                    events,
                    description,
                },
            ) => {
                return Ok(vec![WebhookEvent::Registered(WebhookRegistered {
                    webhook_id,
                    tenant_id: by.tenant().map(|t| t.0.to_string()),
                    url: url.to_string(),
                    events: events.as_slice().to_vec(),
                    description: description.clone().map(String::from),
                })]);
            }
            (Webhook::Registered(_) | Webhook::Deleted, WebhookCommand::Register { .. }) => {
                return Err(Rejection::new(
                    Reason::WebhookAlreadyRegistered,
                    format!("a webhook with the id {id} was registered already"),
                ));
            }
            (Webhook::Unregistered | Webhook::Deleted, _) => return Err(not_found()),
            (Webhook::Registered(endpoint), _) => endpoint,
        };
        if let Manager::Tenant(tenant) = command.manager()
            && endpoint.tenant.as_deref() != Some(tenant.0.to_string().as_str())
        {
            return Err(not_found());
        }
        let tenant_id = endpoint.tenant.clone();
        Ok(match command {
            WebhookCommand::Register { .. } => vec![],
            WebhookCommand::Update {
                url,
                events,
                description,
                ..
            } => {
                let updated = WebhookUpdated {
                    webhook_id,
                    tenant_id,
                    url: url
                        .as_ref()
                        .map_or(endpoint.url.clone(), ToString::to_string),
                    events: events
                        .as_ref()
                        .map_or(endpoint.events.clone(), |e| e.as_slice().to_vec()),
                    description: match description {
                        Some(description) => description.clone().map(String::from),
                        None => endpoint.description.clone(),
                    },
                };
                let unchanged = updated.url == endpoint.url
                    && updated.events == endpoint.events
                    && updated.description == endpoint.description;
                if unchanged {
                    vec![]
                } else {
                    vec![WebhookEvent::Updated(updated)]
                }
            }
            WebhookCommand::RotateSecret { .. } => {
                vec![WebhookEvent::SecretRotated(WebhookSecretRotated {
                    webhook_id,
                    tenant_id,
                })]
            }
            WebhookCommand::Disable { reason, .. } if !endpoint.disabled => {
                vec![WebhookEvent::Disabled(WebhookDisabled {
                    webhook_id,
                    tenant_id,
                    reason: reason.clone().map(String::from),
                })]
            }
            WebhookCommand::Enable { .. } if endpoint.disabled => {
                vec![WebhookEvent::Enabled(WebhookEnabled {
                    webhook_id,
                    tenant_id,
                })]
            }
            WebhookCommand::Disable { .. } | WebhookCommand::Enable { .. } => vec![],
            WebhookCommand::Delete { .. } => vec![WebhookEvent::Deleted(WebhookDeleted {
                webhook_id,
                tenant_id,
            })],
        })
    }

    pub fn evolve(self, event: &WebhookEvent) -> Self {
        match (self, event) {
            (_, WebhookEvent::Registered(e)) => Webhook::Registered(Endpoint {
                tenant: e.tenant_id.clone(),
                url: e.url.clone(),
                events: e.events.clone(),
                description: e.description.clone(),
                disabled: false,
            }),
            (Webhook::Registered(endpoint), WebhookEvent::Disabled(_)) => {
                Webhook::Registered(Endpoint {
                    disabled: true,
                    ..endpoint
                })
            }
            (Webhook::Registered(endpoint), WebhookEvent::Enabled(_)) => {
                Webhook::Registered(Endpoint {
                    disabled: false,
                    ..endpoint
                })
            }
            (Webhook::Registered(endpoint), WebhookEvent::Updated(e)) => {
                Webhook::Registered(Endpoint {
                    url: e.url.clone(),
                    events: e.events.clone(),
                    description: e.description.clone(),
                    ..endpoint
                })
            }
            // The secret follows from the event's version: nothing to remember here.
            (state, WebhookEvent::SecretRotated(_)) => state,
            (_, WebhookEvent::Deleted(_)) => Webhook::Deleted,
            // An update of an endpoint never registered, or deleted: not a fact this
            // aggregate's decisions produce.
            (
                state,
                WebhookEvent::Updated(_) | WebhookEvent::Disabled(_) | WebhookEvent::Enabled(_),
            ) => state,
        }
    }
}

#[cfg(test)]
mod tests;
