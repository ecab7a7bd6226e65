//! Every record type round-trips through its schema, and the schemas are the ones checked in.

use super::*;
use crate::commands::{CommandOutcome, CommandRecord, WriterFenced};
use apache_avro::Schema;

/// Every checked-in schema parses and names the record its Rust type claims.
#[test]
fn every_schema_parses_and_carries_its_declared_name() {
    fn check<T: AvroRecord>() {
        let schema = T::parsed_schema().expect("schema parses");
        let name = match &schema {
            Schema::Record(record) => record.name.fullname(None),
            other => panic!("{} is not a record: {other:?}", T::FULL_NAME),
        };
        assert_eq!(name, T::FULL_NAME);
    }
    check::<PluginRegistered>();
    check::<PluginInstallRequested>();
    check::<PluginInstallStepCompleted>();
    check::<PluginInstalled>();
    check::<PluginInstallFailed>();
    check::<PluginEnabled>();
    check::<PluginDisabled>();
    check::<PluginUpdateRequested>();
    check::<PluginUpdated>();
    check::<PluginUpdateFailed>();
    check::<PluginUninstallRequested>();
    check::<PluginUninstalled>();
    check::<TenantCreated>();
    check::<TenantSuspended>();
    check::<TenantReactivated>();
    check::<TenantDeleted>();
    check::<NamesReserved>();
    check::<NamesReleased>();
    check::<VersionPublished>();
    check::<VersionYanked>();
    check::<VersionDeprecated>();
    check::<PluginClassified>();
    check::<PluginVerificationChanged>();
    check::<ReviewSubmitted>();
    check::<ReviewRevised>();
    check::<TenantPluginEnabled>();
    check::<TenantPluginDisabled>();
    check::<TenantPluginConfigured>();
    check::<CommandRecord>();
    check::<CommandOutcome>();
    check::<WriterFenced>();
}

/// Writes a record with its schema and reads the bytes back as an Avro value, as the
/// decoder sees it.
fn written<T: AvroRecord>(record: &T) -> apache_avro::types::Value {
    let schema = T::parsed_schema().expect("schema parses");
    let value = apache_avro::to_value(record).expect("serialises");
    let value = value.resolve(&schema).expect("value fits the schema");
    let bytes = apache_avro::to_avro_datum(&schema, value).expect("encodes");
    apache_avro::from_avro_datum(&schema, &mut bytes.as_slice(), None).expect("decodes")
}

