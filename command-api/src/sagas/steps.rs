//! What each plugin event asks of the saga runner, decided without I/O: the saga step the
//! runtime has to do (install, update, uninstall), the policy whose commands follow from the
//! event alone (release the permission keys, disable the dependents), and the ids of the
//! commands that record them.

use domain::Command;
use domain::plugin::PluginCommand;
use domain::reservation::{ReservationCommand, ReservationScope};
use event_schemas::commands::CommandOutcome;
use event_schemas::events::PluginEvent;
use uuid::Uuid;

use super::SagaError;
use super::runtime::{InstallStep, PluginId, PluginSpec, StepError};

/// Namespace of the saga's command ids (UUID v5 over the triggering event's id).
const COMMAND_ID_NAMESPACE: Uuid = Uuid::from_u128(0x442d_a681_b806_4873_bcb0_3f91_bcfb_71a4);

/// The id of the command a saga issues in answer to the event `event_id`: the same on every
/// attempt, so the processor recognises a repeat.
pub fn command_id(event_id: Uuid) -> Uuid {
    Uuid::new_v5(&COMMAND_ID_NAMESPACE, event_id.as_bytes())
}

/// The id of a further command issued in answer to `event_id`, told apart by `purpose`.
pub(super) fn derived_command_id(event_id: Uuid, purpose: &str) -> Uuid {
    Uuid::new_v5(
        &COMMAND_ID_NAMESPACE,
        format!("{event_id}/{purpose}").as_bytes(),
    )
}

/// Work for the runtime, whose outcome a command records.
#[derive(Debug, PartialEq)]
pub(super) enum SagaStep {
    Install(InstallStep),
    Update { target: PluginSpec },
    Uninstall { purge_data: bool },
}

impl SagaStep {
    pub(super) fn saga(&self) -> &'static str {
        match self {
            SagaStep::Install(_) => "install",
            SagaStep::Update { .. } => "update",
            SagaStep::Uninstall { .. } => "uninstall",
        }
    }
}

/// Commands that follow from an event without the runtime.
#[derive(Debug, PartialEq)]
pub(super) enum Policy {
    /// The plugin's permission keys go back to the pool.
    ReleasePermissions,
    /// Edge case 5: the plugins depending on this one cannot work without it.
    DisableDependents { because: String },
}

/// What one event asks of the runner: its policy first, then its saga step.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Asked {
    pub policy: Option<Policy>,
    pub step: Option<SagaStep>,
}

impl Asked {
    pub(super) fn is_nothing(&self) -> bool {
        self.policy.is_none() && self.step.is_none()
    }
}

/// What `event`, of plugin `id`, asks of the runner.
pub(super) fn asked_by(id: &PluginId, event: &PluginEvent) -> Result<Asked, SagaError> {
    let step = |step| Asked {
        policy: None,
        step: Some(step),
    };
    let policy = |policy| Asked {
        policy: Some(policy),
        step: None,
    };
    Ok(match event {
        PluginEvent::InstallRequested(_) => Asked {
            policy: None,
            step: InstallStep::next_after(&[]).map(SagaStep::Install),
        },
        PluginEvent::InstallStepCompleted(e) => match InstallStep::parse(&e.step) {
            Some(completed) => Asked {
                policy: None,
                step: step_after(completed).map(SagaStep::Install),
            },
            None => {
                // Not a step of this code's saga, so not one it could follow.
                tracing::warn!(plugin = %id, step = %e.step, "unknown install step completed");
                Asked::default()
            }
        },
        PluginEvent::UpdateRequested(e) => step(SagaStep::Update {
            target: PluginSpec {
                id: id.clone(),
                version: e.target_version.clone(),
                manifest: parse_manifest(id, &e.manifest)?,
            },
        }),
        PluginEvent::UninstallRequested(e) => Asked {
            policy: Some(Policy::DisableDependents {
                because: format!("its dependency `{id}` is being uninstalled"),
            }),
            step: Some(SagaStep::Uninstall {
                purge_data: e.purge_data,
            }),
        },
        PluginEvent::InstallFailed(_) | PluginEvent::Uninstalled(_) => {
            policy(Policy::ReleasePermissions)
        }
        PluginEvent::Disabled(e) => policy(Policy::DisableDependents {
            because: match &e.reason {
                Some(reason) => format!("its dependency `{id}` was disabled ({reason})"),
                None => format!("its dependency `{id}` was disabled"),
            },
        }),
        // Ends of sagas and changes that ask nothing further.
        PluginEvent::Registered(_)
        | PluginEvent::Installed(_)
        | PluginEvent::Enabled(_)
        | PluginEvent::Updated(_)
        | PluginEvent::UpdateFailed(_) => Asked::default(),
    })
}

