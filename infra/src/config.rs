//! Configuration as typed structs, read from environment variables (or the matching
//! command-line flags) with defaults that work on one machine.
//!
//! Each service flattens the groups it needs into its own `clap::Args` struct, so every
//! setting has exactly one name across the platform.

use secrecy::{ExposeSecret, SecretString};
use std::net::SocketAddr;

use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct KafkaConfig {
    /// Bootstrap servers of the Kafka-API broker (tansu, Redpanda, Kafka).
    #[arg(
        long = "kafka-brokers",
        env = "KAFKA_BROKERS",
        default_value = "127.0.0.1:9092"
    )]
    pub brokers: String,

    /// Longest time a fetch waits for new data. The embedded broker (tansu) does not wake a
    /// waiting fetch when data arrives, so produce-to-consume latency tracks this value: keep it
    /// low there and use the broker default (500) on Redpanda.
    #[arg(
        long = "kafka-fetch-wait-max-ms",
        env = "KAFKA_FETCH_WAIT_MAX_MS",
        default_value_t = 5
    )]
    pub fetch_wait_max_ms: u32,

    /// Longest fetch wait of the consumers that no reply or read waits on (the sagas, the
    /// directory, the DLQ worker, the webhooks, the tenant schemas, and the command processor,
    /// which is handed its own process's commands and fetches only other processes'). On
    /// tansu every consumer costs the broker one fetch per wait whether or not there is data,
    /// so these poll ten times less often than the projections.
    #[arg(
        long = "kafka-background-fetch-wait-max-ms",
        env = "KAFKA_BACKGROUND_FETCH_WAIT_MAX_MS",
        default_value_t = 50
    )]
    pub background_fetch_wait_max_ms: u32,

    /// How long a consumer of the shared runner (the projections, the sagas, the DLQ worker,
    /// the webhooks, the tenant schemas) goes without a record before it rests: it pauses its
    /// partitions, which costs the broker no fetch, until its process writes to the log or
    /// its next look (`KAFKA_RESTING_LOOK_EVERY_MS`). On tansu every fetch costs a query
    /// whether or not there is data; `0`: never rest (Redpanda wakes a waiting fetch on data).
    #[arg(
        long = "kafka-rest-after-ms",
        env = "KAFKA_REST_AFTER_MS",
        default_value_t = 2_000
    )]
    pub rest_after_ms: u32,

    /// How often a resting consumer looks for records written by another process: at most
    /// this long, plus a fetch, before it sees them.
    #[arg(
        long = "kafka-resting-look-every-ms",
        env = "KAFKA_RESTING_LOOK_EVERY_MS",
        default_value_t = 500
    )]
    pub resting_look_every_ms: u32,

    /// Prefix put before every topic name and consumer group, to keep environments apart on
    /// one cluster. Empty in production; tests use it for isolation.
    #[arg(
        long = "topic-prefix",
        env = "PLEXICA_TOPIC_PREFIX",
        default_value = ""
    )]
    pub topic_prefix: String,

    /// Partitions of `plexica.commands` and of every `core.*` event topic (they must match).
    #[arg(
        long = "kafka-partitions",
        env = "KAFKA_PARTITIONS",
        default_value_t = 3
    )]
    pub partitions: i32,

    /// How long a consumer group waits for a silent member before it gives the member's
    /// partitions to the others: the pause after a crash (a clean stop leaves at once). 6 s is
    /// the least Kafka and Redpanda accept by default (`group.min.session.timeout.ms`).
    #[arg(
        long = "kafka-session-timeout-ms",
        env = "KAFKA_SESSION_TIMEOUT_MS",
        default_value_t = 6_000
    )]
    pub session_timeout_ms: u32,

    /// Replication factor for created topics (1 on a single broker, 3 on a cluster).
    #[arg(
        long = "kafka-replication-factor",
        env = "KAFKA_REPLICATION_FACTOR",
        default_value_t = 1
    )]
    pub replication_factor: i32,
}

impl KafkaConfig {
    /// [`KafkaConfig::session_timeout_ms`]; also the longest a stopping consumer waits to
    /// finish a join and to leave its group.
    pub fn session_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(u64::from(self.session_timeout_ms))
    }
}

#[derive(Clone, Args)]
pub struct PostgresConfig {
    /// Postgres connection URL of the platform's database.
    #[arg(
        id = "database_url",
        long = "database-url",
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/plexica"
    )]
    pub url: String,

    /// Largest number of pooled connections per service.
    #[arg(
        long = "database-max-connections",
        env = "DATABASE_MAX_CONNECTIONS",
        default_value_t = 10
    )]
    pub max_connections: u32,
}

