//! Event bodies of the `core.*` topics. They are the wire contract: plain data with the
//! names and types of their Avro schemas (`schemas/events/*.avsc`). The domain decides them
//! and folds them; nothing here checks business rules.

use serde::{Deserialize, Serialize};

use crate::record::AvroRecord;

/// Names the Avro schema of a plugin event; `file` is its `.avsc` in `schemas/events/`.
macro_rules! plugin_record {
    ($record:ident, $file:literal) => {
        impl AvroRecord for $record {
            const FULL_NAME: &'static str =
                concat!("com.plexica.events.plugin.", stringify!($record));
            const SCHEMA: &'static str = include_str!(concat!("../schemas/events/", $file));
        }
    };
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginRegistered {
    pub plugin_id: String,
    pub name: String,
    pub version: String,
    pub description: Option<String>,
    /// The full manifest as JSON.
    pub manifest: String,
}
plugin_record!(PluginRegistered, "plugin_registered.avsc");

// In every lifecycle event below, `version` is the plugin's version in service once the event
// is applied, so a reader never has to remember earlier events to know it.

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginInstallRequested {
    pub plugin_id: String,
    pub version: String,
}
plugin_record!(PluginInstallRequested, "plugin_install_requested.avsc");

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginInstallStepCompleted {
    pub plugin_id: String,
    pub version: String,
    /// `DEPENDENCIES_CHECKED`, `PERMISSIONS_RESERVED`, … (the domain's `InstallStep`).
    pub step: String,
}
plugin_record!(
    PluginInstallStepCompleted,
    "plugin_install_step_completed.avsc"
);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginInstalled {
    pub plugin_id: String,
    pub version: String,
}
plugin_record!(PluginInstalled, "plugin_installed.avsc");

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginInstallFailed {
    pub plugin_id: String,
    pub version: String,
    pub step: String,
    pub error: String,
}
plugin_record!(PluginInstallFailed, "plugin_install_failed.avsc");

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginEnabled {
    pub plugin_id: String,
    pub version: String,
}
plugin_record!(PluginEnabled, "plugin_enabled.avsc");

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginDisabled {
    pub plugin_id: String,
    pub version: String,
    pub reason: Option<String>,
}
plugin_record!(PluginDisabled, "plugin_disabled.avsc");

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginUpdateRequested {
    pub plugin_id: String,
    pub version: String,
    pub target_version: String,
    pub name: String,
    pub description: Option<String>,
    /// The new manifest as JSON.
    pub manifest: String,
}
plugin_record!(PluginUpdateRequested, "plugin_update_requested.avsc");

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginUpdated {
    pub plugin_id: String,
    pub previous_version: String,
    pub version: String,
    pub name: String,
    pub description: Option<String>,
    /// The new manifest as JSON.
    pub manifest: String,
}
plugin_record!(PluginUpdated, "plugin_updated.avsc");

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginUpdateFailed {
    pub plugin_id: String,
    pub version: String,
    pub target_version: String,
    pub error: String,
}
plugin_record!(PluginUpdateFailed, "plugin_update_failed.avsc");

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginUninstallRequested {
    pub plugin_id: String,
    pub version: String,
    pub purge_data: bool,
}
plugin_record!(PluginUninstallRequested, "plugin_uninstall_requested.avsc");

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginUninstalled {
    pub plugin_id: String,
    pub version: String,
    pub purge_data: bool,
}
plugin_record!(PluginUninstalled, "plugin_uninstalled.avsc");

/// Names the Avro schema of a tenant event; `file` is its `.avsc` in `schemas/events/`.
macro_rules! tenant_record {
    ($record:ident, $file:literal) => {
        impl AvroRecord for $record {
            const FULL_NAME: &'static str =
                concat!("com.plexica.events.tenant.", stringify!($record));
            const SCHEMA: &'static str = include_str!(concat!("../schemas/events/", $file));
        }
    };
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantCreated {
    pub tenant_id: String,
    pub slug: String,
    pub name: String,
}
tenant_record!(TenantCreated, "tenant_created.avsc");

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantSuspended {
    pub tenant_id: String,
    pub reason: Option<String>,
}
tenant_record!(TenantSuspended, "tenant_suspended.avsc");

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantReactivated {
    pub tenant_id: String,
}
tenant_record!(TenantReactivated, "tenant_reactivated.avsc");

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantDeleted {
    pub tenant_id: String,
}
tenant_record!(TenantDeleted, "tenant_deleted.avsc");

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantPluginEnabled {
    pub tenant_id: String,
    pub plugin_id: String,
    /// The plugin's version in service when the tenant enabled it.
    pub plugin_version: String,
    /// The tenant's configuration of the plugin as JSON: arbitrary for Avro, governed by the
    /// plugin's configuration schema.
    pub configuration: String,
}
tenant_record!(TenantPluginEnabled, "tenant_plugin_enabled.avsc");

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantPluginDisabled {
    pub tenant_id: String,
    pub plugin_id: String,
}
tenant_record!(TenantPluginDisabled, "tenant_plugin_disabled.avsc");

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantPluginConfigured {
    pub tenant_id: String,
    pub plugin_id: String,
    /// The whole new configuration as JSON.
    pub configuration: String,
}
tenant_record!(TenantPluginConfigured, "tenant_plugin_configured.avsc");

/// Names the Avro schema of a registry event; `file` is its `.avsc` in `schemas/events/`.
macro_rules! registry_record {
    ($record:ident, $file:literal) => {
        impl AvroRecord for $record {
            const FULL_NAME: &'static str =
                concat!("com.plexica.events.registry.", stringify!($record));
            const SCHEMA: &'static str = include_str!(concat!("../schemas/events/", $file));
        }
    };
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamesReserved {
    /// `permission-keys` or `tenant-slugs`: the reservation aggregate is `reservation:{scope}`.
    pub scope: String,
    pub owner: String,
    pub names: Vec<String>,
}
registry_record!(NamesReserved, "names_reserved.avsc");

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamesReleased {
    pub scope: String,
    pub owner: String,
    pub names: Vec<String>,
}
registry_record!(NamesReleased, "names_released.avsc");

// The registry entry of a plugin: its aggregate is `registry:{plugin_id}`. Versions are
// semver text, as in the plugin events.

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionPublished {
    pub plugin_id: String,
    pub version: String,
    /// The version's full manifest as JSON.
    pub manifest: String,
    pub release_notes: Option<String>,
}
registry_record!(VersionPublished, "version_published.avsc");

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionYanked {
    pub plugin_id: String,
    pub version: String,
    pub reason: String,
}
registry_record!(VersionYanked, "version_yanked.avsc");

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionDeprecated {
    pub plugin_id: String,
    pub version: String,
    pub message: String,
}
registry_record!(VersionDeprecated, "version_deprecated.avsc");

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginClassified {
    pub plugin_id: String,
    /// The full new sets, sorted: a reader never needs earlier events to know them.
    pub categories: Vec<String>,
    pub tags: Vec<String>,
}
registry_record!(PluginClassified, "plugin_classified.avsc");

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginVerificationChanged {
    pub plugin_id: String,
    pub verified: bool,
    pub note: Option<String>,
}
registry_record!(
    PluginVerificationChanged,
    "plugin_verification_changed.avsc"
);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewSubmitted {
    pub plugin_id: String,
    pub reviewer: String,
    /// 1 to 5.
    pub rating: i32,
    pub comment: Option<String>,
}
registry_record!(ReviewSubmitted, "review_submitted.avsc");

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewRevised {
    pub plugin_id: String,
    pub reviewer: String,
    pub rating: i32,
    pub comment: Option<String>,
}
registry_record!(ReviewRevised, "review_revised.avsc");

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginEvent {
    Registered(PluginRegistered),
    InstallRequested(PluginInstallRequested),
    InstallStepCompleted(PluginInstallStepCompleted),
    Installed(PluginInstalled),
    InstallFailed(PluginInstallFailed),
    Enabled(PluginEnabled),
    Disabled(PluginDisabled),
    UpdateRequested(PluginUpdateRequested),
    Updated(PluginUpdated),
    UpdateFailed(PluginUpdateFailed),
    UninstallRequested(PluginUninstallRequested),
    Uninstalled(PluginUninstalled),
}

impl PluginEvent {
    /// The CloudEvents type: `core.plugin.<what happened, in kebab-case>`.
    pub fn event_type(&self) -> &'static str {
        match self {
            PluginEvent::Registered(_) => "core.plugin.registered",
            PluginEvent::InstallRequested(_) => "core.plugin.install-requested",
            PluginEvent::InstallStepCompleted(_) => "core.plugin.install-step-completed",
            PluginEvent::Installed(_) => "core.plugin.installed",
            PluginEvent::InstallFailed(_) => "core.plugin.install-failed",
            PluginEvent::Enabled(_) => "core.plugin.enabled",
            PluginEvent::Disabled(_) => "core.plugin.disabled",
            PluginEvent::UpdateRequested(_) => "core.plugin.update-requested",
            PluginEvent::Updated(_) => "core.plugin.updated",
            PluginEvent::UpdateFailed(_) => "core.plugin.update-failed",
            PluginEvent::UninstallRequested(_) => "core.plugin.uninstall-requested",
            PluginEvent::Uninstalled(_) => "core.plugin.uninstalled",
        }
    }

    /// The plugin the event is about: its aggregate.
    pub fn plugin_id(&self) -> &str {
        match self {
            PluginEvent::Registered(e) => &e.plugin_id,
            PluginEvent::InstallRequested(e) => &e.plugin_id,
            PluginEvent::InstallStepCompleted(e) => &e.plugin_id,
            PluginEvent::Installed(e) => &e.plugin_id,
            PluginEvent::InstallFailed(e) => &e.plugin_id,
            PluginEvent::Enabled(e) => &e.plugin_id,
            PluginEvent::Disabled(e) => &e.plugin_id,
            PluginEvent::UpdateRequested(e) => &e.plugin_id,
            PluginEvent::Updated(e) => &e.plugin_id,
            PluginEvent::UpdateFailed(e) => &e.plugin_id,
            PluginEvent::UninstallRequested(e) => &e.plugin_id,
            PluginEvent::Uninstalled(e) => &e.plugin_id,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantEvent {
    Created(TenantCreated),
    Suspended(TenantSuspended),
    Reactivated(TenantReactivated),
    Deleted(TenantDeleted),
    PluginEnabled(TenantPluginEnabled),
    PluginDisabled(TenantPluginDisabled),
    PluginConfigured(TenantPluginConfigured),
}

impl TenantEvent {
    /// The CloudEvents type: `core.tenant.<what happened>`.
    pub fn event_type(&self) -> &'static str {
        match self {
            TenantEvent::Created(_) => "core.tenant.created",
            TenantEvent::Suspended(_) => "core.tenant.suspended",
            TenantEvent::Reactivated(_) => "core.tenant.reactivated",
            TenantEvent::Deleted(_) => "core.tenant.deleted",
            TenantEvent::PluginEnabled(_) => "core.tenant.plugin-enabled",
            TenantEvent::PluginDisabled(_) => "core.tenant.plugin-disabled",
            TenantEvent::PluginConfigured(_) => "core.tenant.plugin-configured",
        }
    }

    /// The tenant the event is about: its aggregate.
    pub fn tenant_id(&self) -> &str {
        match self {
            TenantEvent::Created(e) => &e.tenant_id,
            TenantEvent::Suspended(e) => &e.tenant_id,
            TenantEvent::Reactivated(e) => &e.tenant_id,
            TenantEvent::Deleted(e) => &e.tenant_id,
            TenantEvent::PluginEnabled(e) => &e.tenant_id,
            TenantEvent::PluginDisabled(e) => &e.tenant_id,
            TenantEvent::PluginConfigured(e) => &e.tenant_id,
        }
    }
}

/// Events of `core.registry`: reservations of names that must be unique across aggregates,
/// and each plugin's registry entry (published versions, classification, reviews).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryEvent {
    NamesReserved(NamesReserved),
    NamesReleased(NamesReleased),
    VersionPublished(VersionPublished),
    VersionYanked(VersionYanked),
    VersionDeprecated(VersionDeprecated),
    PluginClassified(PluginClassified),
    PluginVerificationChanged(PluginVerificationChanged),
    ReviewSubmitted(ReviewSubmitted),
    ReviewRevised(ReviewRevised),
}

impl RegistryEvent {
    /// The CloudEvents type: `core.registry.<what happened>`.
    pub fn event_type(&self) -> &'static str {
        match self {
            RegistryEvent::NamesReserved(_) => "core.registry.names-reserved",
            RegistryEvent::NamesReleased(_) => "core.registry.names-released",
            RegistryEvent::VersionPublished(_) => "core.registry.version-published",
            RegistryEvent::VersionYanked(_) => "core.registry.version-yanked",
            RegistryEvent::VersionDeprecated(_) => "core.registry.version-deprecated",
            RegistryEvent::PluginClassified(_) => "core.registry.plugin-classified",
            RegistryEvent::PluginVerificationChanged(_) => {
                "core.registry.plugin-verification-changed"
            }
            RegistryEvent::ReviewSubmitted(_) => "core.registry.review-submitted",
            RegistryEvent::ReviewRevised(_) => "core.registry.review-revised",
        }
    }

    /// The plugin whose registry entry the event belongs to; none for reservations.
    pub fn plugin_id(&self) -> Option<&str> {
        match self {
            RegistryEvent::NamesReserved(_) | RegistryEvent::NamesReleased(_) => None,
            RegistryEvent::VersionPublished(e) => Some(&e.plugin_id),
            RegistryEvent::VersionYanked(e) => Some(&e.plugin_id),
            RegistryEvent::VersionDeprecated(e) => Some(&e.plugin_id),
            RegistryEvent::PluginClassified(e) => Some(&e.plugin_id),
            RegistryEvent::PluginVerificationChanged(e) => Some(&e.plugin_id),
            RegistryEvent::ReviewSubmitted(e) => Some(&e.plugin_id),
            RegistryEvent::ReviewRevised(e) => Some(&e.plugin_id),
        }
    }

    /// The aggregate key the event belongs to, as its record key carries it.
    pub fn aggregate_key(&self) -> String {
        match self {
            RegistryEvent::NamesReserved(e) => format!("reservation:{}", e.scope),
            RegistryEvent::NamesReleased(e) => format!("reservation:{}", e.scope),
            RegistryEvent::VersionPublished(e) => format!("registry:{}", e.plugin_id),
            RegistryEvent::VersionYanked(e) => format!("registry:{}", e.plugin_id),
            RegistryEvent::VersionDeprecated(e) => format!("registry:{}", e.plugin_id),
            RegistryEvent::PluginClassified(e) => format!("registry:{}", e.plugin_id),
            RegistryEvent::PluginVerificationChanged(e) => format!("registry:{}", e.plugin_id),
            RegistryEvent::ReviewSubmitted(e) => format!("registry:{}", e.plugin_id),
            RegistryEvent::ReviewRevised(e) => format!("registry:{}", e.plugin_id),
        }
    }
}

/// Any event of the `core.*` topics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoreEvent {
    Plugin(PluginEvent),
    Tenant(TenantEvent),
    Registry(RegistryEvent),
}

/// Which `core.*` topic an event belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventStream {
    Plugins,
    Tenants,
    Registry,
}

