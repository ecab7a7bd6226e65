//! The plugin lifecycle, rule by rule: given past events, when a command, then events or a
//! rejection.

use event_schemas::CoreEvent;
use event_schemas::events::{
    PluginDisabled, PluginEnabled, PluginEvent, PluginInstallFailed, PluginInstallRequested,
    PluginInstallStepCompleted, PluginInstalled, PluginUninstallRequested, PluginUninstalled,
    PluginUpdateFailed, PluginUpdated,
};
use serde_json::json;

use super::*;
use crate::testing::given;
use crate::{AggregateKey, AggregateState, Command, RejectionKind, evolve};

fn crm() -> PluginId {
    PluginId::parse("crm").expect("id")
}

fn manifest(version: &str) -> Manifest {
    Manifest::parse(json!({"id": "crm", "name": "CRM", "version": version})).expect("manifest")
}

fn to_crm(command: PluginCommand) -> Command {
    Command::Plugin { id: crm(), command }
}

fn register(version: &str) -> PluginCommand {
    PluginCommand::Register {
        manifest: manifest(version),
    }
}

fn update(version: &str) -> PluginCommand {
    PluginCommand::Update {
        manifest: manifest(version),
    }
}

fn step(step: InstallStep) -> PluginCommand {
    PluginCommand::CompleteInstallStep { step }
}

/// The log after `commands`, each of which must be accepted.
fn history(commands: &[PluginCommand]) -> Vec<CoreEvent> {
    let mut log = Vec::new();
    for command in commands {
        let command = to_crm(command.clone());
        let events = given(&command, log.clone())
            .when(&command)
            .unwrap_or_else(|r| panic!("{command:?} refused: {r}"));
        log.extend(events);
    }
    log
}

fn registered() -> Vec<PluginCommand> {
    vec![register("1.2.0")]
}

fn installing() -> Vec<PluginCommand> {
    let mut commands = registered();
    commands.push(PluginCommand::Install);
    commands
}

fn installed() -> Vec<PluginCommand> {
    let mut commands = installing();
    commands.extend(InstallStep::ALL.map(step));
    commands
}

fn active() -> Vec<PluginCommand> {
    let mut commands = installed();
    commands.push(PluginCommand::Enable);
    commands
}

fn disabled() -> Vec<PluginCommand> {
    let mut commands = active();
    commands.push(PluginCommand::Disable { reason: None });
    commands
}

fn with(mut commands: Vec<PluginCommand>, more: PluginCommand) -> Vec<PluginCommand> {
    commands.push(more);
    commands
}

fn when(past: &[PluginCommand], command: PluginCommand) -> Result<Vec<CoreEvent>, Rejection> {
    let command = to_crm(command);
    given(&command, history(past)).when(&command)
}

fn plugin_after(log: &[CoreEvent]) -> Plugin {
    let initial = AggregateState::initial(&AggregateKey::Plugin(crm()));
    match log.iter().fold(initial, evolve) {
        AggregateState::Plugin(plugin) => plugin,
        other => panic!("not a plugin: {other:?}"),
    }
}

fn status_after(commands: &[PluginCommand]) -> Option<PluginStatus> {
    plugin_after(&history(commands)).status()
}

fn plugin_events(events: Vec<CoreEvent>) -> Vec<PluginEvent> {
    events
        .into_iter()
        .map(|e| match e {
            CoreEvent::Plugin(e) => e,
            other => panic!("not a plugin event: {other:?}"),
        })
        .collect()
}

/// A refusal for arriving in the wrong state: a conflict naming the status and listing exactly
/// the commands the state accepts.
fn assert_refused(rejection: &Rejection, status: PluginStatus, allowed: &[PluginCommandKind]) {
    assert_eq!(rejection.kind(), RejectionKind::Conflict, "{rejection:?}");
    assert!(
        rejection.detail.contains(status.as_str()),
        "the detail names {}: {rejection:?}",
        status.as_str()
    );
    let expected: Vec<String> = allowed
        .iter()
        .map(|k| k.command_type().to_owned())
        .collect();
    assert_eq!(rejection.allowed, expected);
    for name in &expected {
        assert!(rejection.detail.contains(name.as_str()), "{rejection:?}");
    }
}

// ── install ──────────────────────────────────────────────────────────────────────────────────

