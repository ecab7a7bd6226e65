//! The tenant lifecycle, rule by rule: given past events, when a command, then events or a
//! rejection.

use event_schemas::CoreEvent;
use event_schemas::events::{
    PluginDisabled, PluginEnabled, PluginEvent, PluginInstalled, PluginRegistered, TenantDeleted,
    TenantEvent, TenantPluginConfigured, TenantPluginDisabled, TenantPluginEnabled,
    TenantReactivated, TenantSuspended,
};
use serde_json::{Value, json};

use super::*;
use crate::plugin::PluginId;
use crate::testing::given;
use crate::{AggregateKey, Command, RejectionKind};

fn acme() -> TenantId {
    TenantId(uuid::Uuid::from_u128(
        0x0190_c2a0_0000_7000_8000_0000_0000_0001,
    ))
}

fn to_acme(command: TenantCommand) -> Command {
    Command::Tenant {
        id: acme(),
        command,
    }
}

fn create() -> TenantCommand {
    TenantCommand::Create {
        slug: TenantSlug::parse("acme").expect("slug"),
        name: TenantName::parse("Acme").expect("name"),
    }
}

fn suspend(reason: Option<&str>) -> TenantCommand {
    TenantCommand::Suspend {
        reason: reason.map(str::to_owned),
    }
}

/// The log after `commands`, each of which must be accepted.
fn history(commands: &[TenantCommand]) -> Vec<CoreEvent> {
    history_among(&[], commands)
}

/// The log after `commands`, each of which must be accepted, while the rest of the platform
/// has logged `elsewhere` (the plugins' lifecycles).
fn history_among(elsewhere: &[CoreEvent], commands: &[TenantCommand]) -> Vec<CoreEvent> {
    let mut log = Vec::new();
    for command in commands {
        let command = to_acme(command.clone());
        let events = given(&command, log.clone())
            .elsewhere(elsewhere.to_vec())
            .when(&command)
            .unwrap_or_else(|r| panic!("{command:?} refused: {r}"));
        log.extend(events);
    }
    log
}

fn active() -> Vec<TenantCommand> {
    vec![create()]
}

fn suspended() -> Vec<TenantCommand> {
    vec![create(), suspend(None)]
}

fn deleted() -> Vec<TenantCommand> {
    vec![create(), TenantCommand::Delete]
}

/// `command` after `past`: the events it records, or why not.
fn decide_after(
    past: &[TenantCommand],
    command: TenantCommand,
) -> Result<Vec<CoreEvent>, Rejection> {
    decide_among(&[], past, command)
}

/// `command` after `past`, while the rest of the platform has logged `elsewhere`.
fn decide_among(
    elsewhere: &[CoreEvent],
    past: &[TenantCommand],
    command: TenantCommand,
) -> Result<Vec<CoreEvent>, Rejection> {
    let command = to_acme(command);
    given(&command, history_among(elsewhere, past))
        .elsewhere(elsewhere.to_vec())
        .when(&command)
}

fn refused(past: &[TenantCommand], command: TenantCommand) -> Rejection {
    refused_among(&[], past, command)
}

fn refused_among(
    elsewhere: &[CoreEvent],
    past: &[TenantCommand],
    command: TenantCommand,
) -> Rejection {
    decide_among(elsewhere, past, command.clone())
        .map(|events| panic!("{command:?} accepted with {events:?}"))
        .unwrap_err()
}

fn state(past: &[TenantCommand]) -> Tenant {
    state_among(&[], past)
}

fn state_among(elsewhere: &[CoreEvent], past: &[TenantCommand]) -> Tenant {
    history_among(elsewhere, past)
        .iter()
        .fold(Tenant::default(), |t, e| match e {
            CoreEvent::Tenant(e) => t.evolve(e),
            _ => t,
        })
}

fn id() -> String {
    acme().to_string()
}

/// What an ACTIVE tenant accepts, as a refusal lists it.
fn active_allows() -> Vec<String> {
    command_types(state(&active()).allowed_commands())
        .into_iter()
        .map(str::to_owned)
        .collect()
}

