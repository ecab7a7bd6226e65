//! A test harness that starts the whole platform in-process, on random ports, against the
//! broker, Postgres and Redis that `cargo xtask test` provides, isolated by a fresh database
//! and a topic prefix of its own.

pub mod broker;
pub mod deal_won;
pub mod log;
pub mod plugins;
pub mod process;
pub mod relay;
pub mod running;

use std::future::Future;
use std::time::{Duration, Instant};

use event_schemas::Topics;
use infra::auth::Role;
use infra::config::{
    AuthConfig, HttpConfig, KafkaConfig, PostgresConfig, RedisConfig, SchemaRegistryConfig,
};
use plexica::{Part, PlatformConfig, RunningPlatform};
use serde_json::{Value, json};
use sqlx::PgPool;

pub struct TestApp {
    pub address: String,
    pub registry_url: String,
    pub client: reqwest::Client,
    pub pool: PgPool,
    pub topics: Topics,
    pub config: PlatformConfig,
    /// The process driver running the plugins, when the configuration asks for it.
    pub plugins: Option<plugin_runtime::ProcessRuntime>,
    platform: Option<RunningPlatform>,
}

/// A token of a platform started with `config`, for an hour.
pub fn token(config: &PlatformConfig, role: Role, tenant: Option<&str>) -> String {
    config
        .auth
        .keys()
        .issue(
            "tester",
            vec![role],
            tenant.map(str::to_owned),
            chrono::Duration::hours(1),
        )
        .expect("signing a token works")
}

/// Configuration of a new, isolated platform.
pub async fn isolated_config() -> PlatformConfig {
    let (postgres, _pool): (PostgresConfig, PgPool) = infra::testing::fresh_database("e2e").await;
    let prefix = format!("{}.", infra::testing::unique_name("t"));
    // The platform's default unless a measurement sets another.
    fn setting<T: std::str::FromStr>(name: &str, default: T) -> T {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }
    PlatformConfig {
        kafka: KafkaConfig {
            brokers: infra::testing::kafka_brokers(),
            fetch_wait_max_ms: setting("KAFKA_FETCH_WAIT_MAX_MS", 5),
            background_fetch_wait_max_ms: setting("KAFKA_BACKGROUND_FETCH_WAIT_MAX_MS", 50),
            rest_after_ms: setting("KAFKA_REST_AFTER_MS", 2_000),
            resting_look_every_ms: setting("KAFKA_RESTING_LOOK_EVERY_MS", 500),
            topic_prefix: prefix,
            partitions: setting("KAFKA_PARTITIONS", 3),
            session_timeout_ms: 6_000,
            replication_factor: 1,
        },
        postgres,
        redis: RedisConfig {
            url: infra::testing::redis_url(),
        },
        registry: SchemaRegistryConfig {
            url: None,
            listen: "127.0.0.1:0".parse().expect("literal address"),
            plexica: false,
        },
        http: HttpConfig {
            listen: "127.0.0.1:0".parse().expect("literal address"),
        },
        auth: AuthConfig {
            jwt_secret: test_secret().into(),
        },
        command_api: command_api_config(),
        dlq: dlq_config(),
        plugins: simulated_plugins(),
        webhooks: webhook_config(),
    }
}

/// Webhooks that may reach this machine (the tests' receivers listen on loopback), retried
/// soon.
pub fn webhook_config() -> webhooks::WebhookConfig {
    webhooks::WebhookConfig {
        webhook_key: format!("webhook-key-{}", test_secret()).into(),
        allow_private_networks: true,
        delivery_timeout_ms: 2_000,
        delivery_retry_base_ms: 100,
        delivery_max_attempts: 3,
        disable_after_ms: 86_400_000,
    }
}

/// The codec the platform configured by `config` writes with, over the registry at
/// `registry_url`: with the platform's own service token, which registering schemas needs.
pub fn codec(config: &PlatformConfig, registry_url: &str) -> event_schemas::Codec {
    let keys = config.auth.keys();
    let token = config
        .registry
        .service_token(&keys)
        .expect("a service token signs");
    event_schemas::Codec::new(registry_url, token.as_deref()).expect("the registry client builds")
}

/// One signing secret for every platform a test process starts: the parts of one deployment
/// share theirs, and a schema registry that one platform serves must verify the service token
/// of another's parts (the benches write every prepared log through one registry).
fn test_secret() -> &'static str {
    static SECRET: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SECRET.get_or_init(|| format!("test-secret-{}", uuid::Uuid::new_v4()))
}

