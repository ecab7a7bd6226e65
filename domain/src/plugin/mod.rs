//! The plugin aggregate: one per plugin id, living on `core.plugins`.

mod lifecycle;
mod manifest;
#[cfg(test)]
mod properties;
mod refusals;
#[cfg(test)]
mod tests;

use std::fmt;

use event_schemas::events::{
    PluginDisabled, PluginEnabled, PluginEvent, PluginInstallFailed, PluginInstallRequested,
    PluginInstallStepCompleted, PluginInstalled, PluginRegistered, PluginUninstallRequested,
    PluginUninstalled, PluginUpdateFailed, PluginUpdateRequested, PluginUpdated,
};
use serde::{Deserialize, Serialize};

pub use lifecycle::{InstallStep, PendingUpdate, Stage};
pub use manifest::{Dependency, MANIFEST_SCHEMA, Manifest, Permission};

use crate::directory::{Directory, Needed};
use crate::rejection::{FieldError, Reason, Rejection, required_text};

/// A kebab-case plugin id, 2 to 64 characters: it is also a route prefix and a topic name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct PluginId(String);

impl PluginId {
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        if crate::rejection::is_kebab_case(s, 2..=64) {
            Ok(Self(s.to_owned()))
        } else {
            Err(FieldError::new(
                "",
                format!(
                    "`{s}` is not a plugin id: 2-64 characters of kebab-case (a-z, 0-9, -) starting with a letter"
                ),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PluginId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for PluginId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        PluginId::parse(&s).map_err(|e| serde::de::Error::custom(e.message))
    }
}

pub use event_schemas::status::PluginStatus;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case")]
pub enum PluginCommand {
    Register {
        manifest: Manifest,
    },
    Install,
    /// Issued by the install saga when a step has succeeded.
    CompleteInstallStep {
        step: InstallStep,
    },
    /// Issued by the install saga when a step has failed and been rolled back.
    FailInstall {
        step: InstallStep,
        reason: String,
    },
    Enable,
    Disable {
        /// Why, when the platform disables a plugin rather than an admin (e.g. a dependency
        /// was uninstalled, spec 004 edge case 5).
        #[serde(default)]
        reason: Option<String>,
    },
    /// A newer version of the same plugin.
    Update {
        manifest: Manifest,
    },
    CompleteUpdate,
    FailUpdate {
        reason: String,
    },
    Uninstall {
        purge_data: bool,
    },
    CompleteUninstall,
}

/// Names a command without its parameters: what the lifecycle table is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PluginCommandKind {
    Register,
    Install,
    CompleteInstallStep,
    FailInstall,
    Enable,
    Disable,
    Update,
    CompleteUpdate,
    FailUpdate,
    Uninstall,
    CompleteUninstall,
}

impl PluginCommandKind {
    pub const ALL: [PluginCommandKind; 11] = [
        PluginCommandKind::Register,
        PluginCommandKind::Install,
        PluginCommandKind::CompleteInstallStep,
        PluginCommandKind::FailInstall,
        PluginCommandKind::Enable,
        PluginCommandKind::Disable,
        PluginCommandKind::Update,
        PluginCommandKind::CompleteUpdate,
        PluginCommandKind::FailUpdate,
        PluginCommandKind::Uninstall,
        PluginCommandKind::CompleteUninstall,
    ];

    /// The command's stable name in records, logs, metrics and rejections.
    pub fn command_type(self) -> &'static str {
        match self {
            PluginCommandKind::Register => "plugin.register",
            PluginCommandKind::Install => "plugin.install",
            PluginCommandKind::CompleteInstallStep => "plugin.complete-install-step",
            PluginCommandKind::FailInstall => "plugin.fail-install",
            PluginCommandKind::Enable => "plugin.enable",
            PluginCommandKind::Disable => "plugin.disable",
            PluginCommandKind::Update => "plugin.update",
            PluginCommandKind::CompleteUpdate => "plugin.complete-update",
            PluginCommandKind::FailUpdate => "plugin.fail-update",
            PluginCommandKind::Uninstall => "plugin.uninstall",
            PluginCommandKind::CompleteUninstall => "plugin.complete-uninstall",
        }
    }
}

