//! The plugin lifecycle of spec 004 (FR-003) as a state machine:
//!
//! ```text
//! state                     accepts                   next state
//! (none), UNINSTALLED       register                  REGISTERED
//! REGISTERED                install                   INSTALLING
//! INSTALLING                complete-install-step     INSTALLING; INSTALLED after the last step
//!                           fail-install              REGISTERED (the install may be retried)
//! INSTALLED                 enable                    ACTIVE
//!                           update                    INSTALLED, update pending
//!                           uninstall                 UNINSTALLING
//! ACTIVE                    disable                   DISABLED
//!                           update                    ACTIVE, update pending
//! DISABLED                  enable                    ACTIVE
//!                           update                    DISABLED, update pending
//!                           uninstall                 UNINSTALLING
//! UNINSTALLING              complete-uninstall        UNINSTALLED
//! any, update pending       complete-update           same status, new version
//!                           fail-update               same status, same version
//! ```
//!
//! An update keeps the status (INSTALLED, ACTIVE or DISABLED) and blocks every other command
//! until its saga completes or fails. [`Plugin::allowed_commands`] is the whole table: `decide`
//! refuses any command it does not list, and the refusal quotes it.

use serde::{Deserialize, Serialize};

use super::{KnownPlugin, Plugin, PluginCommandKind, PluginStatus};

/// The steps of the install saga, in the order they must complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InstallStep {
    /// FR-004: every dependency is installed in a matching version.
    DependenciesChecked,
    /// FR-014: the plugin's permission keys are reserved for it.
    PermissionsReserved,
    /// FR-005: the plugin's schema exists in every active tenant.
    MigrationsApplied,
    /// FR-011, FR-012: backend routes and the frontend remote entry are registered.
    RoutesRegistered,
    /// FR-009: the plugin's `/health` answers.
    HealthChecked,
}

impl InstallStep {
    pub const ALL: [InstallStep; 5] = [
        InstallStep::DependenciesChecked,
        InstallStep::PermissionsReserved,
        InstallStep::MigrationsApplied,
        InstallStep::RoutesRegistered,
        InstallStep::HealthChecked,
    ];

    /// The name events carry.
    pub fn as_str(self) -> &'static str {
        match self {
            InstallStep::DependenciesChecked => "DEPENDENCIES_CHECKED",
            InstallStep::PermissionsReserved => "PERMISSIONS_RESERVED",
            InstallStep::MigrationsApplied => "MIGRATIONS_APPLIED",
            InstallStep::RoutesRegistered => "ROUTES_REGISTERED",
            InstallStep::HealthChecked => "HEALTH_CHECKED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|step| step.as_str() == s)
    }

    /// The first step of the install saga not in `completed`: the only one that may complete
    /// next.
    pub fn next_after(completed: &[InstallStep]) -> Option<Self> {
        Self::ALL.into_iter().find(|step| !completed.contains(step))
    }
}

impl std::fmt::Display for InstallStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a registered plugin is in its lifecycle, with what an unfinished saga needs to finish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stage {
    Registered,
    Installing { completed: Vec<InstallStep> },
    Installed,
    Active,
    Disabled,
    Uninstalling { purge_data: bool },
    Uninstalled,
}

impl Stage {
    pub fn status(&self) -> PluginStatus {
        match self {
            Stage::Registered => PluginStatus::Registered,
            Stage::Installing { .. } => PluginStatus::Installing,
            Stage::Installed => PluginStatus::Installed,
            Stage::Active => PluginStatus::Active,
            Stage::Disabled => PluginStatus::Disabled,
            Stage::Uninstalling { .. } => PluginStatus::Uninstalling,
            Stage::Uninstalled => PluginStatus::Uninstalled,
        }
    }
}

/// The version an update saga is installing, as `core.plugin.update-requested` recorded it;
/// `core.plugin.updated` repeats it, so it is kept until then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingUpdate {
    pub version: String,
    pub name: String,
    pub description: Option<String>,
    /// The new manifest as JSON.
    pub manifest: String,
}

impl Plugin {
    /// The commands the plugin accepts in its current state: the lifecycle's transition table.
    pub fn allowed_commands(&self) -> &'static [PluginCommandKind] {
        match self {
            Plugin::Unknown => &[PluginCommandKind::Register],
            Plugin::Known(plugin) => plugin.allowed_commands(),
        }
    }
}

impl KnownPlugin {
    pub fn allowed_commands(&self) -> &'static [PluginCommandKind] {
        use PluginCommandKind as C;
        if self.pending_update.is_some() {
            return &[C::CompleteUpdate, C::FailUpdate];
        }
        match self.stage {
            Stage::Registered => &[C::Install],
            Stage::Installing { .. } => &[C::CompleteInstallStep, C::FailInstall],
            Stage::Installed => &[C::Enable, C::Update, C::Uninstall],
            Stage::Active => &[C::Disable, C::Update],
            Stage::Disabled => &[C::Enable, C::Update, C::Uninstall],
            Stage::Uninstalling { .. } => &[C::CompleteUninstall],
            Stage::Uninstalled => &[C::Register],
        }
    }
}