#[test]
fn installing_a_registered_plugin_starts_the_install() {
    let events = when(&registered(), PluginCommand::Install).expect("accepted");
    assert_eq!(
        plugin_events(events),
        [PluginEvent::InstallRequested(PluginInstallRequested {
            plugin_id: "crm".into(),
            version: "1.2.0".into(),
        })]
    );
    assert_eq!(status_after(&installing()), Some(PluginStatus::Installing));
}

#[test]
fn install_steps_complete_in_order_and_the_last_one_installs_the_plugin() {
    let mut past = installing();
    for (i, s) in InstallStep::ALL.into_iter().enumerate() {
        let events = plugin_events(when(&past, step(s)).expect("accepted"));
        let completed = PluginEvent::InstallStepCompleted(PluginInstallStepCompleted {
            plugin_id: "crm".into(),
            version: "1.2.0".into(),
            step: s.as_str().into(),
        });
        if i + 1 < InstallStep::ALL.len() {
            assert_eq!(events, [completed]);
        } else {
            let installed = PluginEvent::Installed(PluginInstalled {
                plugin_id: "crm".into(),
                version: "1.2.0".into(),
            });
            assert_eq!(events, [completed, installed]);
        }
        past.push(step(s));
        let expected = if i + 1 < InstallStep::ALL.len() {
            PluginStatus::Installing
        } else {
            PluginStatus::Installed
        };
        assert_eq!(status_after(&past), Some(expected), "after {s}");
    }
}

#[test]
fn an_install_step_cannot_skip_ahead() {
    let rejection = when(&installing(), step(InstallStep::MigrationsApplied)).expect_err("refused");
    assert_eq!(rejection.kind(), RejectionKind::Conflict);
    assert!(rejection.detail.contains("INSTALLING"), "{rejection:?}");
    assert_eq!(
        rejection.allowed,
        ["plugin.complete-install-step", "plugin.fail-install"]
    );
    assert!(
        rejection.detail.contains("DEPENDENCIES_CHECKED"),
        "names the step that must come first: {rejection:?}"
    );
}

#[test]
fn an_install_step_completes_once() {
    let past = with(installing(), step(InstallStep::DependenciesChecked));
    let rejection = when(&past, step(InstallStep::DependenciesChecked)).expect_err("refused");
    assert_eq!(rejection.kind(), RejectionKind::Conflict);
    assert_eq!(rejection.reason, Reason::InstallStepAlreadyCompleted);
}

#[test]
fn a_failed_install_leaves_the_plugin_registered_and_may_be_retried() {
    let past = with(installing(), step(InstallStep::DependenciesChecked));
    let failure = PluginCommand::FailInstall {
        step: InstallStep::PermissionsReserved,
        reason: "  permission crm.deals.read is taken by billing ".into(),
    };
    let events = plugin_events(when(&past, failure.clone()).expect("accepted"));
    assert_eq!(
        events,
        [PluginEvent::InstallFailed(PluginInstallFailed {
            plugin_id: "crm".into(),
            version: "1.2.0".into(),
            step: "PERMISSIONS_RESERVED".into(),
            error: "permission crm.deals.read is taken by billing".into(),
        })]
    );
    let failed = with(past, failure);
    assert_eq!(status_after(&failed), Some(PluginStatus::Registered));

    // The retry starts from the first step again: nothing of the failed attempt is kept.
    let retrying = with(failed, PluginCommand::Install);
    assert!(when(&retrying, step(InstallStep::PermissionsReserved)).is_err());
    let events = when(&retrying, step(InstallStep::DependenciesChecked)).expect("accepted");
    assert_eq!(events.len(), 1);
}

#[test]
fn an_install_cannot_fail_at_a_step_that_completed_nor_without_a_reason() {
    let past = with(installing(), step(InstallStep::DependenciesChecked));
    let rejection = when(
        &past,
        PluginCommand::FailInstall {
            step: InstallStep::DependenciesChecked,
            reason: "boom".into(),
        },
    )
    .expect_err("refused");
    assert_eq!(rejection.kind(), RejectionKind::Conflict);

    let rejection = when(
        &past,
        PluginCommand::FailInstall {
            step: InstallStep::PermissionsReserved,
            reason: " \n".into(),
        },
    )
    .expect_err("refused");
    assert_eq!(rejection.kind(), RejectionKind::Invalid);
    assert_eq!(rejection.errors[0].pointer, "/reason");
}