impl EventStream {
    pub fn topic(self, topics: &crate::Topics) -> String {
        match self {
            EventStream::Plugins => topics.plugins(),
            EventStream::Tenants => topics.tenants(),
            EventStream::Registry => topics.registry(),
        }
    }
}

impl CoreEvent {
    /// The CloudEvents type, following the seeds' naming.
    pub fn event_type(&self) -> &'static str {
        match self {
            CoreEvent::Plugin(e) => e.event_type(),
            CoreEvent::Tenant(e) => e.event_type(),
            CoreEvent::Registry(e) => e.event_type(),
        }
    }

    pub fn stream(&self) -> EventStream {
        match self {
            CoreEvent::Plugin(_) => EventStream::Plugins,
            CoreEvent::Tenant(_) => EventStream::Tenants,
            CoreEvent::Registry(_) => EventStream::Registry,
        }
    }

    /// The tenant an event concerns, for the `tenant-id` header.
    pub fn tenant_id(&self) -> Option<&str> {
        match self {
            CoreEvent::Plugin(_) | CoreEvent::Registry(_) => None,
            CoreEvent::Tenant(e) => Some(e.tenant_id()),
        }
    }
}

impl From<PluginEvent> for CoreEvent {
    fn from(e: PluginEvent) -> Self {
        CoreEvent::Plugin(e)
    }
}

impl From<TenantEvent> for CoreEvent {
    fn from(e: TenantEvent) -> Self {
        CoreEvent::Tenant(e)
    }
}

impl From<RegistryEvent> for CoreEvent {
    fn from(e: RegistryEvent) -> Self {
        CoreEvent::Registry(e)
    }
}
