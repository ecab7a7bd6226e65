//! The side effects of the plugin lifecycle, behind [`PluginRuntime`]: what the saga runner
//! asks the platform to do for each step before it records the step's outcome in the log
//! (DESIGN.md §8: the sagas ask the runtime for steps; they never spawn anything themselves).
//!
//! The driver of this crate is [`process::ProcessRuntime`]: each plugin runs as a supervised
//! process group on the platform's machine, from a bundle that the manifest's `runtime`
//! names (see [`spec::ProcessRuntimeSpec`] for the contract), with cgroup or rlimit limits,
//! a log file, health probes, and restarts with backoff. Container drivers implement the same
//! trait.

pub mod bundle;
pub mod config;
pub mod enablements;
pub mod gateway;
pub mod health;
pub mod limits;
pub mod process;
pub mod spec;
pub mod tenant_data;
pub mod tenant_schemas;

use std::future::Future;

pub use config::RuntimeConfig;
pub use domain::plugin::{InstallStep, PluginId};
pub use process::ProcessRuntime;

/// The plugin a step acts on: one version of it, with its manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginSpec {
    pub id: PluginId,
    pub version: String,
    /// The manifest as registered (spec 004 §7): the runtime reads the runtime section,
    /// resources, routes and migrations from it.
    pub manifest: serde_json::Value,
}

impl PluginSpec {
    /// The container image the manifest names, if any.
    pub fn image(&self) -> Option<&str> {
        self.manifest
            .get("runtime")
            .and_then(|runtime| runtime.get("image"))
            .and_then(serde_json::Value::as_str)
    }
}

/// Why a step did not happen. Its message becomes the `reason` of the failure the saga
/// records, so it must say what went wrong in words an admin can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct StepError {
    pub message: String,
}

impl StepError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// Runs the side effects of the lifecycle sagas. Each call either did all of its work or
/// reports an error after undoing what it did, so that the failure the saga then records is
/// true of the platform (an install failure leaves the plugin REGISTERED, an update failure
/// leaves the previous version in service).
///
/// The saga runner is spawned, so the futures are `Send`; implementations may use `async fn`.
pub trait PluginRuntime: Send + Sync + 'static {
    /// One step of the install saga for `plugin`.
    fn install_step(
        &self,
        plugin: &PluginSpec,
        step: InstallStep,
    ) -> impl Future<Output = Result<(), StepError>> + Send;

    /// Replaces the version in service, `current`, by `target`: the new version is started,
    /// traffic is swapped to it, the old one is stopped. On error the old one stays in
    /// service.
    fn update(
        &self,
        current: &PluginSpec,
        target: &PluginSpec,
    ) -> impl Future<Output = Result<(), StepError>> + Send;

    /// Removes the plugin from the platform, and its tenants' data when `purge_data`.
    fn uninstall(
        &self,
        plugin: &PluginSpec,
        purge_data: bool,
    ) -> impl Future<Output = Result<(), StepError>> + Send;

    /// Makes `plugin` run and serve (it was enabled, or the platform restarted with it
    /// ACTIVE). Running it again when it runs is a no-op: nothing runs twice.
    fn start(&self, plugin: &PluginSpec) -> impl Future<Output = Result<(), StepError>> + Send;

    /// Stops `plugin` (it was disabled or is being uninstalled); its data stays.
    fn stop(&self, plugin: &PluginId) -> impl Future<Output = ()> + Send;
}