/// The Rust types and the schemas agree: a value serialised through serde is valid for the
/// schema and reads back equal.
#[test]
fn records_round_trip_through_their_schema() {
    fn round_trip<T: AvroRecord + PartialEq + std::fmt::Debug>(record: T) {
        let back: T = apache_avro::from_value(&written(&record)).expect("deserialises");
        assert_eq!(back, record);
    }
    round_trip(PluginRegistered {
        plugin_id: "crm".into(),
        name: "CRM".into(),
        version: "1.2.0".into(),
        description: Some("Deals".into()),
        manifest: "{}".into(),
    });
    round_trip(PluginRegistered {
        plugin_id: "crm".into(),
        name: "CRM".into(),
        version: "1.2.0".into(),
        description: None,
        manifest: "{}".into(),
    });
    for event in plugin_events() {
        match event {
            PluginEvent::Registered(e) => round_trip(e),
            PluginEvent::InstallRequested(e) => round_trip(e),
            PluginEvent::InstallStepCompleted(e) => round_trip(e),
            PluginEvent::Installed(e) => round_trip(e),
            PluginEvent::InstallFailed(e) => round_trip(e),
            PluginEvent::Enabled(e) => round_trip(e),
            PluginEvent::Disabled(e) => round_trip(e),
            PluginEvent::UpdateRequested(e) => round_trip(e),
            PluginEvent::Updated(e) => round_trip(e),
            PluginEvent::UpdateFailed(e) => round_trip(e),
            PluginEvent::UninstallRequested(e) => round_trip(e),
            PluginEvent::Uninstalled(e) => round_trip(e),
        }
    }
    for event in tenant_events() {
        match event {
            TenantEvent::Created(e) => round_trip(e),
            TenantEvent::Suspended(e) => round_trip(e),
            TenantEvent::Reactivated(e) => round_trip(e),
            TenantEvent::Deleted(e) => round_trip(e),
            TenantEvent::PluginEnabled(e) => round_trip(e),
            TenantEvent::PluginDisabled(e) => round_trip(e),
            TenantEvent::PluginConfigured(e) => round_trip(e),
        }
    }
    for event in registry_entry_events() {
        match event {
            RegistryEvent::NamesReserved(e) => round_trip(e),
            RegistryEvent::NamesReleased(e) => round_trip(e),
            RegistryEvent::VersionPublished(e) => round_trip(e),
            RegistryEvent::VersionYanked(e) => round_trip(e),
            RegistryEvent::VersionDeprecated(e) => round_trip(e),
            RegistryEvent::PluginClassified(e) => round_trip(e),
            RegistryEvent::PluginVerificationChanged(e) => round_trip(e),
            RegistryEvent::ReviewSubmitted(e) => round_trip(e),
            RegistryEvent::ReviewRevised(e) => round_trip(e),
        }
    }
    round_trip(CommandRecord {
        command_id: "c".into(),
        command_type: "plugin.register".into(),
        aggregate_key: "plugin:crm".into(),
        payload: "{}".into(),
        actor_id: "alice".into(),
        actor_roles: vec!["super_admin".into()],
        actor_tenant_id: None,
        issued_at: 1,
        traceparent: Some("00-abc-def-01".into()),
    });
    round_trip(CommandOutcome {
        command_id: "c".into(),
        aggregate_key: "plugin:crm".into(),
        accepted: true,
        events: vec![crate::commands::EventPosition {
            topic: "core.plugins".into(),
            partition: 1,
            offset: 42,
            event_type: "core.plugin.registered".into(),
            aggregate_version: 1,
        }],
        rejection: None,
        decided_at: 2,
    });
}

/// One of every plugin event, optional fields set and unset.
fn plugin_events() -> Vec<PluginEvent> {
    let id = || "crm".to_owned();
    vec![
        PluginEvent::InstallRequested(PluginInstallRequested {
            plugin_id: id(),
            version: "1.2.0".into(),
        }),
        PluginEvent::InstallStepCompleted(PluginInstallStepCompleted {
            plugin_id: id(),
            version: "1.2.0".into(),
            step: "MIGRATIONS_APPLIED".into(),
        }),
        PluginEvent::Installed(PluginInstalled {
            plugin_id: id(),
            version: "1.2.0".into(),
        }),
        PluginEvent::InstallFailed(PluginInstallFailed {
            plugin_id: id(),
            version: "1.2.0".into(),
            step: "HEALTH_CHECKED".into(),
            error: "image pull failed".into(),
        }),
        PluginEvent::Enabled(PluginEnabled {
            plugin_id: id(),
            version: "1.2.0".into(),
        }),
        PluginEvent::Disabled(PluginDisabled {
            plugin_id: id(),
            version: "1.2.0".into(),
            reason: Some("dependency contacts was uninstalled".into()),
        }),
        PluginEvent::Disabled(PluginDisabled {
            plugin_id: id(),
            version: "1.2.0".into(),
            reason: None,
        }),
        PluginEvent::UpdateRequested(PluginUpdateRequested {
            plugin_id: id(),
            version: "1.2.0".into(),
            target_version: "1.3.0".into(),
            name: "CRM".into(),
            description: Some("Deals".into()),
            manifest: "{}".into(),
        }),
        PluginEvent::UpdateRequested(PluginUpdateRequested {
            plugin_id: id(),
            version: "1.2.0".into(),
            target_version: "1.3.0".into(),
            name: "CRM".into(),
            description: None,
            manifest: "{}".into(),
        }),
        PluginEvent::Updated(PluginUpdated {
            plugin_id: id(),
            previous_version: "1.2.0".into(),
            version: "1.3.0".into(),
            name: "CRM".into(),
            description: None,
            manifest: "{}".into(),
        }),
        PluginEvent::Updated(PluginUpdated {
            plugin_id: id(),
            previous_version: "1.2.0".into(),
            version: "1.3.0".into(),
            name: "CRM".into(),
            description: Some("Deals".into()),
            manifest: "{}".into(),
        }),
        PluginEvent::UpdateFailed(PluginUpdateFailed {
            plugin_id: id(),
            version: "1.2.0".into(),
            target_version: "1.3.0".into(),
            error: "hot swap failed".into(),
        }),
        PluginEvent::UninstallRequested(PluginUninstallRequested {
            plugin_id: id(),
            version: "1.2.0".into(),
            purge_data: true,
        }),
        PluginEvent::Uninstalled(PluginUninstalled {
            plugin_id: id(),
            version: "1.2.0".into(),
            purge_data: false,
        }),
    ]
}

