//! How the platform runs plugins: which driver, where their files go, how often they are
//! probed.

use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Driver {
    /// A supervised process group per plugin on this machine (manifest runtime `process`).
    Process,
    /// A test double that runs nothing: every step succeeds unless the manifest's image
    /// contains `fail-<step>`.
    Simulated,
}

#[derive(Debug, Clone, clap::Args)]
pub struct RuntimeConfig {
    /// Which driver runs the plugins.
    #[arg(
        long = "plugin-driver",
        env = "PLEXICA_PLUGIN_DRIVER",
        value_enum,
        default_value_t = Driver::Process
    )]
    pub driver: Driver,
    /// Where the process driver keeps unpacked bundles (`bundles/`), one log file per plugin
    /// (`logs/<plugin>.log`) and the process groups it started (`run/<plugin>.pgid`).
    #[arg(
        long = "plugin-state-dir",
        env = "PLEXICA_PLUGIN_STATE_DIR",
        default_value = ".plexica/plugins"
    )]
    pub state_dir: PathBuf,
    /// How long a starting plugin has to answer `/health`.
    #[arg(
        long = "plugin-start-timeout-ms",
        env = "PLEXICA_PLUGIN_START_TIMEOUT_MS",
        default_value_t = 15_000
    )]
    pub start_timeout_ms: u64,
    /// How often a running plugin's `/health` is probed.
    #[arg(
        long = "plugin-health-interval-ms",
        env = "PLEXICA_PLUGIN_HEALTH_INTERVAL_MS",
        default_value_t = 2_000
    )]
    pub health_interval_ms: u64,
    /// The longest wait between two restarts of a plugin that keeps crashing.
    #[arg(
        long = "plugin-restart-max-ms",
        env = "PLEXICA_PLUGIN_RESTART_MAX_MS",
        default_value_t = 30_000
    )]
    pub restart_max_ms: u64,
    /// How long the gateway waits for a plugin's answer before a 504.
    #[arg(
        long = "gateway-timeout-ms",
        env = "PLEXICA_GATEWAY_TIMEOUT_MS",
        default_value_t = 5_000
    )]
    pub gateway_timeout_ms: u64,
}

impl RuntimeConfig {
    pub fn start_timeout(&self) -> Duration {
        Duration::from_millis(self.start_timeout_ms)
    }

    pub fn health_interval(&self) -> Duration {
        Duration::from_millis(self.health_interval_ms.max(10))
    }

    pub fn restart_max(&self) -> Duration {
        Duration::from_millis(self.restart_max_ms.max(100))
    }
}

/// What every plugin finds in its environment besides its own identity (NFR-006: secrets
/// reach a plugin only this way), and what the platform gives each plugin from it.
#[derive(Debug, Clone)]
pub struct PlatformEnvironment {
    pub database_url: String,
    /// The broker: the plugin's `KAFKA_BROKERS`, and where the runtime creates its topic.
    pub kafka: infra::config::KafkaConfig,
    pub schema_registry_url: String,
    pub gateway_url: String,
    /// Names the plugin's topic and the `core.*` ones it may read.
    pub topics: event_schemas::Topics,
    /// Signs each plugin's own identity (`PLEXICA_PLUGIN_TOKEN`).
    pub keys: infra::auth::TokenKeys,
}
