//! The tenant aggregate: one per tenant id, living on `core.tenants`.
//!
//! ```text
//! state                     accepts                   next state
//! (none)                    create                    ACTIVE
//! ACTIVE                    suspend                   SUSPENDED
//!                           delete                    DELETED
//!                           enable-plugin,            ACTIVE
//!                           disable-plugin,
//!                           configure-plugin
//! SUSPENDED                 reactivate                ACTIVE
//!                           delete                    DELETED
//! DELETED                   nothing
//! ```
//!
//! [`Tenant::allowed_commands`] is the whole table: `decide` refuses any command it does not
//! list, and the refusal quotes it. A suspended or deleted tenant therefore changes nothing,
//! its plugins included (spec 004 US-006).

use std::collections::BTreeMap;
use std::fmt;

use event_schemas::events::{
    TenantCreated, TenantDeleted, TenantEvent, TenantPluginConfigured, TenantPluginDisabled,
    TenantPluginEnabled, TenantReactivated, TenantSuspended,
};
use event_schemas::status::PluginStatus;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::directory::{Directory, Listing};
use crate::plugin::PluginId;
use crate::rejection::{FieldError, Reason, Rejection, required_text};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TenantId(pub Uuid);

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A tenant's unique kebab-case name. It names the tenant's database schema, so it is kept
/// to what Postgres accepts unquoted: 3 to 63 characters, a letter first.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct TenantSlug(String);

impl TenantSlug {
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        if crate::rejection::is_kebab_case(s, 3..=63) {
            Ok(Self(s.to_owned()))
        } else {
            Err(FieldError::new(
                "/slug",
                format!(
                    "`{s}` is not a tenant slug: 3-63 characters of kebab-case starting with a letter"
                ),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for TenantSlug {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        TenantSlug::parse(&s).map_err(|e| serde::de::Error::custom(e.message))
    }
}

/// A display name: trimmed, 1 to 200 characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TenantName(String);

impl TenantName {
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        let trimmed = s.trim();
        if (1..=200).contains(&trimmed.chars().count()) {
            Ok(Self(trimmed.to_owned()))
        } else {
            Err(FieldError::new(
                "/name",
                "a tenant name has 1 to 200 characters",
            ))
        }
    }
}

impl<'de> Deserialize<'de> for TenantName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        TenantName::parse(&s).map_err(|e| serde::de::Error::custom(e.message))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case")]
pub enum TenantCommand {
    Create {
        slug: TenantSlug,
        name: TenantName,
    },
    Suspend {
        #[serde(default)]
        reason: Option<String>,
    },
    Reactivate,
    Delete,
    /// Enables a globally ACTIVE plugin for the tenant. Without a configuration, the one kept
    /// from an earlier enablement applies, else `{}`.
    EnablePlugin {
        plugin: PluginId,
        #[serde(default)]
        configuration: Option<Value>,
    },
    /// Disables a plugin for the tenant, keeping its configuration (and the tenant's data).
    DisablePlugin {
        plugin: PluginId,
    },
    /// Replaces the configuration of a plugin the tenant has enabled.
    ConfigurePlugin {
        plugin: PluginId,
        configuration: Value,
    },
}

/// Names a command without its parameters: what the lifecycle table is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TenantCommandKind {
    Create,
    Suspend,
    Reactivate,
    Delete,
    EnablePlugin,
    DisablePlugin,
    ConfigurePlugin,
}

impl TenantCommandKind {
    pub const ALL: [TenantCommandKind; 7] = [
        TenantCommandKind::Create,
        TenantCommandKind::Suspend,
        TenantCommandKind::Reactivate,
        TenantCommandKind::Delete,
        TenantCommandKind::EnablePlugin,
        TenantCommandKind::DisablePlugin,
        TenantCommandKind::ConfigurePlugin,
    ];