/// Without the URL's password: a configuration is logged and printed.
impl std::fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("url", &crate::postgres::redact(&self.url))
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

#[derive(Debug, Clone, Args)]
pub struct RedisConfig {
    /// Redis URL: command outcomes, idempotency keys, subscription fan-out.
    #[arg(
        long = "redis-url",
        env = "REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    pub url: String,
}

#[derive(Debug, Clone, Args)]
pub struct SchemaRegistryConfig {
    /// URL of a Confluent-compatible schema registry (Redpanda's, Confluent's). When unset,
    /// the platform serves its own, Postgres-backed, on `SCHEMA_REGISTRY_LISTEN`.
    #[arg(
        id = "schema_registry_url",
        long = "schema-registry-url",
        env = "SCHEMA_REGISTRY_URL"
    )]
    pub url: Option<String>,

    /// Where the embedded schema registry listens when `SCHEMA_REGISTRY_URL` is unset.
    #[arg(
        id = "schema_registry_listen",
        long = "schema-registry-listen",
        env = "SCHEMA_REGISTRY_LISTEN",
        default_value = "127.0.0.1:8081"
    )]
    pub listen: SocketAddr,

    /// `SCHEMA_REGISTRY_URL` names a Plexica registry (`plexica schema-registry`, with the same
    /// `PLEXICA_JWT_SECRET`), which takes writes from super admins only: the platform then
    /// registers its schemas there with its service token. Leave it unset for another
    /// vendor's registry, which must never see our tokens.
    #[arg(
        id = "schema_registry_plexica",
        long = "schema-registry-plexica",
        env = "SCHEMA_REGISTRY_PLEXICA",
        default_value_t = false,
        action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub plexica: bool,
}

/// How long the platform's service token for its schema registry lives. The codec cannot
/// change its token once built, and the process holds the secret that signs tokens anyway, so
/// a shorter life would protect nothing and would break a platform that runs for long.
const SERVICE_TOKEN_DAYS: i64 = 3650;

impl SchemaRegistryConfig {
    /// The URL clients use: the configured one, or the embedded registry's.
    pub fn client_url(&self) -> String {
        self.url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.listen))
    }

    /// The bearer token the platform's components register schemas with: a `super_admin`
    /// token of the service `plexica-platform` for a Plexica registry (the embedded one, or
    /// one named by `SCHEMA_REGISTRY_URL` with `SCHEMA_REGISTRY_PLEXICA`), which refuses writes
    /// without one; none for another vendor's registry, which must never see our tokens.
    pub fn service_token(
        &self,
        keys: &crate::auth::TokenKeys,
    ) -> Result<Option<String>, crate::auth::TokenError> {
        if self.url.is_some() && !self.plexica {
            return Ok(None);
        }
        keys.issue(
            "plexica-platform",
            vec![crate::auth::Role::SuperAdmin],
            None,
            chrono::Duration::days(SERVICE_TOKEN_DAYS),
        )
        .map(Some)
    }
}

#[derive(Debug, Clone, Args)]
pub struct HttpConfig {
    /// Address the service's HTTP server listens on.
    #[arg(
        id = "http_listen",
        long = "listen",
        env = "HTTP_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, Args)]
pub struct AuthConfig {
    /// HS256 secret that signs bearer tokens. The default is public: never run with it
    /// outside a developer machine.
    /// A secret: no `Debug` of the configuration prints it.
    #[arg(long = "jwt-secret", env = "PLEXICA_JWT_SECRET", default_value = crate::auth::DEV_JWT_SECRET, hide_default_value = true, value_parser = secret)]
    pub jwt_secret: SecretString,
}

/// Reads a setting that must never be printed.
fn secret(text: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(text))
}

impl AuthConfig {
    /// A configuration signing with `secret`.
    pub fn with_secret(secret: &str) -> Self {
        AuthConfig {
            jwt_secret: SecretString::from(secret),
        }
    }

    pub fn uses_dev_secret(&self) -> bool {
        self.jwt_secret.expose_secret() == crate::auth::DEV_JWT_SECRET
    }

    pub fn keys(&self) -> crate::auth::TokenKeys {
        if self.uses_dev_secret() {
            tracing::warn!(
                "PLEXICA_JWT_SECRET is not set: tokens are signed with the public development secret. \
                 Anyone can mint a super_admin token. Set PLEXICA_JWT_SECRET outside a developer machine."
            );
        }
        crate::auth::TokenKeys::from_secret(self.jwt_secret.expose_secret())
    }
}

