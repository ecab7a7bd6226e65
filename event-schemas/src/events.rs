//! Event bodies of the `core.*` topics. They are the wire contract: plain data with the
//! names and types of their Avro schemas (`schemas/events/*.avsc`). The domain decides them
//! and folds them; nothing here checks business rules.

use serde::{Deserialize, Serialize};

use crate::record::AvroRecord;
use crate::status::OperationStatus;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginRegistered {
    pub plugin_id: String,
    pub name: String,
    pub version: String,
    pub description: Option<String>,
    /// The full manifest as JSON.
    pub manifest: String,
}

// In every lifecycle event below, `version` is the plugin's version in service once the event
// is applied, so a reader never has to remember earlier events to know it.

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginInstallRequested {
    pub plugin_id: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginInstallStepCompleted {
    pub plugin_id: String,
    pub version: String,
    /// `DEPENDENCIES_CHECKED`, `PERMISSIONS_RESERVED`, … (the domain's `InstallStep`).
    pub step: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginInstalled {
    pub plugin_id: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginInstallFailed {
    pub plugin_id: String,
    pub version: String,
    pub step: String,
    pub error: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginEnabled {
    pub plugin_id: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginDisabled {
    pub plugin_id: String,
    pub version: String,
    pub reason: Option<String>,
}

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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginUpdateFailed {
    pub plugin_id: String,
    pub version: String,
    pub target_version: String,
    pub error: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginUninstallRequested {
    pub plugin_id: String,
    pub version: String,
    pub purge_data: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginUninstalled {
    pub plugin_id: String,
    pub version: String,
    pub purge_data: bool,
}

/// What the runtime observed of a plugin's instance, once it changed. Its aggregate is
/// `plugin-health:{plugin_id}`: observations come at any time, and kept apart from the
/// lifecycle (`plugin:{id}`) they never come between a saga's steps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginHealthChanged {
    pub plugin_id: String,
    /// The version of the instance observed.
    pub version: String,
    /// `STARTING`, `HEALTHY`, `UNHEALTHY` or `STOPPED` (the domain's `HealthStatus`).
    pub status: String,
    /// When the instance entered this status, in milliseconds since the Unix epoch.
    pub since: i64,
    pub last_error: Option<String>,
    /// How many times the runtime restarted the instance.
    pub restarts: i64,
    /// Where the instance is served (`http://host:port`); none when it is not.
    pub address: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantCreated {
    pub tenant_id: String,
    pub slug: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantSuspended {
    pub tenant_id: String,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantReactivated {
    pub tenant_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantDeleted {
    pub tenant_id: String,
}

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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantPluginDisabled {
    pub tenant_id: String,
    pub plugin_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantPluginConfigured {
    pub tenant_id: String,
    pub plugin_id: String,
    /// The whole new configuration as JSON.
    pub configuration: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamesReserved {
    /// `permission-keys` or `tenant-slugs`: the reservation aggregate is `reservation:{scope}`.
    pub scope: String,
    pub owner: String,
    pub names: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamesReleased {
    pub scope: String,
    pub owner: String,
    pub names: Vec<String>,
}

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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionYanked {
    pub plugin_id: String,
    pub version: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionDeprecated {
    pub plugin_id: String,
    pub version: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginClassified {
    pub plugin_id: String,
    /// The full new sets, sorted: a reader never needs earlier events to know them.
    pub categories: Vec<String>,
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginVerificationChanged {
    pub plugin_id: String,
    pub verified: bool,
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewSubmitted {
    pub plugin_id: String,
    pub reviewer: String,
    /// 1 to 5.
    pub rating: i32,
    pub comment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewRevised {
    pub plugin_id: String,
    pub reviewer: String,
    pub rating: i32,
    pub comment: Option<String>,
}

/// Declares the events of one `core.*` stream, each once: its variant, record, CloudEvents
/// type, `.avsc` file and the stage an operation is at once it happened. From this table come
/// the records' schemas, the enum, `event_type`, `stage`, the list of types and the decoding
/// by schema name, so that a new event is a line here, its schema, `evolve` and the read
/// models, and the compiler names every other place that must follow.
// A webhook endpoint: its aggregate is `webhook:{webhook_id}`. `tenant_id` is the tenant
// whose events it receives, none for a platform endpoint. No event holds its secret: it is
// derived from the platform's webhook key, the endpoint's id and the aggregate version of the
// event that set it (`registered` or the last `secret-rotated`).

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookRegistered {
    pub webhook_id: String,
    pub tenant_id: Option<String>,
    pub url: String,
    pub events: Vec<String>,
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookUpdated {
    pub webhook_id: String,
    pub tenant_id: Option<String>,
    pub url: String,
    pub events: Vec<String>,
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookSecretRotated {
    pub webhook_id: String,
    pub tenant_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookDisabled {
    pub webhook_id: String,
    pub tenant_id: Option<String>,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookEnabled {
    pub webhook_id: String,
    pub tenant_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookDeleted {
    pub webhook_id: String,
    pub tenant_id: Option<String>,
}

macro_rules! core_events {
    (
        $(#[$meta:meta])*
        pub enum $enum:ident in $namespace:literal {
            $( $variant:ident($record:ident) = $event_type:literal, $file:literal, $stage:ident; )*
        }
    ) => {
        $(
            impl AvroRecord for $record {
                const FULL_NAME: &'static str =
                    concat!("com.plexica.events.", $namespace, ".", stringify!($record));
                const SCHEMA: &'static str = include_str!(concat!("../schemas/events/", $file));
            }
        )*

        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum $enum {
            $( $variant($record), )*
        }

        impl $enum {
            /// Every CloudEvents type of the stream.
            pub const TYPES: &'static [&'static str] = &[$( $event_type ),*];

            /// Every event of the stream with its record's schema, for documents such as
            /// AsyncAPI.
            pub const DECLARED: &'static [DeclaredEvent] = &[$(
                DeclaredEvent {
                    event_type: $event_type,
                    full_name: <$record as AvroRecord>::FULL_NAME,
                    schema: <$record as AvroRecord>::SCHEMA,
                },
            )*];

            /// The CloudEvents type.
            pub fn event_type(&self) -> &'static str {
                match self {
                    $( Self::$variant(_) => $event_type, )*
                }
            }

            /// Where an operation stands once this event happened.
            pub fn stage(&self) -> OperationStatus {
                match self {
                    $( Self::$variant(_) => OperationStatus::$stage, )*
                }
            }

            /// [`Self::stage`] of an event known by its type alone (as a read model stores
            /// it); `None` for a type of another stream.
            pub fn stage_of(event_type: &str) -> Option<OperationStatus> {
                match event_type {
                    $( $event_type => Some(OperationStatus::$stage), )*
                    _ => None,
                }
            }

            /// Passes the event's record to `visitor`, as its own type.
            pub fn visit<'a, V: RecordVisitor<'a>>(&'a self, visitor: V) -> V::Output {
                match self {
                    $( Self::$variant(record) => visitor.visit(record), )*
                }
            }

            /// Reads the record written with the schema named `full_name`; `None` when that
            /// schema is not one of this stream's.
            pub fn from_avro(
                full_name: &str,
                value: &apache_avro::types::Value,
            ) -> Option<Result<Self, apache_avro::Error>> {
                match full_name {
                    $( <$record as AvroRecord>::FULL_NAME => {
                        Some(apache_avro::from_value(value).map(Self::$variant))
                    } )*
                    _ => None,
                }
            }
        }
    };
}

/// An event type as declared: its CloudEvents type and its record's Avro schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeclaredEvent {
    pub event_type: &'static str,
    /// Namespace and name of the record, as the registry's subjects carry it.
    pub full_name: &'static str,
    /// The `.avsc` text.
    pub schema: &'static str,
}

/// Something done with an event's record whatever its type: encoding it, checking its schema.
pub trait RecordVisitor<'a> {
    type Output;
    fn visit<T: AvroRecord + Sync>(self, record: &'a T) -> Self::Output;
}

core_events! {
    /// Events of `core.plugins`: a plugin's lifecycle (its aggregate is `plugin:{id}`).
    pub enum PluginEvent in "plugin" {
        Registered(PluginRegistered) =
            "core.plugin.registered", "plugin_registered.avsc", Succeeded;
        InstallRequested(PluginInstallRequested) =
            "core.plugin.install-requested", "plugin_install_requested.avsc", Running;
        InstallStepCompleted(PluginInstallStepCompleted) =
            "core.plugin.install-step-completed", "plugin_install_step_completed.avsc", Running;
        Installed(PluginInstalled) =
            "core.plugin.installed", "plugin_installed.avsc", Succeeded;
        InstallFailed(PluginInstallFailed) =
            "core.plugin.install-failed", "plugin_install_failed.avsc", Failed;
        Enabled(PluginEnabled) = "core.plugin.enabled", "plugin_enabled.avsc", Succeeded;
        Disabled(PluginDisabled) = "core.plugin.disabled", "plugin_disabled.avsc", Succeeded;
        UpdateRequested(PluginUpdateRequested) =
            "core.plugin.update-requested", "plugin_update_requested.avsc", Running;
        Updated(PluginUpdated) = "core.plugin.updated", "plugin_updated.avsc", Succeeded;
        UpdateFailed(PluginUpdateFailed) =
            "core.plugin.update-failed", "plugin_update_failed.avsc", Failed;
        UninstallRequested(PluginUninstallRequested) =
            "core.plugin.uninstall-requested", "plugin_uninstall_requested.avsc", Running;
        Uninstalled(PluginUninstalled) =
            "core.plugin.uninstalled", "plugin_uninstalled.avsc", Succeeded;
    }
}

impl PluginEvent {
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

core_events! {
    /// Events of `core.plugins` about a plugin's running instances, as the runtime observes
    /// them (the aggregate is `plugin-health:{id}`).
    pub enum PluginHealthEvent in "plugin" {
        Changed(PluginHealthChanged) =
            "core.plugin.health-changed", "plugin_health_changed.avsc", Succeeded;
    }
}

impl PluginHealthEvent {
    /// The plugin the observation is about.
    pub fn plugin_id(&self) -> &str {
        match self {
            PluginHealthEvent::Changed(e) => &e.plugin_id,
        }
    }
}

core_events! {
    /// Events of `core.tenants` (the aggregate is `tenant:{id}`).
    pub enum TenantEvent in "tenant" {
        Created(TenantCreated) = "core.tenant.created", "tenant_created.avsc", Succeeded;
        Suspended(TenantSuspended) =
            "core.tenant.suspended", "tenant_suspended.avsc", Succeeded;
        Reactivated(TenantReactivated) =
            "core.tenant.reactivated", "tenant_reactivated.avsc", Succeeded;
        Deleted(TenantDeleted) = "core.tenant.deleted", "tenant_deleted.avsc", Succeeded;
        PluginEnabled(TenantPluginEnabled) =
            "core.tenant.plugin-enabled", "tenant_plugin_enabled.avsc", Succeeded;
        PluginDisabled(TenantPluginDisabled) =
            "core.tenant.plugin-disabled", "tenant_plugin_disabled.avsc", Succeeded;
        PluginConfigured(TenantPluginConfigured) =
            "core.tenant.plugin-configured", "tenant_plugin_configured.avsc", Succeeded;
    }
}

impl TenantEvent {
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

core_events! {
    /// Events of `core.registry`: reservations of names that must be unique across
    /// aggregates, and each plugin's registry entry (published versions, classification,
    /// reviews).
    pub enum RegistryEvent in "registry" {
        NamesReserved(NamesReserved) =
            "core.registry.names-reserved", "names_reserved.avsc", Succeeded;
        NamesReleased(NamesReleased) =
            "core.registry.names-released", "names_released.avsc", Succeeded;
        VersionPublished(VersionPublished) =
            "core.registry.version-published", "version_published.avsc", Succeeded;
        VersionYanked(VersionYanked) =
            "core.registry.version-yanked", "version_yanked.avsc", Succeeded;
        VersionDeprecated(VersionDeprecated) =
            "core.registry.version-deprecated", "version_deprecated.avsc", Succeeded;
        PluginClassified(PluginClassified) =
            "core.registry.plugin-classified", "plugin_classified.avsc", Succeeded;
        PluginVerificationChanged(PluginVerificationChanged) =
            "core.registry.plugin-verification-changed", "plugin_verification_changed.avsc",
            Succeeded;
        ReviewSubmitted(ReviewSubmitted) =
            "core.registry.review-submitted", "review_submitted.avsc", Succeeded;
        ReviewRevised(ReviewRevised) =
            "core.registry.review-revised", "review_revised.avsc", Succeeded;
    }
}

impl RegistryEvent {
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

core_events! {
    pub enum WebhookEvent in "webhook" {
        Registered(WebhookRegistered) =
            "core.webhook.registered", "webhook_registered.avsc", Succeeded;
        Updated(WebhookUpdated) = "core.webhook.updated", "webhook_updated.avsc", Succeeded;
        SecretRotated(WebhookSecretRotated) =
            "core.webhook.secret-rotated", "webhook_secret_rotated.avsc", Succeeded;
        Disabled(WebhookDisabled) =
            "core.webhook.disabled", "webhook_disabled.avsc", Succeeded;
        Enabled(WebhookEnabled) = "core.webhook.enabled", "webhook_enabled.avsc", Succeeded;
        Deleted(WebhookDeleted) = "core.webhook.deleted", "webhook_deleted.avsc", Succeeded;
    }
}

impl WebhookEvent {
    pub fn webhook_id(&self) -> &str {
        match self {
            WebhookEvent::Registered(e) => &e.webhook_id,
            WebhookEvent::Updated(e) => &e.webhook_id,
            WebhookEvent::SecretRotated(e) => &e.webhook_id,
            WebhookEvent::Disabled(e) => &e.webhook_id,
            WebhookEvent::Enabled(e) => &e.webhook_id,
            WebhookEvent::Deleted(e) => &e.webhook_id,
        }
    }

    pub fn tenant_id(&self) -> Option<&str> {
        match self {
            WebhookEvent::Registered(e) => e.tenant_id.as_deref(),
            WebhookEvent::Updated(e) => e.tenant_id.as_deref(),
            WebhookEvent::SecretRotated(e) => e.tenant_id.as_deref(),
            WebhookEvent::Disabled(e) => e.tenant_id.as_deref(),
            WebhookEvent::Enabled(e) => e.tenant_id.as_deref(),
            WebhookEvent::Deleted(e) => e.tenant_id.as_deref(),
        }
    }
}

/// Any event of the `core.*` topics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoreEvent {
    Plugin(PluginEvent),
    PluginHealth(PluginHealthEvent),
    Tenant(TenantEvent),
    Registry(RegistryEvent),
    /// On the tenants' stream: an endpoint belongs to a tenant or to the platform.
    Webhook(WebhookEvent),
}

/// Which `core.*` topic an event belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventStream {
    Plugins,
    Tenants,
    Registry,
}

impl EventStream {
    pub const ALL: [EventStream; 3] = [
        EventStream::Plugins,
        EventStream::Tenants,
        EventStream::Registry,
    ];

    /// Every event type written to the stream's topic.
    pub fn declared(self) -> impl Iterator<Item = &'static DeclaredEvent> {
        let lists: &[&'static [DeclaredEvent]] = match self {
            EventStream::Plugins => &[PluginEvent::DECLARED, PluginHealthEvent::DECLARED],
            EventStream::Tenants => &[TenantEvent::DECLARED, WebhookEvent::DECLARED],
            EventStream::Registry => &[RegistryEvent::DECLARED],
        };
        lists.iter().flat_map(|list| list.iter())
    }

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
            CoreEvent::PluginHealth(e) => e.event_type(),
            CoreEvent::Tenant(e) => e.event_type(),
            CoreEvent::Registry(e) => e.event_type(),
            CoreEvent::Webhook(e) => e.event_type(),
        }
    }

    pub fn stream(&self) -> EventStream {
        match self {
            CoreEvent::Plugin(_) | CoreEvent::PluginHealth(_) => EventStream::Plugins,
            CoreEvent::Tenant(_) | CoreEvent::Webhook(_) => EventStream::Tenants,
            CoreEvent::Registry(_) => EventStream::Registry,
        }
    }

    /// Where an operation stands once this event happened.
    pub fn stage(&self) -> OperationStatus {
        match self {
            CoreEvent::Plugin(e) => e.stage(),
            CoreEvent::PluginHealth(e) => e.stage(),
            CoreEvent::Tenant(e) => e.stage(),
            CoreEvent::Registry(e) => e.stage(),
            CoreEvent::Webhook(e) => e.stage(),
        }
    }

    /// [`Self::stage`] of an event known by its type alone; `None` for an unknown type.
    pub fn stage_of(event_type: &str) -> Option<OperationStatus> {
        PluginEvent::stage_of(event_type)
            .or_else(|| PluginHealthEvent::stage_of(event_type))
            .or_else(|| TenantEvent::stage_of(event_type))
            .or_else(|| RegistryEvent::stage_of(event_type))
            .or_else(|| WebhookEvent::stage_of(event_type))
    }

    /// Every CloudEvents type of the `core.*` topics.
    pub fn types() -> impl Iterator<Item = &'static str> {
        [
            PluginEvent::TYPES,
            PluginHealthEvent::TYPES,
            TenantEvent::TYPES,
            RegistryEvent::TYPES,
            WebhookEvent::TYPES,
        ]
        .into_iter()
        .flatten()
        .copied()
    }

    /// Passes the event's record to `visitor`, as its own type.
    pub fn visit<'a, V: RecordVisitor<'a>>(&'a self, visitor: V) -> V::Output {
        match self {
            CoreEvent::Plugin(e) => e.visit(visitor),
            CoreEvent::PluginHealth(e) => e.visit(visitor),
            CoreEvent::Tenant(e) => e.visit(visitor),
            CoreEvent::Registry(e) => e.visit(visitor),
            CoreEvent::Webhook(e) => e.visit(visitor),
        }
    }

    /// Reads the record written with the schema named `full_name`; `None` when no `core.*`
    /// event has that schema.
    pub fn from_avro(
        full_name: &str,
        value: &apache_avro::types::Value,
    ) -> Option<Result<Self, apache_avro::Error>> {
        if let Some(event) = PluginEvent::from_avro(full_name, value) {
            return Some(event.map(CoreEvent::Plugin));
        }
        if let Some(event) = PluginHealthEvent::from_avro(full_name, value) {
            return Some(event.map(CoreEvent::PluginHealth));
        }
        if let Some(event) = TenantEvent::from_avro(full_name, value) {
            return Some(event.map(CoreEvent::Tenant));
        }
        if let Some(event) = WebhookEvent::from_avro(full_name, value) {
            return Some(event.map(CoreEvent::Webhook));
        }
        RegistryEvent::from_avro(full_name, value).map(|event| event.map(CoreEvent::Registry))
    }

    /// The tenant an event concerns, for the `tenant-id` header.
    pub fn tenant_id(&self) -> Option<&str> {
        match self {
            CoreEvent::Plugin(_) | CoreEvent::PluginHealth(_) | CoreEvent::Registry(_) => None,
            CoreEvent::Tenant(e) => Some(e.tenant_id()),
            CoreEvent::Webhook(e) => e.tenant_id(),
        }
    }
}

impl From<PluginEvent> for CoreEvent {
    fn from(e: PluginEvent) -> Self {
        CoreEvent::Plugin(e)
    }
}

impl From<PluginHealthEvent> for CoreEvent {
    fn from(e: PluginHealthEvent) -> Self {
        CoreEvent::PluginHealth(e)
    }
}

impl From<TenantEvent> for CoreEvent {
    fn from(e: TenantEvent) -> Self {
        CoreEvent::Tenant(e)
    }
}

impl From<WebhookEvent> for CoreEvent {
    fn from(e: WebhookEvent) -> Self {
        CoreEvent::Webhook(e)
    }
}

impl From<RegistryEvent> for CoreEvent {
    fn from(e: RegistryEvent) -> Self {
        CoreEvent::Registry(e)
    }
}