    /// The command's stable name in records, logs, metrics and rejections.
    pub fn command_type(self) -> &'static str {
        match self {
            TenantCommandKind::Create => "tenant.create",
            TenantCommandKind::Suspend => "tenant.suspend",
            TenantCommandKind::Reactivate => "tenant.reactivate",
            TenantCommandKind::Delete => "tenant.delete",
            TenantCommandKind::EnablePlugin => "tenant.enable-plugin",
            TenantCommandKind::DisablePlugin => "tenant.disable-plugin",
            TenantCommandKind::ConfigurePlugin => "tenant.configure-plugin",
        }
    }
}

impl TenantCommand {
    pub fn kind(&self) -> TenantCommandKind {
        match self {
            TenantCommand::Create { .. } => TenantCommandKind::Create,
            TenantCommand::Suspend { .. } => TenantCommandKind::Suspend,
            TenantCommand::Reactivate => TenantCommandKind::Reactivate,
            TenantCommand::Delete => TenantCommandKind::Delete,
            TenantCommand::EnablePlugin { .. } => TenantCommandKind::EnablePlugin,
            TenantCommand::DisablePlugin { .. } => TenantCommandKind::DisablePlugin,
            TenantCommand::ConfigurePlugin { .. } => TenantCommandKind::ConfigurePlugin,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TenantStatus {
    Active,
    Suspended,
    Deleted,
}

impl TenantStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TenantStatus::Active => "ACTIVE",
            TenantStatus::Suspended => "SUSPENDED",
            TenantStatus::Deleted => "DELETED",
        }
    }
}

/// A plugin as one tenant has it: enabled or not, and the tenant's configuration, which a
/// disablement keeps for the next enablement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantPlugin {
    pub enabled: bool,
    pub configuration: Value,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Tenant {
    #[default]
    Unknown,
    Known {
        slug: String,
        status: TenantStatus,
        /// Every plugin the tenant ever enabled, by id.
        plugins: BTreeMap<PluginId, TenantPlugin>,
    },
}

impl Tenant {
    /// The lifecycle status, once created.
    pub fn status(&self) -> Option<TenantStatus> {
        match self {
            Tenant::Unknown => None,
            Tenant::Known { status, .. } => Some(*status),
        }
    }

    /// The plugin as this tenant has it, if it was ever enabled.
    pub fn plugin(&self, id: &PluginId) -> Option<&TenantPlugin> {
        match self {
            Tenant::Unknown => None,
            Tenant::Known { plugins, .. } => plugins.get(id),
        }
    }