#[test]
fn install_is_refused_outside_registered_with_the_allowed_commands() {
    let rejection = when(&installed(), PluginCommand::Install).expect_err("refused");
    assert_refused(
        &rejection,
        PluginStatus::Installed,
        &[
            PluginCommandKind::Enable,
            PluginCommandKind::Update,
            PluginCommandKind::Uninstall,
        ],
    );
    let rejection = when(&installing(), PluginCommand::Install).expect_err("refused");
    assert_refused(
        &rejection,
        PluginStatus::Installing,
        &[
            PluginCommandKind::CompleteInstallStep,
            PluginCommandKind::FailInstall,
        ],
    );
}

#[test]
fn saga_steps_are_refused_when_no_saga_runs() {
    let rejection = when(&registered(), step(InstallStep::DependenciesChecked)).expect_err("no");
    assert_refused(
        &rejection,
        PluginStatus::Registered,
        &[PluginCommandKind::Install],
    );
    let rejection = when(&active(), PluginCommand::CompleteUpdate).expect_err("no");
    assert_refused(
        &rejection,
        PluginStatus::Active,
        &[PluginCommandKind::Disable, PluginCommandKind::Update],
    );
    let rejection = when(&disabled(), PluginCommand::CompleteUninstall).expect_err("no");
    assert_refused(
        &rejection,
        PluginStatus::Disabled,
        &[
            PluginCommandKind::Enable,
            PluginCommandKind::Update,
            PluginCommandKind::Uninstall,
        ],
    );
}

// ── enable and disable ───────────────────────────────────────────────────────────────────────

#[test]
fn enabling_an_installed_or_disabled_plugin_activates_it() {
    let enabled = [PluginEvent::Enabled(PluginEnabled {
        plugin_id: "crm".into(),
        version: "1.2.0".into(),
    })];
    for past in [installed(), disabled()] {
        let events = when(&past, PluginCommand::Enable).expect("accepted");
        assert_eq!(plugin_events(events), enabled);
        assert_eq!(
            status_after(&with(past, PluginCommand::Enable)),
            Some(PluginStatus::Active)
        );
    }
}

#[test]
fn enabling_an_active_or_registered_plugin_is_refused() {
    let rejection = when(&active(), PluginCommand::Enable).expect_err("refused");
    assert_refused(
        &rejection,
        PluginStatus::Active,
        &[PluginCommandKind::Disable, PluginCommandKind::Update],
    );
    let rejection = when(&registered(), PluginCommand::Enable).expect_err("refused");
    assert_refused(
        &rejection,
        PluginStatus::Registered,
        &[PluginCommandKind::Install],
    );
}

#[test]
fn disabling_an_active_plugin_records_the_reason_when_there_is_one() {
    let because = PluginCommand::Disable {
        reason: Some("dependency contacts was uninstalled".into()),
    };
    let events = when(&active(), because.clone()).expect("accepted");
    assert_eq!(
        plugin_events(events),
        [PluginEvent::Disabled(PluginDisabled {
            plugin_id: "crm".into(),
            version: "1.2.0".into(),
            reason: Some("dependency contacts was uninstalled".into()),
        })]
    );
    assert_eq!(
        status_after(&with(active(), because)),
        Some(PluginStatus::Disabled)
    );
    let events = when(&active(), PluginCommand::Disable { reason: None }).expect("accepted");
    assert!(matches!(
        plugin_events(events).as_slice(),
        [PluginEvent::Disabled(PluginDisabled { reason: None, .. })]
    ));
    let blank = when(
        &active(),
        PluginCommand::Disable {
            reason: Some(String::new()),
        },
    )
    .expect_err("refused");
    assert_eq!(blank.kind(), RejectionKind::Invalid);
}

#[test]
fn disabling_a_plugin_that_is_not_active_is_refused() {
    let rejection =
        when(&installed(), PluginCommand::Disable { reason: None }).expect_err("refused");
    assert_refused(
        &rejection,
        PluginStatus::Installed,
        &[
            PluginCommandKind::Enable,
            PluginCommandKind::Update,
            PluginCommandKind::Uninstall,
        ],
    );
}

// ── update ───────────────────────────────────────────────────────────────────────────────────