#[test]
fn suspending_an_active_tenant_records_it_with_the_reason() {
    let events = decide_after(&active(), suspend(Some("  unpaid invoices "))).expect("accepted");
    assert_eq!(
        events,
        vec![CoreEvent::Tenant(TenantEvent::Suspended(TenantSuspended {
            tenant_id: id(),
            reason: Some("unpaid invoices".into()),
        }))]
    );
    assert_eq!(state(&suspended()).status(), Some(TenantStatus::Suspended));
}

#[test]
fn suspending_without_a_reason_records_none() {
    let events = decide_after(&active(), suspend(None)).expect("accepted");
    assert_eq!(
        events,
        vec![CoreEvent::Tenant(TenantEvent::Suspended(TenantSuspended {
            tenant_id: id(),
            reason: None,
        }))]
    );
}

#[test]
fn a_blank_reason_is_invalid() {
    let rejection = refused(&active(), suspend(Some("   ")));
    assert_eq!(rejection.kind(), RejectionKind::Invalid);
    assert_eq!(rejection.errors[0].pointer, "/reason");
}

#[test]
fn reactivating_a_suspended_tenant_makes_it_active() {
    let events = decide_after(&suspended(), TenantCommand::Reactivate).expect("accepted");
    assert_eq!(
        events,
        vec![CoreEvent::Tenant(TenantEvent::Reactivated(
            TenantReactivated { tenant_id: id() }
        ))]
    );
    let mut commands = suspended();
    commands.push(TenantCommand::Reactivate);
    assert_eq!(state(&commands).status(), Some(TenantStatus::Active));
    // Active again, it may be suspended again.
    commands.push(suspend(Some("again")));
    assert_eq!(state(&commands).status(), Some(TenantStatus::Suspended));
}

#[test]
fn an_active_or_suspended_tenant_can_be_deleted() {
    for past in [active(), suspended()] {
        let events = decide_after(&past, TenantCommand::Delete).expect("accepted");
        assert_eq!(
            events,
            vec![CoreEvent::Tenant(TenantEvent::Deleted(TenantDeleted {
                tenant_id: id()
            }))]
        );
    }
    assert_eq!(state(&deleted()).status(), Some(TenantStatus::Deleted));
    let mut commands = suspended();
    commands.push(TenantCommand::Delete);
    assert_eq!(state(&commands).status(), Some(TenantStatus::Deleted));
}

#[test]
fn the_lifecycle_table_lists_what_each_status_allows() {
    let allowed = |past: &[TenantCommand]| command_types(state(past).allowed_commands());
    assert_eq!(allowed(&[]), vec!["tenant.create"]);
    assert_eq!(
        allowed(&active()),
        vec![
            "tenant.suspend",
            "tenant.delete",
            "tenant.enable-plugin",
            "tenant.disable-plugin",
            "tenant.configure-plugin"
        ]
    );
    assert_eq!(
        allowed(&suspended()),
        vec!["tenant.reactivate", "tenant.delete"]
    );
    assert!(allowed(&deleted()).is_empty());
}

#[test]
fn every_command_but_create_on_an_unknown_tenant_is_not_found() {
    for command in [
        suspend(None),
        TenantCommand::Reactivate,
        TenantCommand::Delete,
    ] {
        let rejection = refused(&[], command.clone());
        assert_eq!(rejection.kind(), RejectionKind::NotFound, "{command:?}");
        assert_eq!(rejection.allowed, vec!["tenant.create"]);
        assert!(rejection.detail.contains(&id()), "{rejection:?}");
    }
}

#[test]
fn creating_a_tenant_twice_is_a_conflict_naming_its_status() {
    let rejection = refused(&active(), create());
    assert_eq!(rejection.kind(), RejectionKind::Conflict);
    assert_eq!(rejection.reason, Reason::TenantAlreadyExists);
    assert!(rejection.detail.contains("ACTIVE"), "{rejection:?}");
    assert_eq!(rejection.allowed, active_allows());
}

