//! The side effects of the plugin sagas, behind [`PluginRuntime`]: what the saga runner asks
//! the platform to do for each step before it records the step's outcome in the log.
//!
//! The trait and the platform's drivers live in the `plugin-runtime` crate. This module keeps
//! [`SimulatedRuntime`], a test double that runs nothing (`PLEXICA_PLUGIN_DRIVER=simulated`),
//! whose steps succeed or fail **as the manifest dictates**: a step fails when the manifest's
//! `runtime.image` contains `fail-<step>`, the step in kebab-case:
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

pub use plugin_runtime::{InstallStep, PluginId, PluginRuntime, PluginSpec, StepError};

/// The test double: see the module doc for the `fail-<step>` convention.
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

    async fn start(&self, _plugin: &PluginSpec) -> Result<(), StepError> {
        Ok(())
    }

    async fn stop(&self, _plugin: &PluginId) {}
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