#[test]
fn an_update_to_a_greater_version_is_requested_and_keeps_the_status() {
    for (past, status) in [
        (installed(), PluginStatus::Installed),
        (active(), PluginStatus::Active),
        (disabled(), PluginStatus::Disabled),
    ] {
        let events = plugin_events(when(&past, update("1.3.0")).expect("accepted"));
        match events.as_slice() {
            [PluginEvent::UpdateRequested(e)] => {
                assert_eq!(e.plugin_id, "crm");
                assert_eq!(e.version, "1.2.0");
                assert_eq!(e.target_version, "1.3.0");
                let document: serde_json::Value = serde_json::from_str(&e.manifest).expect("JSON");
                assert_eq!(document["version"], "1.3.0");
            }
            other => panic!("expected an update request, got {other:?}"),
        }
        let plugin = plugin_after(&history(&with(past, update("1.3.0"))));
        assert_eq!(plugin.status(), Some(status));
        match plugin {
            Plugin::Known(known) => {
                assert_eq!(known.version, "1.2.0", "the old version stays in service");
                assert_eq!(
                    known.pending_update.map(|u| u.version).as_deref(),
                    Some("1.3.0")
                );
            }
            Plugin::Unknown => panic!("registered"),
        }
    }
}

#[test]
fn an_update_must_raise_the_version() {
    for version in ["1.2.0", "1.1.9", "1.2.0+build.7", "1.2.0-rc.1"] {
        let rejection = when(&active(), update(version)).expect_err(version);
        assert_eq!(rejection.kind(), RejectionKind::Conflict, "{version}");
        assert!(rejection.detail.contains(version), "{rejection:?}");
    }
}

#[test]
fn an_update_must_be_for_the_same_plugin() {
    let billing = Manifest::parse(json!({"id": "billing", "name": "Billing", "version": "9.0.0"}))
        .expect("manifest");
    let rejection =
        when(&active(), PluginCommand::Update { manifest: billing }).expect_err("refused");
    assert_eq!(rejection.kind(), RejectionKind::Invalid);
    assert_eq!(rejection.errors[0].pointer, "/id");
}

#[test]
fn while_an_update_runs_only_its_outcome_is_accepted() {
    let updating = with(active(), update("1.3.0"));
    for command in [
        PluginCommand::Disable { reason: None },
        update("1.4.0"),
        PluginCommand::Enable,
        PluginCommand::Uninstall { purge_data: false },
    ] {
        let rejection = when(&updating, command).expect_err("refused");
        assert_refused(
            &rejection,
            PluginStatus::Active,
            &[
                PluginCommandKind::CompleteUpdate,
                PluginCommandKind::FailUpdate,
            ],
        );
        assert!(rejection.detail.contains("1.3.0"), "{rejection:?}");
    }
}

#[test]
fn a_completed_update_replaces_version_and_manifest() {
    let updating = with(active(), update("1.3.0"));
    let events = plugin_events(when(&updating, PluginCommand::CompleteUpdate).expect("accepted"));
    assert_eq!(
        events,
        [PluginEvent::Updated(PluginUpdated {
            plugin_id: "crm".into(),
            previous_version: "1.2.0".into(),
            version: "1.3.0".into(),
            name: "CRM".into(),
            description: None,
            manifest: manifest("1.3.0").document().to_string(),
        })]
    );
    let updated = with(updating, PluginCommand::CompleteUpdate);
    assert_eq!(status_after(&updated), Some(PluginStatus::Active));
    // 1.3.0 is now the version in service, so it is no longer an update.
    assert!(when(&updated, update("1.3.0")).is_err());
    assert!(when(&updated, update("1.3.1")).is_ok());
}

#[test]
fn a_failed_update_keeps_the_previous_version() {
    let updating = with(disabled(), update("2.0.0"));
    let failure = PluginCommand::FailUpdate {
        reason: "hot swap failed: health check timed out".into(),
    };
    let events = plugin_events(when(&updating, failure.clone()).expect("accepted"));
    assert_eq!(
        events,
        [PluginEvent::UpdateFailed(PluginUpdateFailed {
            plugin_id: "crm".into(),
            version: "1.2.0".into(),
            target_version: "2.0.0".into(),
            error: "hot swap failed: health check timed out".into(),
        })]
    );
    let failed = with(updating, failure);
    let plugin = plugin_after(&history(&failed));
    assert_eq!(plugin.status(), Some(PluginStatus::Disabled));
    assert!(
        matches!(&plugin, Plugin::Known(k) if k.version == "1.2.0" && k.pending_update.is_none())
    );
    // The same update may be tried again.
    assert!(when(&failed, update("2.0.0")).is_ok());
}