#[test]
fn transitions_an_active_tenant_does_not_allow_are_conflicts() {
    let rejection = refused(&active(), TenantCommand::Reactivate);
    assert_eq!(rejection.kind(), RejectionKind::Conflict);
    assert!(rejection.detail.contains("ACTIVE"), "{rejection:?}");
    assert!(
        rejection.detail.contains("tenant.reactivate"),
        "{rejection:?}"
    );
    assert_eq!(rejection.allowed, active_allows());
}

#[test]
fn transitions_a_suspended_tenant_does_not_allow_are_conflicts() {
    for command in [suspend(None), create()] {
        let rejection = refused(&suspended(), command.clone());
        assert_eq!(rejection.kind(), RejectionKind::Conflict, "{command:?}");
        assert!(rejection.detail.contains("SUSPENDED"), "{rejection:?}");
        assert_eq!(
            rejection.allowed,
            vec!["tenant.reactivate", "tenant.delete"]
        );
    }
}

#[test]
fn nothing_is_allowed_after_deletion() {
    for command in [
        create(),
        suspend(None),
        TenantCommand::Reactivate,
        TenantCommand::Delete,
    ] {
        let rejection = refused(&deleted(), command.clone());
        assert_eq!(rejection.kind(), RejectionKind::Conflict, "{command:?}");
        assert!(rejection.detail.contains("DELETED"), "{rejection:?}");
        assert!(rejection.allowed.is_empty(), "{rejection:?}");
    }
}

#[test]
fn every_command_has_its_type_and_survives_its_record() {
    let types: Vec<&str> = TenantCommandKind::ALL
        .iter()
        .map(|k| k.command_type())
        .collect();
    assert_eq!(
        types,
        vec![
            "tenant.create",
            "tenant.suspend",
            "tenant.reactivate",
            "tenant.delete",
            "tenant.enable-plugin",
            "tenant.disable-plugin",
            "tenant.configure-plugin"
        ]
    );
    for command in [
        create(),
        suspend(Some("unpaid")),
        suspend(None),
        TenantCommand::Reactivate,
        TenantCommand::Delete,
        enable(Some(json!({"stages": ["lead"]}))),
        enable(None),
        disable(),
        configure(json!({"stages": ["won"]})),
    ] {
        let kind = command.kind();
        let command = to_acme(command);
        assert_eq!(command.command_type(), kind.command_type());
        let back = Command::from_record(&command.aggregate_key().to_string(), &command.payload())
            .expect("parses");
        assert_eq!(back, command);
    }
    // A suspension recorded without a reason still reads.
    let back = Command::from_record(&format!("tenant:{}", id()), r#"{"command":"suspend"}"#)
        .expect("parses");
    assert_eq!(back, to_acme(suspend(None)));
    // So does an enablement without a configuration.
    let back = Command::from_record(
        &format!("tenant:{}", id()),
        r#"{"command":"enable-plugin","plugin":"crm"}"#,
    )
    .expect("parses");
    assert_eq!(back, to_acme(enable(None)));
}

#[test]
fn every_tenant_event_belongs_to_its_tenant() {
    let mut commands = suspended();
    commands.extend([TenantCommand::Reactivate, TenantCommand::Delete]);
    let log = history(&commands);
    assert_eq!(log.len(), 4);
    for event in &log {
        assert_eq!(
            AggregateKey::of_event(event).expect("a key"),
            AggregateKey::Tenant(acme())
        );
        assert_eq!(event.tenant_id(), Some(id().as_str()));
    }
    let types: Vec<&str> = log.iter().map(CoreEvent::event_type).collect();
    assert_eq!(
        types,
        vec![
            "core.tenant.created",
            "core.tenant.suspended",
            "core.tenant.reactivated",
            "core.tenant.deleted"
        ]
    );
}

// Tenant plugins (spec 004 US-006).

fn crm() -> PluginId {
    PluginId::parse("crm").expect("plugin id")
}

/// CRM's configuration schema: deal stages, and an optional currency.
fn crm_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "stages": {"type": "array", "items": {"type": "string"}, "minItems": 1},
            "currency": {"enum": ["EUR", "USD"]}
        },
        "required": ["stages"],
        "additionalProperties": false
    })
}

