//! Support for tests that run against the real Postgres, Redis and broker which
//! `cargo xtask test` provides through `PLEXICA_TEST_*` environment variables.

use sqlx::PgPool;

use crate::config::PostgresConfig;

/// Postgres server for tests (any database on it; each test gets a fresh one).
pub fn database_server_url() -> String {
    std::env::var("PLEXICA_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

pub fn redis_url() -> String {
    std::env::var("PLEXICA_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// Broker for tests: `cargo xtask test` starts a tansu with the memory engine and sets this.
pub fn kafka_brokers() -> String {
    std::env::var("PLEXICA_TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

/// The tansu binary, for tests that start a broker of their own.
pub fn tansu_binary() -> String {
    std::env::var("PLEXICA_TEST_TANSU").unwrap_or_else(|_| "tansu".to_owned())
}

/// A short unique name for isolating one test's databases, topics and groups.
pub fn unique_name(prefix: &str) -> String {
    let id = uuid::Uuid::now_v7().simple().to_string();
    // The v7 timestamp prefix is shared by tests started in the same millisecond: keep the tail.
    format!("{prefix}_{}", &id[id.len() - 12..])
}

/// Every test database's name starts with this, so a test run can clear up after itself.
pub const TEST_DATABASE_PREFIX: &str = "plexica_test_";

/// Names one run of the tests (`cargo xtask test` sets it): the run's databases carry it, so
/// that a run drops its own databases and not those of another run sharing the server.
pub const TEST_RUN_VAR: &str = "PLEXICA_TEST_RUN";

/// How the names of run `run`'s databases start (every test database's when `run` is empty).
fn database_prefix(run: &str) -> String {
    if run.is_empty() {
        TEST_DATABASE_PREFIX.to_owned()
    } else {
        format!("{TEST_DATABASE_PREFIX}{run}_")
    }
}

/// Configuration of a new, migrated database of its own.
pub async fn fresh_database(prefix: &str) -> (PostgresConfig, PgPool) {
    let run = std::env::var(TEST_RUN_VAR).unwrap_or_default();
    let name = unique_name(&format!("{}{prefix}", database_prefix(&run)));
    let url = crate::postgres::with_database(&database_server_url(), &name)
        .expect("PLEXICA_TEST_DATABASE_URL is a Postgres URL");
    let config = PostgresConfig {
        url,
        max_connections: 10,
    };
    let pool = crate::postgres::connect_and_migrate(&config)
        .await
        .expect("the test Postgres server answers and the migrations apply");
    (config, pool)
}

/// Drops the databases test run `run` created on the server at `server_url` (every test
/// database when `run` is empty) that no one uses any more; returns how many.
pub async fn drop_test_databases(
    server_url: &str,
    run: &str,
) -> Result<usize, crate::postgres::PostgresError> {
    use sqlx::Connection;
    let mut connection = sqlx::PgConnection::connect(server_url)
        .await
        .map_err(|source| crate::postgres::PostgresError::Connect {
            url: server_url.to_owned(),
            source,
        })?;
    let pattern = format!("{}%", database_prefix(run).replace('_', "\\_"));
    let names: Vec<String> =
        // A database someone is connected to belongs to a test still running, maybe of
        // another `cargo xtask test` on the same server: leave it to that run.
        sqlx::query_scalar(
            "SELECT d.datname FROM pg_database d WHERE d.datname LIKE $1
             AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datname = d.datname)",
        )
            .bind(pattern)
            .fetch_all(&mut connection)
            .await
            .map_err(|source| crate::postgres::PostgresError::CreateDatabase {
                database: TEST_DATABASE_PREFIX.to_owned(),
                source,
            })?;
    connection.close().await.ok();
    for name in &names {
        let url = crate::postgres::with_database(server_url, name)?;
        crate::postgres::drop_database(&url).await?;
    }
    Ok(names.len())
}
