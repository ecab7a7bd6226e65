//! The process driver: each plugin version that runs is a process group of its own, started
//! from its bundle, limited by [`Limits`], logging to `logs/<plugin>.log`, probed on `/health`
//! and restarted with backoff when it dies (edge case 7: killed for memory, marked unhealthy,
//! restarted). A plugin's failure is its own: the supervisor logs it and carries on
//! (NFR-004).
//!
//! Nothing runs twice: starting a running version is a no-op, and the driver kills, when it
//! is created, every process group that an earlier platform on the same state directory left
//! behind (its `run/*.pgid` files, and its cgroups), so that a platform killed with -9 and
//! started again runs each ACTIVE plugin once.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use domain::plugin_health::Observation;
use tokio::process::Child;
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{PlatformEnvironment, RuntimeConfig};
use crate::health::{self, Health, HealthStatus};
use crate::limits::Limits;
use crate::spec::ProcessRuntimeSpec;
use crate::tenant_data::{Migration, TenantData, read_migrations};
use crate::{InstallStep, PluginId, PluginRuntime, PluginSpec, StepError};

mod serving;
mod supervisor;

use serving::endpoint;
pub use serving::{Endpoint, InFlight, Request};

use supervisor::{
    free_port, is_plugin_process, log_tail, sanitize, stop_instance, supervise, terminate,
};

/// How long a stopping plugin has between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// The first wait before a restart; it doubles up to the configured maximum.
const RESTART_BASE: Duration = Duration::from_millis(200);
/// A plugin that ran this long before it died starts again from the first wait.
const STABLE_AFTER: Duration = Duration::from_secs(30);
/// How long a plugin's own identity is valid: it is signed again each time the plugin starts.
const PLUGIN_TOKEN_TTL: chrono::Duration = chrono::Duration::days(365);
/// Lines of a plugin's log quoted when it fails to start.
const LOG_TAIL_LINES: usize = 8;

#[derive(Clone)]
pub struct ProcessRuntime {
    inner: Arc<Inner>,
}

struct Inner {
    config: RuntimeConfig,
    env: PlatformEnvironment,
    client: reqwest::Client,
    /// Names this platform's cgroups apart from another platform's on the same machine.
    group_prefix: String,
    /// The instance in service of each plugin.
    serving: RwLock<HashMap<String, Arc<Instance>>>,
    /// One lifecycle change at a time.
    changes: Mutex<()>,
    /// The last observation of each plugin that does not serve: stopped, or failed to start.
    not_serving: std::sync::Mutex<BTreeMap<String, Observation>>,
    /// Told of every change of what the runtime observes.
    observed: watch::Sender<()>,
    /// The tenants' schemas, where the plugins' migrations run.
    tenant_data: Option<TenantData>,
}

struct Instance {
    version: String,
    port: u16,
    /// Requests the gateway has under way to it: a stopping instance finishes them first.
    in_flight: Arc<InFlight>,
    state: Arc<RwLock<State>>,
    stop: CancellationToken,
    supervisor: std::sync::Mutex<Option<JoinHandle<()>>>,
}

struct State {
    health: Health,
    limits: Limits,
}

/// Everything needed to start (and restart) one plugin version.
struct Launch {
    id: String,
    version: String,
    port: u16,
    command: Vec<String>,
    dir: PathBuf,
    env: Vec<(String, String)>,
    log: PathBuf,
    pgid_file: PathBuf,
    limits: Limits,
}