/// One of every tenant event, optional fields set and unset.
fn tenant_events() -> Vec<TenantEvent> {
    let id = || "0190c2a0-0000-7000-8000-000000000000".to_owned();
    vec![
        TenantEvent::Created(TenantCreated {
            tenant_id: id(),
            slug: "acme".into(),
            name: "Acme".into(),
        }),
        TenantEvent::Suspended(TenantSuspended {
            tenant_id: id(),
            reason: Some("unpaid invoices".into()),
        }),
        TenantEvent::Suspended(TenantSuspended {
            tenant_id: id(),
            reason: None,
        }),
        TenantEvent::Reactivated(TenantReactivated { tenant_id: id() }),
        TenantEvent::Deleted(TenantDeleted { tenant_id: id() }),
        TenantEvent::PluginEnabled(TenantPluginEnabled {
            tenant_id: id(),
            plugin_id: "crm".into(),
            plugin_version: "1.2.0".into(),
            configuration: r#"{"stages":["lead","won"]}"#.into(),
        }),
        TenantEvent::PluginDisabled(TenantPluginDisabled {
            tenant_id: id(),
            plugin_id: "crm".into(),
        }),
        TenantEvent::PluginConfigured(TenantPluginConfigured {
            tenant_id: id(),
            plugin_id: "crm".into(),
            configuration: "{}".into(),
        }),
    ]
}

/// One of every event of a plugin's registry entry, optional fields set and unset.
fn registry_entry_events() -> Vec<RegistryEvent> {
    let id = || "crm".to_owned();
    vec![
        RegistryEvent::VersionPublished(VersionPublished {
            plugin_id: id(),
            version: "1.3.0".into(),
            manifest: "{}".into(),
            release_notes: Some("Faster deals".into()),
        }),
        RegistryEvent::VersionPublished(VersionPublished {
            plugin_id: id(),
            version: "1.3.0".into(),
            manifest: "{}".into(),
            release_notes: None,
        }),
        RegistryEvent::VersionYanked(VersionYanked {
            plugin_id: id(),
            version: "1.3.0".into(),
            reason: "leaks deals".into(),
        }),
        RegistryEvent::VersionDeprecated(VersionDeprecated {
            plugin_id: id(),
            version: "1.3.0".into(),
            message: "use 2.x".into(),
        }),
        RegistryEvent::PluginClassified(PluginClassified {
            plugin_id: id(),
            categories: vec!["sales".into()],
            tags: vec![],
        }),
        RegistryEvent::PluginVerificationChanged(PluginVerificationChanged {
            plugin_id: id(),
            verified: true,
            note: Some("security review passed".into()),
        }),
        RegistryEvent::ReviewSubmitted(ReviewSubmitted {
            plugin_id: id(),
            reviewer: "alice".into(),
            rating: 5,
            comment: Some("great".into()),
        }),
        RegistryEvent::ReviewRevised(ReviewRevised {
            plugin_id: id(),
            reviewer: "alice".into(),
            rating: 2,
            comment: None,
        }),
    ]
}