/// The global log of plugin `crm` at 1.2.0, with `schema` as its configuration schema, up to
/// `status`.
fn crm_log(schema: Option<Value>, status: &str) -> Vec<CoreEvent> {
    let mut manifest = json!({"id": "crm", "name": "CRM", "version": "1.2.0"});
    if let Some(schema) = schema {
        manifest["configuration"] = json!({"schema": schema});
    }
    let version = || "1.2.0".to_owned();
    let mut log = vec![PluginEvent::Registered(PluginRegistered {
        plugin_id: "crm".into(),
        name: "CRM".into(),
        version: version(),
        description: None,
        manifest: manifest.to_string(),
    })];
    let installed = PluginEvent::Installed(PluginInstalled {
        plugin_id: "crm".into(),
        version: version(),
    });
    let enabled = PluginEvent::Enabled(PluginEnabled {
        plugin_id: "crm".into(),
        version: version(),
    });
    let disabled = PluginEvent::Disabled(PluginDisabled {
        plugin_id: "crm".into(),
        version: version(),
        reason: None,
    });
    match status {
        "REGISTERED" => {}
        "INSTALLED" => log.push(installed),
        "ACTIVE" => log.extend([installed, enabled]),
        "DISABLED" => log.extend([installed, enabled, disabled]),
        other => panic!("no log for {other}"),
    }
    log.into_iter().map(CoreEvent::from).collect()
}

/// CRM ACTIVE with its configuration schema.
fn crm_active() -> Vec<CoreEvent> {
    crm_log(Some(crm_schema()), "ACTIVE")
}

fn enable(configuration: Option<Value>) -> TenantCommand {
    TenantCommand::EnablePlugin {
        plugin: crm(),
        configuration,
    }
}

fn disable() -> TenantCommand {
    TenantCommand::DisablePlugin { plugin: crm() }
}

fn configure(configuration: Value) -> TenantCommand {
    TenantCommand::ConfigurePlugin {
        plugin: crm(),
        configuration,
    }
}

fn stages(names: &[&str]) -> Value {
    json!({ "stages": names })
}

/// The configuration an enablement or configuration event records, as JSON.
fn recorded_configuration(events: &[CoreEvent]) -> Value {
    let text = match events {
        [CoreEvent::Tenant(TenantEvent::PluginEnabled(e))] => &e.configuration,
        [CoreEvent::Tenant(TenantEvent::PluginConfigured(e))] => &e.configuration,
        other => panic!("expected one enablement or configuration, got {other:?}"),
    };
    serde_json::from_str(text).expect("the configuration is recorded as JSON")
}

#[test]
fn enabling_an_active_plugin_records_its_version_and_configuration() {
    let events = decide_among(
        &crm_active(),
        &active(),
        enable(Some(stages(&["lead", "won"]))),
    )
    .expect("accepted");
    assert_eq!(
        events,
        vec![CoreEvent::Tenant(TenantEvent::PluginEnabled(
            TenantPluginEnabled {
                tenant_id: id(),
                plugin_id: "crm".into(),
                plugin_version: "1.2.0".into(),
                configuration: r#"{"stages":["lead","won"]}"#.into(),
            }
        ))]
    );
    let tenant = state_among(&crm_active(), &[create(), enable(Some(stages(&["lead"])))]);
    assert_eq!(
        tenant.plugin(&crm()),
        Some(&TenantPlugin {
            enabled: true,
            configuration: stages(&["lead"]),
        })
    );
}