impl ProcessRuntime {
    /// The driver for the platform whose plugins find `env`; kills what an earlier platform
    /// on the same state directory left running.
    pub fn new(
        config: RuntimeConfig,
        env: PlatformEnvironment,
        tenant_data: Option<TenantData>,
    ) -> Self {
        let state_dir = std::path::absolute(&config.state_dir).unwrap_or(config.state_dir.clone());
        let digest = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(
                state_dir.as_os_str().as_encoded_bytes(),
            ))
        };
        let runtime = Self {
            inner: Arc::new(Inner {
                config: RuntimeConfig {
                    state_dir,
                    ..config
                },
                env,
                client: reqwest::Client::builder()
                    .no_proxy()
                    .build()
                    .unwrap_or_default(),
                group_prefix: format!("plexica-{}", &digest[..12]),
                serving: RwLock::new(HashMap::new()),
                changes: Mutex::new(()),
                not_serving: std::sync::Mutex::new(BTreeMap::new()),
                observed: watch::Sender::new(()),
                tenant_data,
            }),
        };
        runtime.kill_process_groups();
        runtime
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.inner.config.state_dir.join(name)
    }

    /// Where plugin `id` is served, if it runs.
    pub fn endpoint(&self, id: &str) -> Option<Endpoint> {
        let serving = self.inner.serving.read().ok()?;
        serving.get(id).map(|instance| endpoint(id, instance))
    }

    /// Every running plugin.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        let Ok(serving) = self.inner.serving.read() else {
            return Vec::new();
        };
        let mut all: Vec<Endpoint> = serving.iter().map(|(id, i)| endpoint(id, i)).collect();
        all.sort_by(|a, b| a.plugin.cmp(&b.plugin));
        all
    }

    /// The log file of plugin `id`.
    pub fn log_file(&self, id: &str) -> PathBuf {
        self.logs_dir().join(format!("{id}.log"))
    }

    /// The folder of every plugin's log file.
    pub fn logs_dir(&self) -> PathBuf {
        self.dir("logs")
    }

    /// Stops every plugin: the platform is shutting down.
    pub async fn shutdown(&self) {
        let _change = self.inner.changes.lock().await;
        let all: Vec<(String, Arc<Instance>)> = match self.inner.serving.write() {
            Ok(mut serving) => serving.drain().collect(),
            Err(_) => return,
        };
        for (id, instance) in all {
            tracing::info!(plugin = %id, "stopping plugin: the platform shuts down");
            stop_instance(&instance).await;
        }
    }

    /// SIGKILLs every plugin process group named in this runtime's state directory: those an
    /// earlier platform left behind, or this one's, when it cannot stop them in order (a
    /// process or a test unwinding).
    pub fn kill_process_groups(&self) {
        let run = self.dir("run");
        let Ok(entries) = std::fs::read_dir(&run) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = path.file_stem().map(|s| s.to_string_lossy().into_owned());
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let mut lines = text.lines();
            let (Some(pgid), Some(id)) = (
                lines.next().and_then(|l| l.trim().parse::<i32>().ok()),
                lines.next(),
            ) else {
                let _ = std::fs::remove_file(&path);
                continue;
            };
            if pgid > 1 && is_plugin_process(pgid, id) {
                tracing::warn!(plugin = id, pgid, file = ?name,
                    "killing a plugin process group left by an earlier platform");
                // SAFETY: kill has no memory-safety preconditions.
                unsafe { libc::kill(-pgid, libc::SIGKILL) };
            }
            let _ = std::fs::remove_file(&path);
        }
    }

    /// Starts `plugin` and waits until it serves every standard endpoint; on error nothing of
    /// it is left running.
    async fn launch(&self, plugin: &PluginSpec) -> Result<Arc<Instance>, StepError> {
        let id = plugin.id.to_string();
        let spec = ProcessRuntimeSpec::from_manifest(&plugin.manifest)
            .map_err(|e| StepError::new(format!("plugin {id} {}: {e}", plugin.version)))?;
        let slot = format!("{id}@{}", sanitize(&plugin.version));
        let dir = crate::bundle::resolve(&spec.bundle, &self.dir("bundles"), &slot)
            .map_err(|e| StepError::new(format!("plugin {id} {}: {e}", plugin.version)))?;
        for sub in ["logs", "run"] {
            std::fs::create_dir_all(self.dir(sub)).map_err(|e| {
                StepError::new(format!("cannot create {}: {e}", self.dir(sub).display()))
            })?;
        }
        let limits = Limits::prepare(
            &format!("{}-{}", self.inner.group_prefix, slot),
            spec.resources,
        );
        if limits.kill_leftovers() > 0 {
            tracing::warn!(plugin = %id, "killed processes left in the plugin's cgroup");
        }
        let port = free_port()
            .map_err(|e| StepError::new(format!("no free port for plugin {id}: {e}")))?;
        let launch = Launch {
            env: self.environment(plugin, port),
            id: id.clone(),
            version: plugin.version.clone(),
            port,
            command: spec.command,
            dir,
            log: self.log_file(&id),
            pgid_file: self.dir("run").join(format!("{slot}.pgid")),
            limits,
        };
        let mut child = launch.spawn().map_err(|e| {
            StepError::new(format!(
                "plugin {id} {}: cannot run `{}`: {e}",
                plugin.version,
                launch.command.join(" ")
            ))
        })?;
        if let Err(error) = self.wait_until_serving(&launch, &mut child).await {
            terminate(&mut child, &launch).await;
            launch.limits.remove();
            let _ = std::fs::remove_file(&launch.pgid_file);
            return Err(StepError::new(match error {
                NotServing::Down(error) => format!(
                    "plugin {id} {} did not start: {error}{}",
                    plugin.version,
                    log_tail(&launch.log)
                ),
                NotServing::Missing(error) => format!("plugin {id} {}: {error}", plugin.version),
            }));
        }
        tracing::info!(plugin = %id, version = %plugin.version, port, limits = launch.limits.describe(), "plugin started");
        let state = Arc::new(RwLock::new(State {
            health: Health::new(HealthStatus::Healthy),
            limits: launch.limits.clone(),
        }));
        metrics::gauge!("plexica_plugin_healthy", "plugin" => id.clone()).set(1.0);
        let stop = CancellationToken::new();
        let supervisor = tokio::spawn(supervise(
            launch,
            child,
            state.clone(),
            stop.clone(),
            self.inner.client.clone(),
            self.inner.config.clone(),
            self.inner.observed.clone(),
        ));
        Ok(Arc::new(Instance {
            version: plugin.version.clone(),
            port,
            in_flight: Arc::new(InFlight::default()),
            state,
            stop,
            supervisor: std::sync::Mutex::new(Some(supervisor)),
        }))
    }

    async fn wait_until_serving(
        &self,
        launch: &Launch,
        child: &mut Child,
    ) -> Result<(), NotServing> {
        let deadline = Instant::now() + self.inner.config.start_timeout();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(NotServing::Down(format!(
                    "it exited ({status}) before answering /health"
                )));
            }
            match health::probe(&self.inner.client, launch.port, "/health").await {
                Ok(()) => break,
                Err(error) if Instant::now() >= deadline => {
                    return Err(NotServing::Down(format!(
                        "{error} within {} ms",
                        self.inner.config.start_timeout_ms
                    )));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        // A plugin may need a moment to be ready (its database, its subscription joining its
        // group): while `/ready` answers 503 it is asked again, until the start timeout. Any
        // other answer is final, and the check below names what is missing.
        while Instant::now() < deadline
            && health::not_ready_yet(&self.inner.client, launch.port).await
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        health::check_standard_endpoints(&self.inner.client, launch.port)
            .await
            .map_err(NotServing::Missing)
    }

    fn environment(&self, plugin: &PluginSpec, port: u16) -> Vec<(String, String)> {
        plugin_environment(&self.inner.env, plugin, port)
    }

    /// The migrations of `plugin`'s bundle, if it has any.
    fn migrations(&self, plugin: &PluginSpec) -> Result<Vec<Migration>, StepError> {
        let fail =
            |e: String| StepError::new(format!("plugin {} {}: {e}", plugin.id, plugin.version));
        let spec =
            ProcessRuntimeSpec::from_manifest(&plugin.manifest).map_err(|e| fail(e.to_string()))?;
        let Some(path) = spec.migrations else {
            return Ok(Vec::new());
        };
        let slot = format!("{}@{}", plugin.id, sanitize(&plugin.version));
        let dir = crate::bundle::resolve(&spec.bundle, &self.dir("bundles"), &slot)
            .map_err(|e| fail(e.to_string()))?;
        read_migrations(&dir.join(path)).map_err(|e| fail(e.to_string()))
    }

    /// Runs `plugin`'s migrations not yet run in every active tenant.
    async fn migrate(&self, plugin: &PluginSpec) -> Result<(), StepError> {
        let Some(data) = self.inner.tenant_data.clone() else {
            return Ok(());
        };
        let migrations = self.migrations(plugin)?;
        let (id, version) = (plugin.id.clone(), plugin.version.clone());
        // A task of its own: sqlx's futures are not `Send` for every lifetime, which the
        // saga runner's boxed future needs.
        tokio::spawn(async move { data.install(&id, &version, &migrations).await })
            .await
            .map_err(|e| StepError::new(format!("the migrations' task failed: {e}")))?
            .map_err(|e| StepError::new(format!("plugin {} {}: {e}", plugin.id, plugin.version)))
    }

    async fn remove_data(&self, id: &PluginId, purge: bool) -> Result<(), StepError> {
        let Some(data) = self.inner.tenant_data.clone() else {
            return Ok(());
        };
        let plugin = id.clone();
        tokio::spawn(async move {
            if purge {
                data.purge(&plugin).await
            } else {
                data.forget(&plugin).await
            }
        })
        .await
        .map_err(|e| StepError::new(format!("the purge's task failed: {e}")))?
        .map_err(|e| StepError::new(format!("plugin {id}: {e}")))
    }

    async fn replace_serving(&self, id: &str, instance: Option<Arc<Instance>>) {
        let instance_serves = instance.is_some();
        let previous = match self.inner.serving.write() {
            Ok(mut serving) => match instance {
                Some(instance) => serving.insert(id.to_owned(), instance),
                None => serving.remove(id),
            },
            Err(_) => None,
        };
        let stopped = match (&previous, instance_serves) {
            (Some(previous), false) => Some(Observation {
                status: HealthStatus::Stopped,
                since: chrono::Utc::now(),
                last_error: None,
                address: None,
                ..endpoint(id, previous).observation()
            }),
            _ => None,
        };
        if instance_serves || stopped.is_some() {
            self.not_serving(id, stopped);
        }
        if let Some(previous) = previous {
            stop_instance(&previous).await;
        }
    }

    fn serving_version(&self, id: &str) -> Option<String> {
        let serving = self.inner.serving.read().ok()?;
        serving.get(id).map(|i| i.version.clone())
    }
}