// ── uninstall ────────────────────────────────────────────────────────────────────────────────

#[test]
fn uninstalling_a_disabled_or_installed_plugin_starts_the_uninstall() {
    for (past, purge_data) in [(disabled(), true), (installed(), false)] {
        let command = PluginCommand::Uninstall { purge_data };
        let events = when(&past, command.clone()).expect("accepted");
        assert_eq!(
            plugin_events(events),
            [PluginEvent::UninstallRequested(PluginUninstallRequested {
                plugin_id: "crm".into(),
                version: "1.2.0".into(),
                purge_data,
            })]
        );
        assert_eq!(
            status_after(&with(past, command)),
            Some(PluginStatus::Uninstalling)
        );
    }
}

#[test]
fn an_active_plugin_is_disabled_before_it_is_uninstalled() {
    let rejection =
        when(&active(), PluginCommand::Uninstall { purge_data: true }).expect_err("refused");
    assert_refused(
        &rejection,
        PluginStatus::Active,
        &[PluginCommandKind::Disable, PluginCommandKind::Update],
    );
}

#[test]
fn a_completed_uninstall_reports_whether_data_was_purged() {
    let uninstalling = with(disabled(), PluginCommand::Uninstall { purge_data: true });
    let rejection = when(&uninstalling, PluginCommand::Enable).expect_err("refused");
    assert_refused(
        &rejection,
        PluginStatus::Uninstalling,
        &[PluginCommandKind::CompleteUninstall],
    );
    let events = when(&uninstalling, PluginCommand::CompleteUninstall).expect("accepted");
    assert_eq!(
        plugin_events(events),
        [PluginEvent::Uninstalled(PluginUninstalled {
            plugin_id: "crm".into(),
            version: "1.2.0".into(),
            purge_data: true,
        })]
    );
    assert_eq!(
        status_after(&with(uninstalling, PluginCommand::CompleteUninstall)),
        Some(PluginStatus::Uninstalled)
    );
}

#[test]
fn an_uninstalled_plugin_may_only_be_registered_again_and_starts_over() {
    let uninstalled = with(
        with(installed(), PluginCommand::Uninstall { purge_data: false }),
        PluginCommand::CompleteUninstall,
    );
    let rejection = when(&uninstalled, PluginCommand::Install).expect_err("refused");
    assert_refused(
        &rejection,
        PluginStatus::Uninstalled,
        &[PluginCommandKind::Register],
    );
    // Even an older version: the plugin starts over.
    let again = with(uninstalled, register("1.0.0"));
    let plugin = plugin_after(&history(&again));
    assert_eq!(plugin.status(), Some(PluginStatus::Registered));
    assert!(matches!(&plugin, Plugin::Known(k) if k.version == "1.0.0"));
    let events = when(&again, PluginCommand::Install).expect("install again");
    assert!(matches!(
        plugin_events(events).as_slice(),
        [PluginEvent::InstallRequested(e)] if e.version == "1.0.0"
    ));
}

// ── what every refusal shares ────────────────────────────────────────────────────────────────

#[test]
fn a_command_to_an_unknown_plugin_is_not_found_and_names_register() {
    let rejection = when(&[], PluginCommand::Install).expect_err("refused");
    assert_eq!(rejection.kind(), RejectionKind::NotFound);
    assert_eq!(rejection.allowed, ["plugin.register"]);
}

#[test]
fn a_registration_must_be_keyed_by_its_manifest_id() {
    let command = Command::Plugin {
        id: PluginId::parse("billing").expect("id"),
        command: register("1.0.0"),
    };
    let rejection = given(&command, vec![]).when(&command).expect_err("refused");
    assert_eq!(rejection.kind(), RejectionKind::Invalid);
    assert_eq!(rejection.errors[0].pointer, "/id");
}

#[test]
fn the_allowed_commands_travel_with_the_rejection_and_only_when_there_are_some() {
    let rejection = when(&registered(), PluginCommand::Enable).expect_err("refused");
    let json = serde_json::to_value(&rejection).expect("serialises");
    assert_eq!(json["allowed"], json!(["plugin.install"]));
    let back: Rejection = serde_json::from_value(json).expect("deserialises");
    assert_eq!(back, rejection);

    let plain = Rejection::new(Reason::PluginNotActive, "d");
    let json = serde_json::to_value(&plain).expect("serialises");
    assert!(json.get("allowed").is_none(), "{json}");
    let back: Rejection = serde_json::from_value(json).expect("an absent list is empty");
    assert!(back.allowed.is_empty());
}