#[test]
fn an_invalid_configuration_is_refused_with_every_error_at_once() {
    let bad = json!({"stages": [1, "won"], "currency": "GBP", "colour": "red"});
    for command in [enable(Some(bad.clone())), enable(None)] {
        let rejection = refused_among(&crm_active(), &active(), command.clone());
        assert_eq!(rejection.kind(), RejectionKind::Invalid, "{command:?}");
        assert!(
            rejection
                .errors
                .iter()
                .all(|e| e.pointer.starts_with("/configuration")),
            "{rejection:?}"
        );
        if command == enable(None) {
            // `{}` lacks the required stages.
            assert_eq!(rejection.errors.len(), 1, "{rejection:?}");
            assert_eq!(rejection.errors[0].pointer, "/configuration");
        }
    }
    let rejection = refused_among(&crm_active(), &active(), enable(Some(bad)));
    let pointers: Vec<&str> = rejection
        .errors
        .iter()
        .map(|e| e.pointer.as_str())
        .collect();
    for expected in [
        "/configuration/stages/0",
        "/configuration/currency",
        "/configuration",
    ] {
        assert!(pointers.contains(&expected), "{expected}: {rejection:?}");
    }
}

#[test]
fn a_plugin_without_a_configuration_schema_accepts_only_an_object() {
    let plain = crm_log(None, "ACTIVE");
    let events = decide_among(&plain, &active(), enable(None)).expect("accepted");
    assert_eq!(recorded_configuration(&events), json!({}));
    let events =
        decide_among(&plain, &active(), enable(Some(json!({"any": 1})))).expect("accepted");
    assert_eq!(recorded_configuration(&events), json!({"any": 1}));
    for not_an_object in [json!([1, 2]), json!("text"), json!(null)] {
        let rejection = refused_among(&plain, &active(), enable(Some(not_an_object)));
        assert_eq!(rejection.kind(), RejectionKind::Invalid);
        assert_eq!(rejection.errors[0].pointer, "/configuration");
    }
}

#[test]
fn only_a_globally_active_plugin_can_be_enabled() {
    for status in ["REGISTERED", "INSTALLED", "DISABLED"] {
        let elsewhere = crm_log(Some(crm_schema()), status);
        let rejection = refused_among(&elsewhere, &active(), enable(Some(stages(&["lead"]))));
        assert_eq!(rejection.kind(), RejectionKind::Conflict, "{status}");
        assert!(rejection.detail.contains(status), "{rejection:?}");
        assert!(rejection.detail.contains("crm"), "{rejection:?}");
    }
}

#[test]
fn enabling_an_unregistered_plugin_is_not_found() {
    let rejection = refused(&active(), enable(Some(stages(&["lead"]))));
    assert_eq!(rejection.kind(), RejectionKind::NotFound);
    assert!(rejection.detail.contains("crm"), "{rejection:?}");
}

#[test]
fn enabling_an_enabled_plugin_is_a_conflict() {
    let past = [create(), enable(Some(stages(&["lead"])))];
    let rejection = refused_among(&crm_active(), &past, enable(Some(stages(&["won"]))));
    assert_eq!(rejection.kind(), RejectionKind::Conflict);
    assert_eq!(rejection.reason, Reason::PluginAlreadyEnabled);
}

#[test]
fn disabling_keeps_the_configuration_for_the_next_enablement() {
    let past = [create(), enable(Some(stages(&["lead", "won"])))];
    let events = decide_among(&crm_active(), &past, disable()).expect("accepted");
    assert_eq!(
        events,
        vec![CoreEvent::Tenant(TenantEvent::PluginDisabled(
            TenantPluginDisabled {
                tenant_id: id(),
                plugin_id: "crm".into(),
            }
        ))]
    );
    let mut past = past.to_vec();
    past.push(disable());
    assert_eq!(
        state_among(&crm_active(), &past).plugin(&crm()),
        Some(&TenantPlugin {
            enabled: false,
            configuration: stages(&["lead", "won"]),
        })
    );
    // Enabled again without a configuration: the kept one, validated again.
    let events = decide_among(&crm_active(), &past, enable(None)).expect("accepted");
    assert_eq!(recorded_configuration(&events), stages(&["lead", "won"]));
    // With one, the new one.
    let events =
        decide_among(&crm_active(), &past, enable(Some(stages(&["new"])))).expect("accepted");
    assert_eq!(recorded_configuration(&events), stages(&["new"]));
}