/// Why a started plugin is not taken into service.
enum NotServing {
    /// It died or never answered `/health`: its log says why.
    Down(String),
    /// It runs but lacks standard endpoints, which the error names.
    Missing(String),
}

impl PluginRuntime for ProcessRuntime {
    async fn install_step(&self, plugin: &PluginSpec, step: InstallStep) -> Result<(), StepError> {
        match step {
            InstallStep::RoutesRegistered => ProcessRuntimeSpec::from_manifest(&plugin.manifest)
                .map(drop)
                .map_err(|e| StepError::new(format!("plugin {}: {e}", plugin.id))),
            // The plugin proves it starts and serves the standard endpoints, then stops until
            // it is enabled.
            InstallStep::HealthChecked => {
                let _change = self.inner.changes.lock().await;
                if self.serving_version(plugin.id.as_str()).as_deref() == Some(&plugin.version) {
                    return Ok(());
                }
                let trial = self.launch(plugin).await?;
                stop_instance(&trial).await;
                Ok(())
            }
            InstallStep::MigrationsApplied => self.migrate(plugin).await,
            InstallStep::DependenciesChecked | InstallStep::PermissionsReserved => Ok(()),
        }
    }

    async fn update(&self, current: &PluginSpec, target: &PluginSpec) -> Result<(), StepError> {
        let _change = self.inner.changes.lock().await;
        let id = current.id.as_str();
        let running = self.serving_version(id).is_some();
        // Only the new version's new files run; those that ran stay (migrations go forward).
        self.migrate(target).await?;
        // Hot swap (NFR-008): the new version serves before the old one stops; if it does not
        // start, the old one was never touched.
        let next = self.launch(target).await?;
        if running {
            self.replace_serving(id, Some(next)).await;
            tracing::info!(plugin = id, from = %current.version, to = %target.version, "plugin swapped");
        } else {
            stop_instance(&next).await;
        }
        Ok(())
    }

