//! The platform in processes of its own (the `platform-under-test` binary, the same library
//! and `main` as `plexica`): a test can kill it, and a bench measures its memory apart from the
//! load generator's.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use event_schemas::Topics;
use infra::auth::{Role, TokenKeys};
use infra::config::KafkaConfig;
use plexica::{Part, PlatformConfig, RunningPlatform};
use secrecy::ExposeSecret;
use sqlx::PgPool;

/// Where one platform instance keeps its state: a database and a topic prefix of its own.
#[derive(Clone)]
pub struct Isolation {
    pub config: PlatformConfig,
    pub database_url: String,
    pub pool: PgPool,
    pub kafka: KafkaConfig,
    pub topics: Topics,
}

impl Isolation {
    pub async fn fresh() -> Self {
        let config = crate::isolated_config().await;
        let pool = infra::postgres::connect(&config.postgres)
            .await
            .expect("the fresh database answers");
        Self {
            database_url: config.postgres.url.clone(),
            pool,
            topics: Topics::new(config.kafka.topic_prefix.clone(), config.kafka.partitions),
            kafka: config.kafka.clone(),
            config,
        }
    }

    /// A schema registry over this isolation's database, served by this process.
    pub async fn schema_registry(&self) -> RunningPlatform {
        plexica::start(self.config.clone(), Part::SchemaRegistry)
            .await
            .expect("the schema registry starts")
    }
}

pub struct Platform {
    child: tokio::process::Child,
    pub base: String,
    pub registry_url: String,
    secret: String,
}

impl Platform {
    /// Starts `part` (`all`, `projections`, …) of `executable` (a test's or bench's
    /// `env!("CARGO_BIN_EXE_platform-under-test")`) over `isolation`. With `registry` the part
    /// uses that schema registry; without, it serves its own.
    pub async fn start(
        executable: &str,
        part: &str,
        isolation: &Isolation,
        registry: Option<&str>,
        log: &Path,
    ) -> Self {
        Self::start_with(executable, part, isolation, registry, log, &[]).await
    }

    /// [`Platform::start`] with more environment variables (settings of the part).
    pub async fn start_with(
        executable: &str,
        part: &str,
        isolation: &Isolation,
        registry: Option<&str>,
        log: &Path,
        env: &[(&str, &str)],
    ) -> Self {
        let http = free_port();
        let own_registry = format!("127.0.0.1:{}", free_port());
        // The isolation's: a registry it serves (`Isolation::schema_registry`) verifies the
        // platform's service token with it.
        let secret = isolation.config.auth.jwt_secret.expose_secret().to_owned();
        // Appended to: a test that restarts a part keeps every run's log in one file.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("the platform's log file can be opened");
        let mut command = tokio::process::Command::new(executable);
        command
            .arg(part)
            .env("KAFKA_BROKERS", &isolation.kafka.brokers)
            .env("PLEXICA_TOPIC_PREFIX", &isolation.kafka.topic_prefix)
            .env("KAFKA_PARTITIONS", isolation.kafka.partitions.to_string())
            .env(
                "KAFKA_SESSION_TIMEOUT_MS",
                isolation.kafka.session_timeout_ms.to_string(),
            )
            .env("DATABASE_URL", &isolation.database_url)
            .env("REDIS_URL", infra::testing::redis_url())
            .env("HTTP_LISTEN", format!("127.0.0.1:{http}"))
            .env("SCHEMA_REGISTRY_LISTEN", &own_registry)
            .env("PLEXICA_JWT_SECRET", &secret)
            // The lifecycle tests of these platforms run no plugin; a test that does says so.
            .env("PLEXICA_PLUGIN_DRIVER", "simulated")
            .env(
                "RUST_LOG",
                std::env::var("PLEXICA_TEST_PLATFORM_LOG").unwrap_or_else(|_| "warn".to_owned()),
            )
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .kill_on_drop(true);
        match registry {
            // The tests' registry is a Plexica one, with the isolation's secret.
            Some(url) => command
                .env("SCHEMA_REGISTRY_URL", url)
                .env("SCHEMA_REGISTRY_PLEXICA", "true"),
            None => command.env_remove("SCHEMA_REGISTRY_URL"),
        };
        let child = command.spawn().expect("the platform process starts");
        let platform = Self {
            child,
            base: format!("http://127.0.0.1:{http}"),
            registry_url: registry
                .map(str::to_owned)
                .unwrap_or_else(|| format!("http://{own_registry}")),
            secret,
        };
        platform.wait_until_ready().await;
        platform
    }

    async fn wait_until_ready(&self) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let ready = client
                .get(format!("{}/ready", self.base))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the platform at {} did not get ready in 120 s",
                self.base
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn token(&self, role: Role, tenant: Option<&str>) -> String {
        TokenKeys::from_secret(&self.secret)
            .issue(
                "bench",
                vec![role],
                tenant.map(str::to_owned),
                chrono::Duration::hours(1),
            )
            .expect("a token signs")
    }

    /// The value of one series of its `/metrics` (the name and labels as printed), 0 until
    /// it appears.
    pub async fn metric(&self, series: &str) -> f64 {
        crate::metric_value(&self.metrics().await, series)
    }

    /// Its `/metrics` as it prints them; empty when it does not answer.
    pub async fn metrics(&self) -> String {
        match reqwest::get(format!("{}/metrics", self.base)).await {
            Ok(reply) => reply.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Resident memory now and at its peak, in MiB, as the kernel counts them.
    pub fn memory(&self) -> Memory {
        let status = self
            .child
            .id()
            .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<f64>()
                        .ok()
                })
                .map_or(f64::NAN, |kib| kib / 1024.0)
        };
        Memory {
            resident_mib: field("VmRSS:"),
            peak_mib: field("VmHWM:"),
        }
    }

    /// SIGKILL: the process dies wherever it is, as in a crash or an OOM kill.
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }

    /// SIGTERM, so that the platform stops in order, then waits for it.
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id().and_then(|pid| i32::try_from(pid).ok()) {
            // SAFETY: kill(2) on the pid of a child this process started and still owns.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        if tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

pub struct Memory {
    pub resident_mib: f64,
    pub peak_mib: f64,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free local port")
}