// ── commands and events at the edges ─────────────────────────────────────────────────────────

fn every_command() -> Vec<PluginCommand> {
    vec![
        register("1.2.0"),
        PluginCommand::Install,
        step(InstallStep::RoutesRegistered),
        PluginCommand::FailInstall {
            step: InstallStep::HealthChecked,
            reason: "unhealthy".into(),
        },
        PluginCommand::Enable,
        PluginCommand::Disable { reason: None },
        PluginCommand::Disable {
            reason: Some("dependency gone".into()),
        },
        update("1.3.0"),
        PluginCommand::CompleteUpdate,
        PluginCommand::FailUpdate {
            reason: "rollback".into(),
        },
        PluginCommand::Uninstall { purge_data: true },
        PluginCommand::CompleteUninstall,
    ]
}

#[test]
fn every_command_survives_its_record_and_has_its_own_type() {
    for command in every_command() {
        let command = to_crm(command);
        let back = Command::from_record(&command.aggregate_key().to_string(), &command.payload())
            .unwrap_or_else(|r| panic!("{command:?}: {r}"));
        assert_eq!(back, command);
    }
    let mut types: Vec<&str> = PluginCommandKind::ALL
        .iter()
        .map(|k| k.command_type())
        .collect();
    types.sort_unstable();
    types.dedup();
    assert_eq!(types.len(), PluginCommandKind::ALL.len());
    assert_eq!(
        to_crm(PluginCommand::CompleteUninstall).command_type(),
        "plugin.complete-uninstall"
    );
    // The saga-facing payloads are plain JSON a saga can write by hand.
    let payload = to_crm(step(InstallStep::MigrationsApplied)).payload();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&payload).expect("JSON"),
        json!({"command": "complete-install-step", "step": "MIGRATIONS_APPLIED"})
    );
    assert!(
        Command::from_record(
            "plugin:crm",
            r#"{"command":"complete-install-step","step":"NAPPING"}"#
        )
        .is_err()
    );
}

#[test]
fn every_lifecycle_event_belongs_to_its_plugin() {
    let log = history(&with(
        with(disabled(), PluginCommand::Uninstall { purge_data: false }),
        PluginCommand::CompleteUninstall,
    ));
    assert!(log.len() > 10);
    for event in &log {
        assert_eq!(
            AggregateKey::of_event(event).expect("keyed"),
            AggregateKey::Plugin(crm()),
            "{}",
            event.event_type()
        );
    }
}

mod dependencies {
    //! FR-004: dependencies with semver ranges, checked against the global view of the other
    //! plugins (`elsewhere`).

    use event_schemas::events::PluginRegistered;

    use super::*;

    /// The log of plugin `id` at `version`, registered with `dependencies` and taken through
    /// `statuses` (`installed`, `enabled`).
    fn other(
        id: &str,
        version: &str,
        dependencies: serde_json::Value,
        statuses: &[&str],
    ) -> Vec<CoreEvent> {
        let manifest =
            json!({"id": id, "name": id, "version": version, "dependencies": dependencies});
        let mut log = vec![CoreEvent::Plugin(PluginEvent::Registered(
            PluginRegistered {
                plugin_id: id.into(),
                name: id.into(),
                version: version.into(),
                description: None,
                manifest: manifest.to_string(),
            },
        ))];
        for status in statuses {
            let (plugin_id, version) = (id.to_owned(), version.to_owned());
            log.push(CoreEvent::Plugin(match *status {
                "installed" => PluginEvent::Installed(PluginInstalled { plugin_id, version }),
                "enabled" => PluginEvent::Enabled(PluginEnabled { plugin_id, version }),
                other => panic!("no such status in these tests: {other}"),
            }));
        }
        log
    }

    fn crm_needing(dependencies: serde_json::Value) -> PluginCommand {
        PluginCommand::Register {
            manifest: Manifest::parse(
                json!({"id": "crm", "name": "CRM", "version": "1.2.0", "dependencies": dependencies}),
            )
            .expect("manifest"),
        }
    }

    fn needs_contacts_and_mail() -> Vec<CoreEvent> {
        history(&[crm_needing(json!([
            {"plugin": "contacts", "version": "^2.1"},
            {"plugin": "mail", "version": ">=1.0.0"}
        ]))])
    }