impl PluginCommand {
    pub fn kind(&self) -> PluginCommandKind {
        match self {
            PluginCommand::Register { .. } => PluginCommandKind::Register,
            PluginCommand::Install => PluginCommandKind::Install,
            PluginCommand::CompleteInstallStep { .. } => PluginCommandKind::CompleteInstallStep,
            PluginCommand::FailInstall { .. } => PluginCommandKind::FailInstall,
            PluginCommand::Enable => PluginCommandKind::Enable,
            PluginCommand::Disable { .. } => PluginCommandKind::Disable,
            PluginCommand::Update { .. } => PluginCommandKind::Update,
            PluginCommand::CompleteUpdate => PluginCommandKind::CompleteUpdate,
            PluginCommand::FailUpdate { .. } => PluginCommandKind::FailUpdate,
            PluginCommand::Uninstall { .. } => PluginCommandKind::Uninstall,
            PluginCommand::CompleteUninstall => PluginCommandKind::CompleteUninstall,
        }
    }
}

/// What the command side knows of a plugin.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Plugin {
    #[default]
    Unknown,
    Known(KnownPlugin),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownPlugin {
    /// The version in service: the registered one until an update completes.
    pub version: String,
    pub stage: Stage,
    /// An update whose saga is under way; the plugin keeps its status meanwhile.
    pub pending_update: Option<PendingUpdate>,
    /// What the version in service depends on.
    pub dependencies: Vec<Dependency>,
}

impl Plugin {
    /// The lifecycle status, once registered.
    pub fn status(&self) -> Option<PluginStatus> {
        match self {
            Plugin::Unknown => None,
            Plugin::Known(plugin) => Some(plugin.stage.status()),
        }
    }

    /// Decides a command addressed to plugin `id`: first whether the lifecycle accepts the
    /// command at all in this state ([`Plugin::allowed_commands`]), then whether its content
    /// fits the state.
    pub fn decide(
        &self,
        id: &PluginId,
        command: &PluginCommand,
        directory: &Directory,
    ) -> Result<Vec<PluginEvent>, Rejection> {
        let kind = command.kind();
        if !self.allowed_commands().contains(&kind) {
            return Err(self.not_allowed(id, kind));
        }
        match (self, command) {
            (Plugin::Known(plugin), command) => plugin.decide(id, command, directory),
            (Plugin::Unknown, PluginCommand::Register { manifest }) => register(id, manifest),
            // The table lets nothing but a registration reach an unknown plugin.
            (Plugin::Unknown, _) => Err(self.not_allowed(id, kind)),
        }
    }

    pub fn evolve(self, event: &PluginEvent) -> Self {
        match (self, event) {
            (_, PluginEvent::Registered(e)) => Plugin::Known(KnownPlugin::registered(e)),
            (Plugin::Known(plugin), event) => Plugin::Known(plugin.evolve(event)),
            // Only a registration gives a plugin a state to change.
            (Plugin::Unknown, _) => Plugin::Unknown,
        }
    }
}