fn infra_unique(prefix: &str) -> String {
    infra::testing::unique_name(prefix)
}

/// Most tests drive the lifecycle with the test double; those that run plugins ask for
/// [`process_plugins`].
pub fn simulated_plugins() -> plugin_runtime::RuntimeConfig {
    plugin_runtime::RuntimeConfig {
        driver: plugin_runtime::config::Driver::Simulated,
        ..process_plugins(std::env::temp_dir().join("plexica-simulated"))
    }
}

/// The process driver, its files under `state_dir`, probing often enough for a test.
pub fn process_plugins(state_dir: std::path::PathBuf) -> plugin_runtime::RuntimeConfig {
    plugin_runtime::RuntimeConfig {
        driver: plugin_runtime::config::Driver::Process,
        state_dir,
        start_timeout_ms: 15_000,
        health_interval_ms: 200,
        restart_max_ms: 2_000,
        gateway_timeout_ms: 5_000,
    }
}

/// Retries fast enough for a test to watch several rounds.
pub fn dlq_config() -> infra::config::DlqConfig {
    infra::config::DlqConfig {
        retry_base_ms: 100,
        retry_factor: 2.0,
        retry_max_ms: 1_000,
        retry_max_attempts: 5,
        retry_jitter: 0.2,
    }
}

fn command_api_config() -> plexica::CommandApiConfig {
    plexica::CommandApiConfig {
        reply_timeout_ms: 10_000,
    }
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(isolated_config().await).await
    }

    /// Starts the platform with `config`: a second start with the same configuration is a
    /// restart.
    pub async fn spawn_with(config: PlatformConfig) -> Self {
        infra::telemetry::init();
        let platform = plexica::start(config.clone(), Part::All)
            .await
            .expect("the platform starts");
        let pool = infra::postgres::connect(&config.postgres)
            .await
            .expect("test database answers");
        let app = Self {
            address: format!("http://{}", platform.http_addr),
            registry_url: platform.registry_url.clone(),
            client: reqwest::Client::new(),
            pool,
            topics: Topics::new(config.kafka.topic_prefix.clone(), config.kafka.partitions),
            config,
            plugins: platform.plugins.clone(),
            platform: Some(platform),
        };
        app.wait_until_ready().await;
        app
    }

    /// Stops the platform, keeping its database and topics for a restart.
    ///
    /// A test that fails before it stops its platform leaves it to `Drop`, which can only
    /// kill its plugins' processes, so that they do not outlive the test.
    pub async fn stop(mut self) -> PlatformConfig {
        if let Some(platform) = self.platform.take() {
            platform.stop().await;
        }
        self.config.clone()
    }

    async fn wait_until_ready(&self) {
        eventually("the platform reports ready", || async {
            let response = self
                .client
                .get(format!("{}/ready", self.address))
                .send()
                .await
                .ok()?;
            response.status().is_success().then_some(())
        })
        .await;
    }

    pub fn token(&self, role: Role, tenant: Option<&str>) -> String {
        token(&self.config, role, tenant)
    }

    /// A codec as the platform's components have it.
    pub fn codec(&self) -> event_schemas::Codec {
        codec(&self.config, &self.registry_url)
    }

    pub fn super_admin(&self) -> String {
        self.token(Role::SuperAdmin, None)
    }

    /// A command bus as another process of the platform has it: its commands reach this
    /// platform's processor through the log alone, and it waits for no outcome (read them
    /// from the outcome store).
    pub async fn another_process_bus(&self) -> command_api::CommandBus {
        let redis = infra::redis::connect(&self.config.redis)
            .await
            .expect("Redis answers");
        command_api::CommandBus::new(
            infra::kafka::producer(&self.config.kafka).expect("a producer"),
            std::sync::Arc::new(self.codec()),
            self.topics.clone(),
            redis,
            command_api::outcomes::OutcomeWaiters::default(),
            Duration::from_secs(5),
        )
    }

    /// The value of one series of the platform's `/metrics` (the name and labels as printed),
    /// 0 until it appears.
    pub async fn metric(&self, series: &str) -> f64 {
        metric_at(&self.client, &self.address, &self.super_admin(), series)
            .await
            .unwrap_or_default()
    }

    /// The catalog's next offset in `partition` of `topic`, once it has one.
    pub async fn catalog_checkpoint(&self, topic: &str, partition: i32) -> Option<i64> {
        sqlx::query_scalar(
            "SELECT next_offset FROM catalog.checkpoints WHERE topic = $1 AND partition = $2",
        )
        .bind(topic)
        .bind(partition)
        .fetch_optional(&self.pool)
        .await
        .ok()
        .flatten()
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> reqwest::Response {
        let mut request = self
            .client
            .post(format!("{}{path}", self.address))
            .json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.expect("the API answers")
    }

    /// Sends `method path` without a body, as `token`.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
    ) -> reqwest::Response {
        self.client
            .request(method, format!("{}{path}", self.address))
            .bearer_auth(token)
            .send()
            .await
            .expect("the API answers")
    }

    /// An admin's retry of dead letter `id` (`POST /api/v1/admin/dlq/{id}/retry`) as `token`.
    pub async fn retry_dead_letter(
        &self,
        id: impl std::fmt::Display,
        token: &str,
    ) -> reqwest::Response {
        self.send(
            reqwest::Method::POST,
            &format!("/api/v1/admin/dlq/{id}/retry"),
            token,
        )
        .await
    }

    pub async fn graphql(&self, token: &str, query: &str) -> Value {
        self.client
            .post(format!("{}/graphql", self.address))
            .bearer_auth(token)
            .json(&json!({ "query": query }))
            .send()
            .await
            .expect("GraphQL answers")
            .json()
            .await
            .expect("GraphQL answers JSON")
    }

    /// Registers a plugin and returns the reply body.
    pub async fn register(&self, manifest: &Value) -> Value {
        let response = self
            .post("/api/v1/plugins", Some(&self.super_admin()), manifest)
            .await;
        assert_eq!(response.status(), 201, "registration is accepted");
        response.json().await.expect("JSON reply")
    }

    /// Waits until GraphQL shows plugin `id`, returning it.
    pub async fn plugin_in_graphql(&self, id: &str) -> Value {
        let token = self.super_admin();
        eventually(&format!("plugin {id} visible in GraphQL"), || async {
            let reply = self
                .graphql(
                    &token,
                    &format!(r#"{{ plugin(id: "{id}") {{ id name version status }} }}"#),
                )
                .await;
            let plugin = reply["data"]["plugin"].clone();
            (!plugin.is_null()).then_some(plugin)
        })
        .await
    }
}