/// How the DLQ worker retries retryable dead letters: exponential backoff with jitter.
#[derive(Debug, Clone, Args)]
pub struct DlqConfig {
    /// Wait before the first automatic retry of a dead letter.
    #[arg(
        long = "dlq-retry-base-ms",
        env = "DLQ_RETRY_BASE_MS",
        default_value_t = 1000
    )]
    pub retry_base_ms: u64,

    /// Each further retry waits this many times longer than the one before.
    #[arg(
        long = "dlq-retry-factor",
        env = "DLQ_RETRY_FACTOR",
        default_value_t = 2.0
    )]
    pub retry_factor: f64,

    /// Longest wait between two retries.
    #[arg(
        long = "dlq-retry-max-ms",
        env = "DLQ_RETRY_MAX_MS",
        default_value_t = 300_000
    )]
    pub retry_max_ms: u64,

    /// Automatic retries of a dead letter before it waits for an admin (0: none).
    #[arg(
        long = "dlq-retry-max-attempts",
        env = "DLQ_RETRY_MAX_ATTEMPTS",
        default_value_t = 5
    )]
    pub retry_max_attempts: u32,

    /// Share of each wait taken off at random (0 to 1), so that dead letters of one outage
    /// do not all come back at the same instant.
    #[arg(
        long = "dlq-retry-jitter",
        env = "DLQ_RETRY_JITTER",
        default_value_t = 0.2
    )]
    pub retry_jitter: f64,
}

impl DlqConfig {
    /// The wait before retry `round` (1 for the first), with `random` in `[0, 1)` picking
    /// the jitter. Jitter only shortens the wait, so the cap holds.
    pub fn backoff(&self, round: u32, random: f64) -> std::time::Duration {
        let exponent = i32::try_from(round.saturating_sub(1)).unwrap_or(i32::MAX);
        let raw = self.retry_base_ms as f64 * self.retry_factor.max(1.0).powi(exponent);
        let capped = raw.min(self.retry_max_ms as f64);
        let jitter = self.retry_jitter.clamp(0.0, 1.0) * random.clamp(0.0, 1.0);
        std::time::Duration::from_millis((capped * (1.0 - jitter)).max(0.0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_debug_of_the_configuration_prints_a_secret() {
        let auth = AuthConfig::with_secret("the-signing-secret");
        let postgres = PostgresConfig {
            url: "postgres://plexica:the-db-password@db:5432/plexica".to_owned(),
            max_connections: 10,
        };
        let printed = format!("{auth:?} {postgres:?}");
        assert!(!printed.contains("the-signing-secret"), "{printed}");
        assert!(!printed.contains("the-db-password"), "{printed}");
        assert!(printed.contains("db:5432/plexica"), "{printed}");
    }

    #[test]
    fn only_a_plexica_registry_gets_the_service_token() {
        let keys = crate::auth::TokenKeys::from_secret("one");
        let registry = |url: Option<&str>, plexica| SchemaRegistryConfig {
            url: url.map(str::to_owned),
            listen: "127.0.0.1:8081".parse().expect("an address"),
            plexica,
        };
        let token = |config: SchemaRegistryConfig| {
            config
                .service_token(&keys)
                .expect("signing works")
                .map(|token| keys.verify(&token).expect("it verifies").roles)
        };
        let super_admin = Some(vec![crate::auth::Role::SuperAdmin]);
        assert_eq!(
            token(registry(None, false)),
            super_admin,
            "the embedded one"
        );
        assert_eq!(
            token(registry(Some("http://registry:8081"), true)),
            super_admin,
            "a plexica schema-registry elsewhere"
        );
        assert_eq!(token(registry(Some("http://redpanda:8081"), false)), None);
    }

    use super::DlqConfig;
    use std::time::Duration;

    fn policy() -> DlqConfig {
        DlqConfig {
            retry_base_ms: 100,
            retry_factor: 2.0,
            retry_max_ms: 500,
            retry_max_attempts: 5,
            retry_jitter: 0.5,
        }
    }

    #[test]
    fn backoff_grows_by_the_factor_up_to_the_cap() {
        let policy = policy();
        let waits: Vec<Duration> = (1..=5).map(|round| policy.backoff(round, 0.0)).collect();
        let ms = |n| Duration::from_millis(n);
        assert_eq!(waits, vec![ms(100), ms(200), ms(400), ms(500), ms(500)]);
    }

    #[test]
    fn jitter_only_shortens_the_wait() {
        let policy = policy();
        assert_eq!(policy.backoff(2, 0.999_999), Duration::from_millis(100));
        assert!(policy.backoff(4, 0.5) < policy.backoff(4, 0.0));
    }
}