impl KnownPlugin {
    /// Decides a command that the lifecycle table allows in this state: what is left to check
    /// is the command's content against the state.
    fn decide(
        &self,
        id: &PluginId,
        command: &PluginCommand,
        directory: &Directory,
    ) -> Result<Vec<PluginEvent>, Rejection> {
        let plugin_id = id.to_string();
        let version = self.version.clone();
        let conflict = |reason: Reason, why: String| self.conflict(id, reason, &why);
        let event = match command {
            PluginCommand::Register { manifest } => return register(id, manifest),
            PluginCommand::Install => {
                self.check_dependencies(id, &self.dependencies, directory, Needed::Installed)?;
                PluginEvent::InstallRequested(PluginInstallRequested { plugin_id, version })
            }
            PluginCommand::CompleteInstallStep { step } => {
                let Stage::Installing { completed } = &self.stage else {
                    return Err(self.not_allowed(id, command.kind()));
                };
                // The saga's word that the dependencies are there is checked again here, where
                // it counts: one may have gone since the install was accepted.
                if *step == InstallStep::DependenciesChecked {
                    self.check_dependencies(id, &self.dependencies, directory, Needed::Installed)?;
                }
                return self.complete_install_step(id, completed, *step);
            }
            PluginCommand::FailInstall { step, reason } => {
                let Stage::Installing { completed } = &self.stage else {
                    return Err(self.not_allowed(id, command.kind()));
                };
                // A step the log records as done cannot be the one that failed; any other may,
                // so that a saga can always roll the plugin back to REGISTERED.
                if completed.contains(step) {
                    return Err(conflict(
                        Reason::InstallStepAlreadyCompleted,
                        format!("step {step} has completed, so it cannot be the one that failed"),
                    ));
                }
                PluginEvent::InstallFailed(PluginInstallFailed {
                    plugin_id,
                    version,
                    step: step.as_str().to_owned(),
                    error: required_text("/reason", reason)?,
                })
            }
            PluginCommand::Enable => {
                self.check_dependencies(id, &self.dependencies, directory, Needed::Active)?;
                PluginEvent::Enabled(PluginEnabled { plugin_id, version })
            }
            PluginCommand::Disable { reason } => PluginEvent::Disabled(PluginDisabled {
                plugin_id,
                version,
                reason: reason
                    .as_deref()
                    .map(|r| required_text("/reason", r))
                    .transpose()?,
            }),
            PluginCommand::Update { manifest } => {
                if manifest.id != *id {
                    return Err(Rejection::invalid(
                        Reason::UpdateForAnotherPlugin,
                        vec![FieldError::new(
                            "/id",
                            format!("the manifest is for plugin `{}`, not `{id}`", manifest.id),
                        )],
                    ));
                }
                let current = semver::Version::parse(&self.version).map_err(|e| {
                    conflict(
                        Reason::RecordedVersionNotSemantic,
                        format!("the recorded version `{version}` does not parse: {e}"),
                    )
                })?;
                // Precedence, not `Ord`: build metadata does not make a version newer.
                if manifest.version.cmp_precedence(&current) != std::cmp::Ordering::Greater {
                    return Err(conflict(
                        Reason::UpdateDoesNotRaiseVersion,
                        format!(
                            "an update needs a version greater than {current}, not {}",
                            manifest.version
                        ),
                    ));
                }
                self.check_dependencies(id, &manifest.dependencies, directory, Needed::Installed)?;
                PluginEvent::UpdateRequested(PluginUpdateRequested {
                    plugin_id,
                    version,
                    target_version: manifest.version.to_string(),
                    name: manifest.name.clone(),
                    description: manifest.description.clone(),
                    manifest: manifest.document().to_string(),
                })
            }
            PluginCommand::CompleteUpdate => {
                let Some(update) = &self.pending_update else {
                    return Err(self.not_allowed(id, command.kind()));
                };
                PluginEvent::Updated(PluginUpdated {
                    plugin_id,
                    previous_version: version,
                    version: update.version.clone(),
                    name: update.name.clone(),
                    description: update.description.clone(),
                    manifest: update.manifest.clone(),
                })
            }
            PluginCommand::FailUpdate { reason } => {
                let Some(update) = &self.pending_update else {
                    return Err(self.not_allowed(id, command.kind()));
                };
                PluginEvent::UpdateFailed(PluginUpdateFailed {
                    plugin_id,
                    version,
                    target_version: update.version.clone(),
                    error: required_text("/reason", reason)?,
                })
            }
            PluginCommand::Uninstall { purge_data } => {
                PluginEvent::UninstallRequested(PluginUninstallRequested {
                    plugin_id,
                    version,
                    purge_data: *purge_data,
                })
            }
            PluginCommand::CompleteUninstall => {
                let Stage::Uninstalling { purge_data } = self.stage else {
                    return Err(self.not_allowed(id, command.kind()));
                };
                PluginEvent::Uninstalled(PluginUninstalled {
                    plugin_id,
                    version,
                    purge_data,
                })
            }
        };
        Ok(vec![event])
    }

    /// The completion of the install step `step`, which must be the one due; the last one
    /// installs the plugin with it.
    fn complete_install_step(
        &self,
        id: &PluginId,
        completed: &[InstallStep],
        step: InstallStep,
    ) -> Result<Vec<PluginEvent>, Rejection> {
        match InstallStep::next_after(completed) {
            Some(due) if due == step => {}
            _ if completed.contains(&step) => {
                return Err(self.conflict(
                    id,
                    Reason::InstallStepAlreadyCompleted,
                    &format!("step {step} has already completed"),
                ));
            }
            Some(due) => {
                return Err(self.conflict(
                    id,
                    Reason::InstallStepOutOfOrder,
                    &format!("step {step} cannot complete before {due}"),
                ));
            }
            None => {
                return Err(self.conflict(
                    id,
                    Reason::InstallAlreadyComplete,
                    "every install step has completed",
                ));
            }
        }
        let mut events = vec![PluginEvent::InstallStepCompleted(
            PluginInstallStepCompleted {
                plugin_id: id.to_string(),
                version: self.version.clone(),
                step: step.as_str().to_owned(),
            },
        )];
        let mut done = completed.to_vec();
        done.push(step);
        if InstallStep::next_after(&done).is_none() {
            events.push(PluginEvent::Installed(PluginInstalled {
                plugin_id: id.to_string(),
                version: self.version.clone(),
            }));
        }
        Ok(events)
    }