/// The commands of `policy` for plugin `id`, in answer to event `event_id`; `dependents` are
/// the ACTIVE plugins that depend on `id`.
pub(super) fn policy_commands(
    id: &PluginId,
    policy: Policy,
    dependents: &[PluginId],
    event_id: Uuid,
) -> Vec<(Uuid, Command)> {
    match policy {
        Policy::ReleasePermissions => vec![(
            derived_command_id(event_id, "release"),
            Command::Reservation {
                scope: ReservationScope::PermissionKeys,
                command: ReservationCommand::Release {
                    owner: id.to_string(),
                },
            },
        )],
        Policy::DisableDependents { because } => dependents
            .iter()
            .map(|dependent| {
                tracing::warn!(plugin = %dependent, dependency = %id, %because,
                    "disabling a plugin whose dependency went");
                let disable = Command::Plugin {
                    id: dependent.clone(),
                    command: PluginCommand::Disable {
                        reason: Some(format!("disabled by the platform: {because}")),
                    },
                };
                let purpose = format!("disable/{dependent}");
                (derived_command_id(event_id, &purpose), disable)
            })
            .collect(),
    }
}

/// The permission keys a manifest declares.
pub(super) fn permission_keys(manifest: &serde_json::Value) -> Vec<String> {
    manifest
        .get("permissions")
        .and_then(serde_json::Value::as_array)
        .map(|permissions| {
            permissions
                .iter()
                .filter_map(|p| p.get("key").and_then(serde_json::Value::as_str))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Why a command was refused, from its outcome's problem, for a failure's reason.
pub(super) fn refusal(outcome: &CommandOutcome) -> String {
    let problem: Option<serde_json::Value> = outcome
        .rejection
        .as_deref()
        .and_then(|p| serde_json::from_str(p).ok());
    let text = |key: &str| {
        problem
            .as_ref()
            .and_then(|p| p.get(key))
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    match (text("title"), text("detail")) {
        (title, detail) if title.is_empty() && detail.is_empty() => {
            "refused without a reason".to_owned()
        }
        (title, detail) if detail.is_empty() => title,
        (title, detail) => format!("{title}: {detail}"),
    }
}

/// The install step due once `step` has completed: the domain accepts the steps in its order
/// only, so every step before `step` has completed too.
fn step_after(step: InstallStep) -> Option<InstallStep> {
    let position = InstallStep::ALL.iter().position(|s| *s == step)?;
    InstallStep::next_after(&InstallStep::ALL[..=position])
}

pub(super) fn parse_manifest(
    id: &PluginId,
    manifest: &str,
) -> Result<serde_json::Value, SagaError> {
    serde_json::from_str(manifest).map_err(|source| SagaError::Manifest {
        plugin: id.to_string(),
        source,
    })
}

/// A failure's reason as the domain requires it: never blank.
pub(super) fn reason(error: StepError, what: &str) -> String {
    if error.message.trim().is_empty() {
        format!("{what} failed without a reason from the runtime")
    } else {
        error.message
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use event_schemas::events::{
        PluginDisabled, PluginInstallStepCompleted, PluginInstalled, PluginUninstallRequested,
        PluginUpdateRequested,
    };

    fn crm() -> PluginId {
        PluginId::parse("crm").expect("a plugin id")
    }

    #[test]
    fn each_step_is_followed_by_the_next_in_the_domain_order() {
        let mut steps = vec![InstallStep::next_after(&[]).expect("a first step")];
        while let Some(next) = step_after(*steps.last().expect("not empty")) {
            steps.push(next);
        }
        assert_eq!(steps, InstallStep::ALL);
    }

    #[test]
    fn the_command_id_depends_on_the_event_only() {
        let event = Uuid::now_v7();
        assert_eq!(command_id(event), command_id(event));
        assert_ne!(command_id(event), command_id(Uuid::now_v7()));
        assert_eq!(command_id(event).get_version_num(), 5);
    }

    #[test]
    fn a_blank_failure_still_gives_a_reason() {
        assert_eq!(reason(StepError::new("boom"), "x"), "boom");
        assert!(!reason(StepError::new("  "), "the update").trim().is_empty());
    }

    #[test]
    fn the_last_install_step_and_the_ends_of_sagas_ask_nothing() {
        let last = InstallStep::ALL[InstallStep::ALL.len() - 1];
        let completed = PluginEvent::InstallStepCompleted(PluginInstallStepCompleted {
            plugin_id: "crm".into(),
            version: "1.0.0".into(),
            step: last.as_str().into(),
        });
        let unknown = PluginEvent::InstallStepCompleted(PluginInstallStepCompleted {
            plugin_id: "crm".into(),
            version: "1.0.0".into(),
            step: "POLISHED".into(),
        });
        let installed = PluginEvent::Installed(PluginInstalled {
            plugin_id: "crm".into(),
            version: "1.0.0".into(),
        });
        for event in [completed, unknown, installed] {
            let asked = asked_by(&crm(), &event).expect("asks");
            assert!(asked.is_nothing(), "{event:?} asks {asked:?}");
        }
    }

    #[test]
    fn an_uninstall_disables_the_dependents_before_its_own_step() {
        let event = PluginEvent::UninstallRequested(PluginUninstallRequested {
            plugin_id: "crm".into(),
            version: "1.0.0".into(),
            purge_data: true,
        });
        let asked = asked_by(&crm(), &event).expect("asks");
        assert!(matches!(
            asked.policy,
            Some(Policy::DisableDependents { ref because }) if because.contains("`crm`")
        ));
        assert_eq!(asked.step, Some(SagaStep::Uninstall { purge_data: true }));
    }

    #[test]
    fn an_update_whose_manifest_is_not_json_is_refused_for_good() {
        let event = PluginEvent::UpdateRequested(PluginUpdateRequested {
            plugin_id: "crm".into(),
            version: "1.0.0".into(),
            target_version: "1.1.0".into(),
            name: "CRM".into(),
            description: None,
            manifest: "{not json".into(),
        });
        assert!(matches!(
            asked_by(&crm(), &event),
            Err(SagaError::Manifest { .. })
        ));
    }

    #[test]
    fn a_disable_disables_each_active_dependent_once_with_the_reason() {
        let event_id = Uuid::now_v7();
        let event = PluginEvent::Disabled(PluginDisabled {
            plugin_id: "crm".into(),
            version: "1.0.0".into(),
            reason: Some("licence".into()),
        });
        let policy = asked_by(&crm(), &event)
            .expect("asks")
            .policy
            .expect("a policy");
        let dependents = [
            PluginId::parse("billing").expect("id"),
            PluginId::parse("quotes").expect("id"),
        ];
        let commands = policy_commands(&crm(), policy, &dependents, event_id);
        assert_eq!(commands.len(), 2);
        let ids: std::collections::HashSet<Uuid> = commands.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids.len(), 2, "each dependent's command has its own id");
        for ((_, command), dependent) in commands.iter().zip(&dependents) {
            let Command::Plugin {
                id,
                command: PluginCommand::Disable { reason },
            } = command
            else {
                panic!("a disable: {command:?}");
            };
            assert_eq!(id, dependent);
            assert!(
                reason.as_deref().is_some_and(|r| r.contains("licence")),
                "{reason:?}"
            );
        }
        let again = asked_by(&crm(), &event)
            .expect("asks")
            .policy
            .expect("policy");
        assert_eq!(
            policy_commands(&crm(), again, &dependents, event_id)
                .iter()
                .map(|(id, _)| *id)
                .collect::<Vec<_>>(),
            commands.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            "the same event gives the same command ids"
        );
    }
}
