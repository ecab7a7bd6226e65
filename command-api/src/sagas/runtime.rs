//! The side effects of the plugin sagas, behind [`PluginRuntime`]: what the saga runner asks
//! the platform to do for each step before it records the step's outcome in the log.
//!
//! The container runtime is a later issue. Until then the platform runs on
//! [`SimulatedRuntime`], whose steps succeed or fail **as the manifest dictates**: a step
//! fails when the manifest's `runtime.image` contains `fail-<step>`, the step in kebab-case:
//!
//! | image contains                | fails                                              |
//! |-------------------------------|----------------------------------------------------|
//! | `fail-dependencies-checked`   | install step `DEPENDENCIES_CHECKED`                |
//! | `fail-permissions-reserved`   | install step `PERMISSIONS_RESERVED`                |
//! | `fail-migrations-applied`     | install step `MIGRATIONS_APPLIED`                  |
//! | `fail-routes-registered`      | install step `ROUTES_REGISTERED`                   |
//! | `fail-health-checked`         | install step `HEALTH_CHECKED`                      |
//! | `fail-update`                 | an update *to* this manifest                       |
//! | `fail-uninstall`              | the uninstall of the version with this manifest    |
//!
//! e.g. `registry.plexica.io/crm:1.0.0-fail-health-checked` is registered and starts its
//! install, then rolls back to REGISTERED at the health check (spec 004, edge case 1). Every
//! other step succeeds at once. The error message names the step, so the catalog's
//! `last_error` tells an admin where the saga stopped.

use std::future::Future;

pub use domain::plugin::{InstallStep, PluginId};

/// The plugin a step acts on: one version of it, with its manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginSpec {
    pub id: PluginId,
    pub version: String,
    /// The manifest as registered (spec 004 §7): the runtime reads the image, resources,
    /// routes and migrations from it.
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
}

/// The runtime `plexica all` uses until containers are run for real: see the module doc for
/// the `fail-<step>` convention.
#[derive(Debug, Clone, Copy, Default)]
pub struct SimulatedRuntime;

impl SimulatedRuntime {
    /// Fails `step` (in kebab-case) when `plugin`'s image asks for it.
    fn step(plugin: &PluginSpec, step: &str) -> Result<(), StepError> {
        let marker = format!("fail-{step}");
        match plugin.image() {
            Some(image) if image.contains(&marker) => Err(StepError::new(format!(
                "step {step} failed for {} {}: the image `{image}` asks the simulated runtime to fail it",
                plugin.id, plugin.version
            ))),
            _ => Ok(()),
        }
    }
}

/// A step's name in the `fail-<step>` convention: `HEALTH_CHECKED` is `health-checked`.
pub fn kebab_case(step: InstallStep) -> String {
    step.as_str().to_ascii_lowercase().replace('_', "-")
}

impl PluginRuntime for SimulatedRuntime {
    async fn install_step(&self, plugin: &PluginSpec, step: InstallStep) -> Result<(), StepError> {
        Self::step(plugin, &kebab_case(step))
    }

    async fn update(&self, _current: &PluginSpec, target: &PluginSpec) -> Result<(), StepError> {
        Self::step(target, "update")
    }

    async fn uninstall(&self, plugin: &PluginSpec, _purge_data: bool) -> Result<(), StepError> {
        Self::step(plugin, "uninstall")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin(image: &str) -> PluginSpec {
        PluginSpec {
            id: PluginId::parse("crm").expect("id"),
            version: "1.0.0".into(),
            manifest: serde_json::json!({"id": "crm", "runtime": {"image": image}}),
        }
    }

    #[tokio::test]
    async fn the_image_names_the_one_step_that_fails() {
        let runtime = SimulatedRuntime;
        let failing = plugin("registry.plexica.io/crm:1.0.0-fail-health-checked");
        for step in InstallStep::ALL {
            let result = runtime.install_step(&failing, step).await;
            if step == InstallStep::HealthChecked {
                let error = result.expect_err("the health check fails");
                assert!(error.message.contains("health-checked"), "{error}");
            } else {
                assert_eq!(result, Ok(()), "{step}");
            }
        }
        let migrations = plugin("registry.plexica.io/crm:1.0.0-fail-migrations-applied");
        assert!(
            runtime
                .install_step(&migrations, InstallStep::MigrationsApplied)
                .await
                .is_err()
        );
        assert!(
            runtime
                .install_step(&migrations, InstallStep::HealthChecked)
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn updates_and_uninstalls_fail_by_the_same_convention() {
        let runtime = SimulatedRuntime;
        let good = plugin("registry.plexica.io/crm:1.0.0");
        let bad_update = plugin("registry.plexica.io/crm:1.1.0-fail-update");
        let bad_uninstall = plugin("registry.plexica.io/crm:1.0.0-fail-uninstall");
        assert!(runtime.update(&good, &good).await.is_ok());
        let error = runtime.update(&good, &bad_update).await.expect_err("fails");
        assert!(error.message.contains("update"), "{error}");
        assert!(
            runtime.update(&bad_update, &good).await.is_ok(),
            "only the target counts"
        );
        assert!(runtime.uninstall(&good, true).await.is_ok());
        let error = runtime
            .uninstall(&bad_uninstall, false)
            .await
            .expect_err("fails");
        assert!(error.message.contains("uninstall"), "{error}");
        assert!(
            runtime
                .install_step(&bad_uninstall, InstallStep::HealthChecked)
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn a_manifest_without_an_image_never_fails() {
        let plugin = PluginSpec {
            id: PluginId::parse("bare").expect("id"),
            version: "1.0.0".into(),
            manifest: serde_json::json!({"id": "bare"}),
        };
        for step in InstallStep::ALL {
            assert!(SimulatedRuntime.install_step(&plugin, step).await.is_ok());
        }
    }

    #[test]
    fn steps_are_named_in_kebab_case() {
        assert_eq!(
            kebab_case(InstallStep::DependenciesChecked),
            "dependencies-checked"
        );
        assert_eq!(kebab_case(InstallStep::HealthChecked), "health-checked");
    }
}