    async fn uninstall(&self, plugin: &PluginSpec, purge_data: bool) -> Result<(), StepError> {
        let _change = self.inner.changes.lock().await;
        self.replace_serving(plugin.id.as_str(), None).await;
        self.remove_data(&plugin.id, purge_data).await
    }

    async fn start(&self, plugin: &PluginSpec) -> Result<(), StepError> {
        let _change = self.inner.changes.lock().await;
        let id = plugin.id.as_str();
        if self.serving_version(id).as_deref() == Some(&plugin.version) {
            return Ok(());
        }
        // Another version cannot be in service when this one is to be: stop it first.
        self.replace_serving(id, None).await;
        // Its routes on the log: the topic it publishes on exists before it runs.
        let env = &self.inner.env;
        let topic = env.topics.plugin_spec(id);
        infra::kafka::create_topics(&env.kafka, std::slice::from_ref(&topic))
            .await
            .map_err(|e| {
                StepError::new(format!(
                    "plugin {id}: cannot create its topic {}: {e}",
                    topic.name
                ))
            })?;
        let instance = match self.launch(plugin).await {
            Ok(instance) => instance,
            Err(error) => {
                self.not_serving(
                    id,
                    Some(Observation {
                        version: plugin.version.clone(),
                        status: HealthStatus::Unhealthy,
                        since: chrono::Utc::now(),
                        last_error: Some(error.message.clone()),
                        restarts: 0,
                        address: None,
                    }),
                );
                return Err(error);
            }
        };
        self.replace_serving(id, Some(instance)).await;
        Ok(())
    }