    /// The commands the tenant accepts in its current state: the lifecycle's transition table.
    pub fn allowed_commands(&self) -> &'static [TenantCommandKind] {
        use TenantCommandKind as C;
        match self.status() {
            None => &[C::Create],
            Some(TenantStatus::Active) => &[
                C::Suspend,
                C::Delete,
                C::EnablePlugin,
                C::DisablePlugin,
                C::ConfigurePlugin,
            ],
            Some(TenantStatus::Suspended) => &[C::Reactivate, C::Delete],
            Some(TenantStatus::Deleted) => &[],
        }
    }

    /// Decides a command addressed to tenant `id`: first whether the lifecycle accepts the
    /// command at all in this state ([`Tenant::allowed_commands`]), then what it records.
    /// Plugin commands read the plugin's global status and configuration schema in
    /// `directory`.
    pub fn decide(
        &self,
        id: TenantId,
        command: &TenantCommand,
        directory: &Directory,
    ) -> Result<Vec<TenantEvent>, Rejection> {
        let kind = command.kind();
        if !self.allowed_commands().contains(&kind) {
            return Err(self.not_allowed(id, kind));
        }
        let tenant_id = id.to_string();
        let event = match command {
            TenantCommand::Create { slug, name } => TenantEvent::Created(TenantCreated {
                tenant_id,
                slug: slug.as_str().to_owned(),
                name: name.0.clone(),
            }),
            TenantCommand::Suspend { reason } => TenantEvent::Suspended(TenantSuspended {
                tenant_id,
                reason: reason
                    .as_deref()
                    .map(|r| required_text("/reason", r))
                    .transpose()?,
            }),
            TenantCommand::Reactivate => TenantEvent::Reactivated(TenantReactivated { tenant_id }),
            TenantCommand::Delete => TenantEvent::Deleted(TenantDeleted { tenant_id }),
            TenantCommand::EnablePlugin {
                plugin,
                configuration,
            } => self.enable_plugin(id, plugin, configuration.as_ref(), directory)?,
            TenantCommand::DisablePlugin { plugin } => {
                self.require_enabled(id, plugin, kind)?;
                TenantEvent::PluginDisabled(TenantPluginDisabled {
                    tenant_id,
                    plugin_id: plugin.to_string(),
                })
            }
            TenantCommand::ConfigurePlugin {
                plugin,
                configuration,
            } => {
                self.require_enabled(id, plugin, kind)?;
                let configuration = valid_configuration(directory.plugin(plugin), configuration)?;
                TenantEvent::PluginConfigured(TenantPluginConfigured {
                    tenant_id,
                    plugin_id: plugin.to_string(),
                    configuration,
                })
            }
        };
        Ok(vec![event])
    }

    fn enable_plugin(
        &self,
        id: TenantId,
        plugin: &PluginId,
        configuration: Option<&Value>,
        directory: &Directory,
    ) -> Result<TenantEvent, Rejection> {
        let Some(listing) = directory.plugin(plugin) else {
            return Err(Rejection::new(
                Reason::PluginNotFound,
                format!("no plugin `{plugin}` is registered, so tenant {id} cannot enable it"),
            ));
        };
        if listing.status != PluginStatus::Active {
            return Err(Rejection::new(
                Reason::PluginNotActive,
                format!(
                    "plugin `{plugin}` is {}; a tenant can enable only an ACTIVE plugin",
                    listing.status.as_str()
                ),
            ));
        }
        let kept = self.plugin(plugin);
        if kept.is_some_and(|p| p.enabled) {
            return Err(Rejection::new(
                Reason::PluginAlreadyEnabled,
                format!("tenant {id} has already enabled plugin `{plugin}`"),
            ));
        }
        let empty = Value::Object(serde_json::Map::new());
        let configuration = configuration
            .or(kept.map(|p| &p.configuration))
            .unwrap_or(&empty);
        Ok(TenantEvent::PluginEnabled(TenantPluginEnabled {
            tenant_id: id.to_string(),
            plugin_id: plugin.to_string(),
            plugin_version: listing.version.to_string(),
            configuration: valid_configuration(Some(listing), configuration)?,
        }))
    }

    /// Refuses `kind` unless the tenant has `plugin` enabled.
    fn require_enabled(
        &self,
        id: TenantId,
        plugin: &PluginId,
        kind: TenantCommandKind,
    ) -> Result<(), Rejection> {
        if self.plugin(plugin).is_some_and(|p| p.enabled) {
            return Ok(());
        }
        Err(Rejection::new(
            Reason::PluginNotEnabled,
            format!(
                "tenant {id} has not enabled plugin `{plugin}`, so {} does not apply",
                kind.command_type()
            ),
        ))
    }

    pub fn evolve(self, event: &TenantEvent) -> Self {
        let (slug, status, mut plugins) = match (self, event) {
            (_, TenantEvent::Created(e)) => {
                return Tenant::Known {
                    slug: e.slug.clone(),
                    status: TenantStatus::Active,
                    plugins: BTreeMap::new(),
                };
            }
            (
                Tenant::Known {
                    slug,
                    status,
                    plugins,
                },
                _,
            ) => (slug, status, plugins),
            // Only a creation gives a tenant a state to change.
            (Tenant::Unknown, _) => return Tenant::Unknown,
        };
        let status = match event {
            TenantEvent::Suspended(_) => TenantStatus::Suspended,
            TenantEvent::Deleted(_) => TenantStatus::Deleted,
            TenantEvent::Created(_) | TenantEvent::Reactivated(_) => TenantStatus::Active,
            TenantEvent::PluginEnabled(e) => {
                if let Ok(plugin) = PluginId::parse(&e.plugin_id) {
                    plugins.insert(
                        plugin,
                        TenantPlugin {
                            enabled: true,
                            configuration: logged_configuration(&e.configuration),
                        },
                    );
                }
                status
            }
            TenantEvent::PluginDisabled(e) => {
                if let Some(plugin) = PluginId::parse(&e.plugin_id)
                    .ok()
                    .and_then(|id| plugins.get_mut(&id))
                {
                    plugin.enabled = false;
                }
                status
            }
            TenantEvent::PluginConfigured(e) => {
                if let Some(plugin) = PluginId::parse(&e.plugin_id)
                    .ok()
                    .and_then(|id| plugins.get_mut(&id))
                {
                    plugin.configuration = logged_configuration(&e.configuration);
                }
                status
            }
        };
        Tenant::Known {
            slug,
            status,
            plugins,
        }
    }

    /// The refusal of a command the current state does not accept, naming those it does.
    fn not_allowed(&self, id: TenantId, kind: TenantCommandKind) -> Rejection {
        let allowed = command_types(self.allowed_commands());
        let listed = if allowed.is_empty() {
            "none".to_owned()
        } else {
            allowed.join(", ")
        };
        match self {
            Tenant::Unknown => Rejection::new(
                Reason::TenantNotFound,
                format!(
                    "no tenant {id} exists, so {} does not apply; allowed: {listed}",
                    kind.command_type()
                ),
            ),
            Tenant::Known { slug, status, .. } => {
                let reason = if kind == TenantCommandKind::Create {
                    Reason::TenantAlreadyExists
                } else {
                    Reason::NotAllowedInTenantStatus
                };
                Rejection::new(
                    reason,
                    format!(
                        "tenant {id} (`{slug}`) is {}, where {} is not allowed; allowed: {listed}",
                        status.as_str(),
                        kind.command_type(),
                    ),
                )
            }
        }
        .with_allowed(allowed)
    }
}

