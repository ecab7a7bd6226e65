//! How the plugin aggregate refuses: each refusal names the state it found and the commands
//! that state accepts, so that a client can tell what it may do instead.

use super::{InstallStep, KnownPlugin, Plugin, PluginCommandKind, PluginId, Stage};
use crate::rejection::{Reason, Rejection};

impl Plugin {
    /// The refusal of a command the current state does not accept, naming those it does.
    pub(super) fn not_allowed(&self, id: &PluginId, kind: PluginCommandKind) -> Rejection {
        match self {
            Plugin::Unknown => Rejection::new(
                Reason::PluginNotRegistered,
                format!(
                    "no plugin `{id}` is registered, so {} does not apply; allowed: {}",
                    kind.command_type(),
                    PluginCommandKind::Register.command_type()
                ),
            )
            .with_allowed(command_types(self.allowed_commands())),
            Plugin::Known(plugin) => plugin.not_allowed(id, kind),
        }
    }
}

/// The names of commands, as rejections list them.
pub(super) fn command_types(kinds: &[PluginCommandKind]) -> Vec<&'static str> {
    kinds.iter().map(|k| k.command_type()).collect()
}

impl KnownPlugin {
    pub(super) fn not_allowed(&self, id: &PluginId, kind: PluginCommandKind) -> Rejection {
        let allowed = command_types(self.allowed_commands());
        let (reason, hint) = if kind == PluginCommandKind::Register {
            (
                Reason::PluginAlreadyRegistered,
                "; a new version goes through plugin.update",
            )
        } else {
            (Reason::NotAllowedInPluginStatus, "")
        };
        Rejection::new(
            reason,
            format!(
                "plugin `{id}` is {}, where {} is not allowed; allowed: {}{hint}",
                self.describe(),
                kind.command_type(),
                allowed.join(", "),
            ),
        )
        .with_allowed(allowed)
    }

    /// A refusal of the command's content in this state; like a refusal of the command itself,
    /// it names the state and what the state accepts.
    pub(super) fn conflict(&self, id: &PluginId, reason: Reason, why: &str) -> Rejection {
        Rejection::new(
            reason,
            format!("plugin `{id}` is {}: {why}", self.describe()),
        )
        .with_allowed(command_types(self.allowed_commands()))
    }

    /// The state in words, for refusals.
    fn describe(&self) -> String {
        let status = self.stage.status().as_str();
        let version = &self.version;
        match (&self.stage, &self.pending_update) {
            (_, Some(update)) => format!(
                "{status} at version {version} with an update to {} in progress",
                update.version
            ),
            (Stage::Installing { completed }, None) => match InstallStep::next_after(completed) {
                Some(next) => format!("{status} version {version} (next step: {next})"),
                None => format!("{status} version {version}"),
            },
            (Stage::Uninstalled, None) => format!("{status} (last version {version})"),
            _ => format!("{status} at version {version}"),
        }
    }
}