    async fn stop(&self, plugin: &PluginId) {
        let _change = self.inner.changes.lock().await;
        self.replace_serving(plugin.as_str(), None).await;
    }
}

/// The event types the manifest's `events.{which}` declares, comma-separated.
fn declared_events(manifest: &serde_json::Value, which: &str) -> String {
    manifest
        .pointer(&format!("/events/{which}"))
        .and_then(serde_json::Value::as_array)
        .map(|types| {
            types
                .iter()
                .filter_map(serde_json::Value::as_str)
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// The Postgres role of plugin `id`: it reaches the plugin's own tables in the tenant schemas
/// and nothing else (NFR-005).
pub fn plugin_role(id: &PluginId) -> String {
    format!("plexica_plugin_{}", id.as_str().replace('-', "_"))
}

/// The platform's database URL with the plugin's role in place of the platform's user and
/// without its password: the platform's credentials never reach a plugin.
pub fn plugin_database_url(platform_url: &str, id: &PluginId) -> String {
    match url::Url::parse(platform_url) {
        Ok(mut url) => {
            let _ = url.set_username(&plugin_role(id));
            let _ = url.set_password(None);
            url.to_string()
        }
        Err(_) => String::new(),
    }
}

/// The variables a plugin process starts with (the README's table), and nothing else.
fn plugin_environment(
    env: &PlatformEnvironment,
    plugin: &PluginSpec,
    port: u16,
) -> Vec<(String, String)> {
    let mut vars = vec![
        ("PORT".to_owned(), port.to_string()),
        ("PLEXICA_PLUGIN_ID".to_owned(), plugin.id.to_string()),
        ("PLEXICA_PLUGIN_VERSION".to_owned(), plugin.version.clone()),
        (
            "DATABASE_URL".to_owned(),
            plugin_database_url(&env.database_url, &plugin.id),
        ),
        ("KAFKA_BROKERS".to_owned(), env.kafka.brokers.clone()),
        // A plugin's subscription is asynchronous, no reply waits on it: it polls as the
        // platform's background consumers do. At the interactive wait each plugin would
        // add as much load to tansu (which answers every fetch with queries, data or
        // not) as the command processor does, and an idle platform already saturates it.
        (
            "KAFKA_FETCH_WAIT_MAX_MS".to_owned(),
            env.kafka.background_fetch_wait_max_ms.to_string(),
        ),
        // A subscription rests as the platform's consumers do (never on Redpanda).
        (
            "KAFKA_REST_AFTER_MS".to_owned(),
            env.kafka.rest_after_ms.to_string(),
        ),
        (
            "KAFKA_RESTING_LOOK_EVERY_MS".to_owned(),
            env.kafka.resting_look_every_ms.to_string(),
        ),
        (
            "SCHEMA_REGISTRY_URL".to_owned(),
            env.schema_registry_url.clone(),
        ),
        ("PLEXICA_GATEWAY_URL".to_owned(), env.gateway_url.clone()),
        ("PLEXICA_PLUGIN_SCHEMA".to_owned(), plugin_role(&plugin.id)),
        (
            "PLEXICA_TOPIC_PREFIX".to_owned(),
            env.topics.prefix().to_owned(),
        ),
        (
            "PLEXICA_PLUGIN_TOPIC".to_owned(),
            env.topics.plugin(plugin.id.as_str()),
        ),
        (
            "PLEXICA_PLUGIN_PUBLISHES".to_owned(),
            declared_events(&plugin.manifest, "publishes"),
        ),
        (
            "PLEXICA_PLUGIN_SUBSCRIBES".to_owned(),
            declared_events(&plugin.manifest, "subscribes"),
        ),
    ];
    match env.keys.issue(
        &format!("{}{}", infra::auth::PLUGIN_SUBJECT_PREFIX, plugin.id),
        vec![infra::auth::Role::Plugin],
        None,
        PLUGIN_TOKEN_TTL,
    ) {
        Ok(token) => vars.push(("PLEXICA_PLUGIN_TOKEN".to_owned(), token)),
        Err(error) => {
            tracing::error!(plugin = %plugin.id, %error, "cannot sign the plugin's identity")
        }
    }
    // The platform's own environment holds its secrets: a plugin gets none of it but what
    // finds programs and their runtimes.
    for name in ["PATH", "HOME", "LANG", "TZ", "PYENV_ROOT", "PYENV_VERSION"] {
        if let Ok(value) = std::env::var(name) {
            vars.push((name.to_owned(), value));
        }
    }
    vars
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plugin_connects_as_its_own_role_without_the_platforms_password() {
        let id = PluginId::parse("crm-pro").expect("id");
        assert_eq!(
            plugin_database_url("postgres://postgres:secret@db:5432/plexica", &id),
            "postgres://plexica_plugin_crm_pro@db:5432/plexica"
        );
    }

    #[test]
    fn a_plugin_polls_at_the_platforms_background_fetch_wait_and_rests_as_it_does() {
        use clap::Parser;
        #[derive(Parser)]
        struct Kafka {
            #[command(flatten)]
            kafka: infra::config::KafkaConfig,
        }
        let kafka = Kafka::parse_from([
            "platform",
            "--kafka-fetch-wait-max-ms",
            "5",
            "--kafka-background-fetch-wait-max-ms",
            "70",
            "--kafka-rest-after-ms",
            "0",
        ])
        .kafka;
        let env = PlatformEnvironment {
            database_url: "postgres://postgres@db/plexica".to_owned(),
            topics: event_schemas::Topics::new(String::new(), kafka.partitions),
            kafka,
            schema_registry_url: "http://registry".to_owned(),
            gateway_url: "http://gateway".to_owned(),
            keys: infra::auth::TokenKeys::from_secret("one"),
        };
        let plugin = PluginSpec {
            id: PluginId::parse("billing").expect("id"),
            version: "1.0.0".to_owned(),
            manifest: serde_json::json!({}),
        };
        let vars = plugin_environment(&env, &plugin, 4000);
        let wait = vars
            .iter()
            .find(|(name, _)| name == "KAFKA_FETCH_WAIT_MAX_MS")
            .map(|(_, value)| value.as_str());
        assert_eq!(wait, Some("70"));
        let rest = vars
            .iter()
            .find(|(name, _)| name == "KAFKA_REST_AFTER_MS")
            .map(|(_, value)| value.as_str());
        assert_eq!(rest, Some("0"));
    }

    #[test]
    fn versions_become_file_names() {
        assert_eq!(sanitize("1.0.0+build/../x"), "1.0.0_build_.._x");
    }
}