#[test]
fn configuring_an_enabled_plugin_replaces_its_configuration() {
    let past = [create(), enable(Some(stages(&["lead"])))];
    let events =
        decide_among(&crm_active(), &past, configure(stages(&["lead", "won"]))).expect("accepted");
    assert_eq!(
        events,
        vec![CoreEvent::Tenant(TenantEvent::PluginConfigured(
            TenantPluginConfigured {
                tenant_id: id(),
                plugin_id: "crm".into(),
                configuration: r#"{"stages":["lead","won"]}"#.into(),
            }
        ))]
    );
    let mut commands = past.to_vec();
    commands.push(configure(stages(&["won"])));
    let tenant = state_among(&crm_active(), &commands);
    assert_eq!(
        tenant.plugin(&crm()).map(|p| &p.configuration),
        Some(&stages(&["won"]))
    );

    let rejection = refused_among(&crm_active(), &past, configure(json!({"stages": []})));
    assert_eq!(rejection.kind(), RejectionKind::Invalid);
    assert_eq!(rejection.errors.len(), 1, "{rejection:?}");
    assert_eq!(rejection.errors[0].pointer, "/configuration/stages");
}

#[test]
fn a_plugin_the_tenant_has_not_enabled_cannot_be_disabled_or_configured() {
    let enabled_then_disabled = [create(), enable(Some(stages(&["lead"]))), disable()];
    for past in [&active()[..], &enabled_then_disabled[..]] {
        for command in [disable(), configure(stages(&["won"]))] {
            let rejection = refused_among(&crm_active(), past, command.clone());
            assert_eq!(rejection.kind(), RejectionKind::Conflict, "{command:?}");
            assert_eq!(rejection.reason, Reason::PluginNotEnabled);
            assert!(
                rejection.detail.contains(command.kind().command_type()),
                "{rejection:?}"
            );
        }
    }
}

#[test]
fn a_suspended_or_deleted_tenant_changes_none_of_its_plugins() {
    let enabled = [create(), enable(Some(stages(&["lead"])))];
    let mut suspended = enabled.to_vec();
    suspended.push(suspend(None));
    let mut deleted = enabled.to_vec();
    deleted.push(TenantCommand::Delete);
    for (past, status, allowed) in [
        (
            &suspended,
            "SUSPENDED",
            vec!["tenant.reactivate", "tenant.delete"],
        ),
        (&deleted, "DELETED", vec![]),
    ] {
        for command in [
            enable(Some(stages(&["won"]))),
            disable(),
            configure(stages(&["won"])),
        ] {
            let rejection = refused_among(&crm_active(), past, command.clone());
            assert_eq!(rejection.kind(), RejectionKind::Conflict, "{command:?}");
            assert!(rejection.detail.contains(status), "{rejection:?}");
            assert_eq!(rejection.allowed, allowed, "{command:?}");
        }
        // The plugin stays as it was.
        assert_eq!(
            state_among(&crm_active(), past).plugin(&crm()),
            Some(&TenantPlugin {
                enabled: true,
                configuration: stages(&["lead"]),
            })
        );
    }
}

#[test]
fn plugin_commands_to_an_unknown_tenant_are_not_found() {
    for command in [enable(None), disable(), configure(stages(&["won"]))] {
        let rejection = refused_among(&crm_active(), &[], command.clone());
        assert_eq!(rejection.kind(), RejectionKind::NotFound, "{command:?}");
        assert_eq!(rejection.allowed, vec!["tenant.create"]);
    }
}

#[test]
fn tenant_plugin_events_belong_to_the_tenant() {
    let commands = [
        create(),
        enable(Some(stages(&["lead"]))),
        configure(stages(&["won"])),
        disable(),
    ];
    let log = history_among(&crm_active(), &commands);
    for event in &log {
        assert_eq!(
            AggregateKey::of_event(event).expect("a key"),
            AggregateKey::Tenant(acme())
        );
    }
    let types: Vec<&str> = log.iter().map(CoreEvent::event_type).collect();
    assert_eq!(
        types,
        vec![
            "core.tenant.created",
            "core.tenant.plugin-enabled",
            "core.tenant.plugin-configured",
            "core.tenant.plugin-disabled"
        ]
    );
}