/// What the decoder does with a record once the registry named its schema: every schema
/// maps back to the event it was written from, and each event type has its own name.
#[test]
fn every_event_decodes_to_the_event_it_was_written_from() {
    fn as_written(event: &CoreEvent) -> (&'static str, apache_avro::types::Value) {
        fn with_name<T: AvroRecord>(record: &T) -> (&'static str, apache_avro::types::Value) {
            (T::FULL_NAME, written(record))
        }
        match event {
            CoreEvent::Plugin(event) => match event {
                PluginEvent::Registered(e) => with_name(e),
                PluginEvent::InstallRequested(e) => with_name(e),
                PluginEvent::InstallStepCompleted(e) => with_name(e),
                PluginEvent::Installed(e) => with_name(e),
                PluginEvent::InstallFailed(e) => with_name(e),
                PluginEvent::Enabled(e) => with_name(e),
                PluginEvent::Disabled(e) => with_name(e),
                PluginEvent::UpdateRequested(e) => with_name(e),
                PluginEvent::Updated(e) => with_name(e),
                PluginEvent::UpdateFailed(e) => with_name(e),
                PluginEvent::UninstallRequested(e) => with_name(e),
                PluginEvent::Uninstalled(e) => with_name(e),
            },
            CoreEvent::Tenant(event) => match event {
                TenantEvent::Created(e) => with_name(e),
                TenantEvent::Suspended(e) => with_name(e),
                TenantEvent::Reactivated(e) => with_name(e),
                TenantEvent::Deleted(e) => with_name(e),
                TenantEvent::PluginEnabled(e) => with_name(e),
                TenantEvent::PluginDisabled(e) => with_name(e),
                TenantEvent::PluginConfigured(e) => with_name(e),
            },
            CoreEvent::Registry(event) => match event {
                RegistryEvent::NamesReserved(e) => with_name(e),
                RegistryEvent::NamesReleased(e) => with_name(e),
                RegistryEvent::VersionPublished(e) => with_name(e),
                RegistryEvent::VersionYanked(e) => with_name(e),
                RegistryEvent::VersionDeprecated(e) => with_name(e),
                RegistryEvent::PluginClassified(e) => with_name(e),
                RegistryEvent::PluginVerificationChanged(e) => with_name(e),
                RegistryEvent::ReviewSubmitted(e) => with_name(e),
                RegistryEvent::ReviewRevised(e) => with_name(e),
            },
        }
    }
    let mut events: Vec<CoreEvent> = plugin_events().into_iter().map(CoreEvent::from).collect();
    events.push(CoreEvent::Plugin(PluginEvent::Registered(
        PluginRegistered {
            plugin_id: "crm".into(),
            name: "CRM".into(),
            version: "1.2.0".into(),
            description: None,
            manifest: "{}".into(),
        },
    )));
    events.extend(tenant_events().into_iter().map(CoreEvent::from));
    for scope in ["permission-keys", "tenant-slugs"] {
        events.push(CoreEvent::Registry(RegistryEvent::NamesReserved(
            NamesReserved {
                scope: scope.into(),
                owner: "crm".into(),
                names: vec!["crm.deals.read".into(), "crm.deals.write".into()],
            },
        )));
        events.push(CoreEvent::Registry(RegistryEvent::NamesReleased(
            NamesReleased {
                scope: scope.into(),
                owner: "crm".into(),
                names: vec![],
            },
        )));
    }
    events.extend(registry_entry_events().into_iter().map(CoreEvent::from));
    let mut types_by_schema = std::collections::HashMap::new();
    for event in &events {
        let (name, value) = as_written(event);
        let decoded = event_from_value(name, &value).expect("a known schema");
        assert_eq!(&decoded, event);
        let previous = types_by_schema.insert(name, event.event_type());
        assert!(
            previous.is_none_or(|t| t == event.event_type()),
            "{name} has two event types"
        );
    }
    let mut types: Vec<&str> = types_by_schema.values().copied().collect();
    types.sort_unstable();
    types.dedup();
    assert_eq!(
        types.len(),
        types_by_schema.len(),
        "two schemas share an event type"
    );
    assert_eq!(types.len(), 28, "one event type per core event: {types:?}");
    for t in &types {
        let what = t
            .strip_prefix("core.plugin.")
            .or_else(|| t.strip_prefix("core.tenant."))
            .or_else(|| t.strip_prefix("core.registry."))
            .unwrap_or_else(|| panic!("{t} is not core.<plugin|tenant|registry>.*"));
        assert!(
            what.split('-')
                .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase())),
            "{t} is not core.<plugin|tenant>.<kebab-case>"
        );
    }
    assert!(matches!(
        event_from_value(
            "com.plexica.events.plugin.PluginExploded",
            &apache_avro::types::Value::Null
        ),
        Err(CodecError::UnknownSchema(_))
    ));
}