    #[test]
    fn install_is_refused_with_every_missing_dependency() {
        let rejection = given(&to_crm(PluginCommand::Install), needs_contacts_and_mail())
            .elsewhere(other("contacts", "1.9.0", json!([]), &["installed"]))
            .when(&to_crm(PluginCommand::Install))
            .expect_err("refused");
        assert_eq!(rejection.kind(), RejectionKind::Conflict);
        let missing: Vec<(&str, &str)> = rejection
            .missing
            .iter()
            .map(|m| (m.plugin.as_str(), m.found.as_str()))
            .collect();
        assert_eq!(
            missing,
            [("contacts", "INSTALLED 1.9.0"), ("mail", "not registered")]
        );
        assert!(rejection.detail.contains("^2.1"), "{rejection:?}");
    }

    #[test]
    fn install_is_accepted_once_every_dependency_is_installed_in_range() {
        let elsewhere: Vec<CoreEvent> = other("contacts", "2.3.0", json!([]), &["installed"])
            .into_iter()
            .chain(other("mail", "1.0.0", json!([]), &["installed", "enabled"]))
            .collect();
        let events = given(&to_crm(PluginCommand::Install), needs_contacts_and_mail())
            .elsewhere(elsewhere)
            .when(&to_crm(PluginCommand::Install))
            .expect("accepted");
        assert!(matches!(
            plugin_events(events).as_slice(),
            [PluginEvent::InstallRequested(_)]
        ));
    }

    #[test]
    fn a_dependency_cycle_is_refused_and_named() {
        let past = history(&[crm_needing(json!([{"plugin": "contacts", "version": "*"}]))]);
        let rejection = given(&to_crm(PluginCommand::Install), past)
            .elsewhere(other(
                "contacts",
                "2.0.0",
                json!([{"plugin": "crm", "version": "^1"}]),
                &["installed"],
            ))
            .when(&to_crm(PluginCommand::Install))
            .expect_err("refused");
        assert_eq!(rejection.reason, Reason::DependencyCycle);
        assert!(
            rejection.detail.contains("crm → contacts → crm"),
            "{rejection:?}"
        );
    }

    #[test]
    fn the_dependency_step_is_checked_again_when_the_saga_reports_it() {
        let mut past = needs_contacts_and_mail();
        past.extend(
            given(&to_crm(PluginCommand::Install), past.clone())
                .elsewhere(other("contacts", "2.3.0", json!([]), &["installed"]))
                .elsewhere(other("mail", "1.0.0", json!([]), &["installed"]))
                .when(&to_crm(PluginCommand::Install))
                .expect("install accepted"),
        );
        // Meanwhile `mail` was uninstalled: the view no longer has it installed.
        let command = to_crm(step(InstallStep::DependenciesChecked));
        let rejection = given(&command, past)
            .elsewhere(other("contacts", "2.3.0", json!([]), &["installed"]))
            .elsewhere(other("mail", "1.0.0", json!([]), &[]))
            .when(&command)
            .expect_err("refused");
        assert_eq!(rejection.missing.len(), 1, "{rejection:?}");
        assert_eq!(rejection.missing[0].plugin.as_str(), "mail");
    }

    #[test]
    fn enabling_needs_every_dependency_active() {
        let mut commands = vec![crm_needing(
            json!([{"plugin": "contacts", "version": "^2"}]),
        )];
        commands.push(PluginCommand::Install);
        commands.extend(InstallStep::ALL.map(step));
        let contacts_installed = other("contacts", "2.0.0", json!([]), &["installed"]);
        let mut past = Vec::new();
        for command in commands {
            let command = to_crm(command);
            past.extend(
                given(&command, past.clone())
                    .elsewhere(contacts_installed.clone())
                    .when(&command)
                    .expect("accepted"),
            );
        }
        let enable = to_crm(PluginCommand::Enable);
        let rejection = given(&enable, past.clone())
            .elsewhere(contacts_installed)
            .when(&enable)
            .expect_err("contacts is not active");
        assert_eq!(rejection.reason, Reason::DependenciesNotActive);
        assert!(
            given(&enable, past)
                .elsewhere(other(
                    "contacts",
                    "2.0.0",
                    json!([]),
                    &["installed", "enabled"]
                ))
                .when(&enable)
                .is_ok()
        );
    }
}