/// A manifest of spec 004's shape.
pub fn manifest(id: &str, version: &str) -> Value {
    json!({
        "id": id,
        "name": format!("Plugin {id}"),
        "version": version,
        "description": "A plugin made by the tests",
        "runtime": {"type": "typescript", "image": format!("registry.plexica.io/{id}:{version}")},
        "permissions": [{"key": format!("{id}.records.read"), "name": "Read records"}],
        "events": {"publishes": [format!("plugin.{id}.created")], "subscribes": []}
    })
}

/// The value of one series of the `/metrics` a platform serves at `address` (the name and
/// labels as printed), 0 until it appears; `None` when the platform does not answer.
pub async fn metric_at(
    client: &reqwest::Client,
    address: &str,
    token: &str,
    series: &str,
) -> Option<f64> {
    let metrics = client
        .get(format!("{address}/metrics"))
        .bearer_auth(token)
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    Some(metric_value(&metrics, series))
}

/// The value of one series in the text of a `/metrics` (the name and labels as printed), 0
/// when it is not there.
pub fn metric_value(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Polls `check` until it returns something, failing the test after 20 seconds.
pub async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually_within(Duration::from_secs(20), what, check).await
}

/// Polls `check` until it returns something, failing the test after `limit`.
pub async fn eventually_within<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(plugins) = self.platform.as_ref().and_then(|p| p.plugins.as_ref()) {
            if std::thread::panicking() {
                print_plugin_logs(plugins);
            }
            plugins.kill_process_groups();
        }
    }
}

/// The end of every plugin's log, beside a failing test's own output: what a plugin did is
/// otherwise gone with the test's state directory.
fn print_plugin_logs(plugins: &plugin_runtime::ProcessRuntime) {
    const TAIL_LINES: usize = 80;
    let Ok(entries) = std::fs::read_dir(plugins.logs_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        let lines: Vec<&str> = text.lines().collect();
        let tail = &lines[lines.len().saturating_sub(TAIL_LINES)..];
        eprintln!(
            "--- the last {} lines of {} ---\n{}",
            tail.len(),
            entry.path().display(),
            tail.join("\n")
        );
    }
}
