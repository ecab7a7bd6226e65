//! Every record type round-trips through its schema, and the schemas are the ones checked in.

use super::*;
use crate::commands::{CommandOutcome, CommandRecord, WriterFenced};
use crate::events::*;
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
    struct Check;
    impl RecordVisitor<'_> for Check {
        type Output = ();
        fn visit<T: AvroRecord + Sync>(self, _: &T) {
            check::<T>();
        }
    }
    for event in every_event() {
        event.visit(Check);
    }
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
    struct RoundTrip;
    impl RecordVisitor<'_> for RoundTrip {
        type Output = ();
        fn visit<T: AvroRecord + Sync>(self, record: &T) {
            let back: T = apache_avro::from_value(&written(record)).expect("deserialises");
            assert_eq!(
                apache_avro::to_value(&back).expect("serialises"),
                apache_avro::to_value(record).expect("serialises"),
                "{} reads back as written",
                T::FULL_NAME
            );
        }
    }
    for event in every_event() {
        event.visit(RoundTrip);
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

/// A sample of every event: each list's events, optional fields set and unset.
fn every_event() -> Vec<CoreEvent> {
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
    for (last_error, address) in [
        (None, Some("http://127.0.0.1:40123".to_owned())),
        (Some("exited: signal 9 (SIGKILL)".to_owned()), None),
    ] {
        events.push(CoreEvent::PluginHealth(PluginHealthEvent::Changed(
            PluginHealthChanged {
                plugin_id: "crm".into(),
                version: "1.2.0".into(),
                status: "HEALTHY".into(),
                since: 1_764_900_000_123,
                last_error,
                restarts: 2,
                address,
            },
        )));
    }
    events.extend(tenant_events().into_iter().map(CoreEvent::from));
    for tenant_id in [
        None,
        Some("0190f2a0-0000-7000-8000-000000000001".to_owned()),
    ] {
        let webhook_id = "0190f2a0-0000-7000-8000-0000000000aa".to_owned();
        events.extend([
            CoreEvent::Webhook(WebhookEvent::Registered(WebhookRegistered {
                webhook_id: webhook_id.clone(),
                tenant_id: tenant_id.clone(),
                url: "https://hooks.example.com/plexica".into(),
                events: vec!["core.plugin.installed".into(), "plugin.crm.deal.won".into()],
                description: Some("deals".into()),
            })),
            CoreEvent::Webhook(WebhookEvent::Updated(WebhookUpdated {
                webhook_id: webhook_id.clone(),
                tenant_id: tenant_id.clone(),
                url: "https://hooks.example.com/v2".into(),
                events: vec![],
                description: None,
            })),
            CoreEvent::Webhook(WebhookEvent::SecretRotated(WebhookSecretRotated {
                webhook_id: webhook_id.clone(),
                tenant_id: tenant_id.clone(),
            })),
            CoreEvent::Webhook(WebhookEvent::Disabled(WebhookDisabled {
                webhook_id: webhook_id.clone(),
                tenant_id: tenant_id.clone(),
                reason: Some("failing since 2026-12-04T10:00:00Z".into()),
            })),
            CoreEvent::Webhook(WebhookEvent::Enabled(WebhookEnabled {
                webhook_id: webhook_id.clone(),
                tenant_id: tenant_id.clone(),
            })),
            CoreEvent::Webhook(WebhookEvent::Deleted(WebhookDeleted {
                webhook_id,
                tenant_id,
            })),
        ]);
    }
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
    events
}

/// What the decoder does with a record once the registry named its schema: every schema
/// maps back to the event it was written from, and each event type has its own name.
#[test]
fn every_event_decodes_to_the_event_it_was_written_from() {
    struct AsWritten;
    impl RecordVisitor<'_> for AsWritten {
        type Output = (&'static str, apache_avro::types::Value);
        fn visit<T: AvroRecord + Sync>(self, record: &T) -> Self::Output {
            (T::FULL_NAME, written(record))
        }
    }
    let events = every_event();
    let mut types_by_schema = std::collections::HashMap::new();
    for event in &events {
        let (name, value) = event.visit(AsWritten);
        let decoded = event_from_value(name, &value).expect("a known schema");
        assert_eq!(&decoded, event);
        assert_eq!(CoreEvent::stage_of(event.event_type()), Some(event.stage()));
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
    let mut declared: Vec<&str> = CoreEvent::types().collect();
    declared.sort_unstable();
    assert_eq!(types, declared, "a sample of every declared event type");
    for t in &types {
        let what = t
            .strip_prefix("core.plugin.")
            .or_else(|| t.strip_prefix("core.tenant."))
            .or_else(|| t.strip_prefix("core.registry."))
            .or_else(|| t.strip_prefix("core.webhook."))
            .unwrap_or_else(|| panic!("{t} is not core.<plugin|tenant|registry|webhook>.*"));
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