    /// A plugin as its registration leaves it: also after an uninstall, which it starts over.
    fn registered(e: &PluginRegistered) -> Self {
        KnownPlugin {
            version: e.version.clone(),
            stage: Stage::Registered,
            pending_update: None,
            dependencies: dependencies_of(&e.manifest),
        }
    }

    /// Refuses the command unless every dependency in `dependencies` is there, `needed` far
    /// along, and none leads back to this plugin; the refusal lists all that is missing.
    fn check_dependencies(
        &self,
        id: &PluginId,
        dependencies: &[Dependency],
        directory: &Directory,
        needed: Needed,
    ) -> Result<(), Rejection> {
        if let Some(cycle) = directory.dependency_cycle(id, dependencies) {
            let chain: Vec<&str> = cycle.iter().map(PluginId::as_str).collect();
            return Err(self.conflict(
                id,
                Reason::DependencyCycle,
                &format!("its dependencies lead back to it: {}", chain.join(" → ")),
            ));
        }
        let unmet = directory.unmet_dependencies(dependencies, needed);
        if unmet.is_empty() {
            return Ok(());
        }
        let (reason, what) = match needed {
            Needed::Installed => (Reason::DependenciesNotInstalled, "installed"),
            Needed::Active => (Reason::DependenciesNotActive, "ACTIVE"),
        };
        let listed: Vec<String> = unmet.iter().map(ToString::to_string).collect();
        Err(self
            .conflict(
                id,
                reason,
                &format!(
                    "these dependencies must be {what} in a matching version first: {}",
                    listed.join(", ")
                ),
            )
            .with_missing(unmet))
    }

    fn evolve(mut self, event: &PluginEvent) -> Self {
        match event {
            PluginEvent::Registered(e) => self = KnownPlugin::registered(e),
            PluginEvent::InstallRequested(_) => {
                self.stage = Stage::Installing {
                    completed: Vec::new(),
                }
            }
            PluginEvent::InstallStepCompleted(e) => {
                // A step this code does not know was not one it has to wait for.
                if let (Stage::Installing { completed }, Some(step)) =
                    (&mut self.stage, InstallStep::parse(&e.step))
                {
                    completed.push(step);
                }
            }
            PluginEvent::Installed(_) => self.stage = Stage::Installed,
            PluginEvent::InstallFailed(_) => self.stage = Stage::Registered,
            PluginEvent::Enabled(_) => self.stage = Stage::Active,
            PluginEvent::Disabled(_) => self.stage = Stage::Disabled,
            PluginEvent::UpdateRequested(e) => {
                self.pending_update = Some(PendingUpdate {
                    version: e.target_version.clone(),
                    name: e.name.clone(),
                    description: e.description.clone(),
                    manifest: e.manifest.clone(),
                })
            }
            PluginEvent::Updated(e) => {
                self.version = e.version.clone();
                self.dependencies = dependencies_of(&e.manifest);
                self.pending_update = None;
            }
            PluginEvent::UpdateFailed(_) => self.pending_update = None,
            PluginEvent::UninstallRequested(e) => {
                self.stage = Stage::Uninstalling {
                    purge_data: e.purge_data,
                }
            }
            PluginEvent::Uninstalled(_) => self.stage = Stage::Uninstalled,
        }
        self
    }
}

fn register(id: &PluginId, manifest: &Manifest) -> Result<Vec<PluginEvent>, Rejection> {
    // The command record's key and its payload travel apart: they must name the same plugin.
    if manifest.id != *id {
        return Err(Rejection::invalid(
            Reason::ManifestForAnotherPlugin,
            vec![FieldError::new(
                "/id",
                format!("the manifest is for plugin `{}`, not `{id}`", manifest.id),
            )],
        ));
    }
    Ok(vec![PluginEvent::Registered(PluginRegistered {
        plugin_id: manifest.id.to_string(),
        name: manifest.name.clone(),
        version: manifest.version.to_string(),
        description: manifest.description.clone(),
        manifest: manifest.document().to_string(),
    })])
}

/// The dependencies in a logged manifest. A manifest that no longer parses under today's
/// rules has none the domain could vouch for.
fn dependencies_of(manifest: &str) -> Vec<Dependency> {
    serde_json::from_str(manifest)
        .ok()
        .and_then(|document| Manifest::parse(document).ok())
        .map(|manifest| manifest.dependencies)
        .unwrap_or_default()
}