/// The configuration as the log has it. `decide` wrote it as JSON; JSON null stands for a
/// record that is not, so that the next enablement without a configuration is refused as
/// invalid instead of silently starting from `{}`.
fn logged_configuration(json: &str) -> Value {
    serde_json::from_str(json).unwrap_or(Value::Null)
}

/// `configuration` as the event records it, once it satisfies the configuration schema of
/// the plugin's manifest in service. Every violation is reported at once, located under
/// `/configuration`. A plugin without a schema (or whose manifest no longer parses) takes
/// only an object: what a tenant's settings are.
fn valid_configuration(
    listing: Option<&Listing>,
    configuration: &Value,
) -> Result<String, Rejection> {
    let schema = listing
        .and_then(|l| l.manifest.as_ref())
        .and_then(|m| m.configuration_schema.as_ref());
    let errors = match schema {
        None if configuration.is_object() => vec![],
        None => vec![FieldError::new(
            "/configuration",
            "must be a JSON object: the plugin declares no configuration schema",
        )],
        Some(schema) => {
            // Registration compiles the schema; one registered before that check may still
            // fail (an unresolvable `$ref`), which is the plugin's fault, not the tenant's.
            let validator = jsonschema::validator_for(schema).map_err(|e| {
                Rejection::new(
                    Reason::PluginConfigurationSchemaUnusable,
                    format!("the plugin's configuration schema does not compile: {e}"),
                )
            })?;
            validator
                .iter_errors(configuration)
                .map(|e| {
                    FieldError::new(format!("/configuration{}", e.instance_path), e.to_string())
                })
                .collect()
        }
    };
    if errors.is_empty() {
        Ok(configuration.to_string())
    } else {
        Err(Rejection::invalid(
            Reason::InvalidPluginConfiguration,
            errors,
        ))
    }
}

/// The names of commands, as rejections list them.
fn command_types(kinds: &[TenantCommandKind]) -> Vec<&'static str> {
    kinds.iter().map(|k| k.command_type()).collect()
}

#[cfg(test)]
mod tests;
