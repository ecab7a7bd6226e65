//! The Postgres pool, the platform's migrations, and creation of databases.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};

use crate::config::PostgresConfig;

/// Every table of the platform (read models, checkpoints, leases, dead letters, the embedded
/// schema registry) comes from these migrations, applied in order by whichever part starts
/// first; sqlx serialises concurrent runs with an advisory lock.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    #[error("cannot connect to Postgres at {url}: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error("cannot create or drop database `{database}`: {source}")]
    CreateDatabase {
        database: String,
        source: sqlx::Error,
    },
    #[error("applying migrations failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("invalid Postgres URL `{url}`: {source}")]
    Url { url: String, source: sqlx::Error },
}

/// Connects a pool, creating the database first when it does not exist yet.
pub async fn connect(config: &PostgresConfig) -> Result<PgPool, PostgresError> {
    ensure_database(&config.url).await?;
    pool(config, parse(&config.url)?).await
}

/// Longest a read of the query API may run: past it Postgres cancels the statement, so that a
/// query its client abandoned (or one that was never going to end) stops costing anything.
pub const READ_STATEMENT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Connects a pool for reads only: each session cancels any statement that runs longer than
/// `statement_timeout`.
pub async fn connect_for_reads(
    config: &PostgresConfig,
    statement_timeout: std::time::Duration,
) -> Result<PgPool, PostgresError> {
    let timeout = statement_timeout.as_millis().to_string();
    let options = parse(&config.url)?.options([("statement_timeout", timeout.as_str())]);
    pool(config, options).await
}

async fn pool(config: &PostgresConfig, options: PgConnectOptions) -> Result<PgPool, PostgresError> {
    PgPoolOptions::new()
        .max_connections(config.max_connections)
        .connect_with(options)
        .await
        .map_err(|source| PostgresError::Connect {
            url: redact(&config.url),
            source,
        })
}

/// Connects and brings the schema up to date.
pub async fn connect_and_migrate(config: &PostgresConfig) -> Result<PgPool, PostgresError> {
    let pool = connect(config).await?;
    MIGRATOR.run(&pool).await?;
    Ok(pool)
}

/// Creates the database named in `url` when it is missing, through the server's `postgres`
/// database.
pub async fn ensure_database(url: &str) -> Result<(), PostgresError> {
    let Some((mut admin, database)) = admin_connection(url).await? else {
        return Ok(());
    };
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&database)
            .fetch_one(&mut admin)
            .await
            .map_err(|source| PostgresError::CreateDatabase {
                database: database.clone(),
                source,
            })?;
    if !exists {
        let statement = format!("CREATE DATABASE \"{}\"", database.replace('"', "\"\""));
        // Two parts starting at once may both try: losing that race is fine.
        if let Err(source) = sqlx::query(&statement).execute(&mut admin).await {
            let raced = has_code(&source, "42P04") || is_unique_violation(&source);
            if !raced {
                return Err(PostgresError::CreateDatabase { database, source });
            }
        }
    }
    admin.close().await.ok();
    Ok(())
}

/// Drops the database named in `url`, closing its sessions; returns whether it existed.
pub async fn drop_database(url: &str) -> Result<bool, PostgresError> {
    let Some((mut admin, database)) = admin_connection(url).await? else {
        return Ok(false);
    };
    let statement = format!(
        "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
        database.replace('"', "\"\"")
    );
    let failed = |source| PostgresError::CreateDatabase {
        database: database.clone(),
        source,
    };
    let existed: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&database)
            .fetch_one(&mut admin)
            .await
            .map_err(failed)?;
    if existed {
        sqlx::query(&statement)
            .execute(&mut admin)
            .await
            .map_err(failed)?;
    }
    admin.close().await.ok();
    Ok(existed)
}

/// A connection to the server's `postgres` database, and the database `url` names (none when
/// it names none).
async fn admin_connection(
    url: &str,
) -> Result<Option<(sqlx::PgConnection, String)>, PostgresError> {
    let options = parse(url)?;
    let Some(database) = options.get_database().map(str::to_owned) else {
        return Ok(None);
    };
    let admin = options
        .database("postgres")
        .connect()
        .await
        .map_err(|source| PostgresError::Connect {
            url: redact(url),
            source,
        })?;
    Ok(Some((admin, database)))
}

/// The same server URL with another database name.
pub fn with_database(url: &str, database: &str) -> Result<String, PostgresError> {
    let options = parse(url)?;
    Ok(options.database(database).to_url_lossy().to_string())
}

fn parse(url: &str) -> Result<PgConnectOptions, PostgresError> {
    PgConnectOptions::from_str(url).map_err(|source| PostgresError::Url {
        url: redact(url),
        source,
    })
}

/// The URL without its password, for messages.
pub(crate) fn redact(url: &str) -> String {
    match PgConnectOptions::from_str(url) {
        Ok(options) => format!(
            "{}:{}/{}",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or_default()
        ),
        Err(_) => "<unparsable url>".to_owned(),
    }
}

/// Whether `error` is Postgres's SQLSTATE `code`.
fn has_code(error: &sqlx::Error, code: &str) -> bool {
    error
        .as_database_error()
        .and_then(|e| e.code())
        .is_some_and(|c| c == code)
}

/// A table that does not exist (42P01): a consumer's schema before its first start.
pub fn is_undefined_table(error: &sqlx::Error) -> bool {
    has_code(error, "42P01")
}

/// A unique constraint refused the row (23505).
pub fn is_unique_violation(error: &sqlx::Error) -> bool {
    has_code(error, "23505")
}

/// Postgres notification channels on which the catalog announces, at commit, what it changed:
/// the query API's subscriptions listen to them.
pub mod channels {
    use sqlx::PgConnection;

    /// Plugins' rows changed; the payload is a JSON array of plugin ids.
    pub const PLUGIN_CHANGED: &str = "plexica_plugin_changed";
    /// Operations (a command, or the saga it started) have new events; the payload is a JSON
    /// array of the operations' ids.
    pub const OPERATION_PROGRESSED: &str = "plexica_operation_progressed";

    /// Postgres refuses a payload of 8000 bytes or more.
    const PAYLOAD_LIMIT: usize = 7999;

    /// Announces `ids` on `channel` at commit, a batch's worth in a few notifications: a
    /// notification per row cost Postgres about as much as writing the row. An id that could
    /// not fit a payload alone is left out (only a forged record carries one, and Postgres
    /// would fail the whole batch on it).
    pub async fn announce(
        conn: &mut PgConnection,
        channel: &str,
        ids: impl IntoIterator<Item = impl AsRef<str>>,
    ) -> Result<(), sqlx::Error> {
        let payloads = payloads(ids);
        if payloads.is_empty() {
            return Ok(());
        }
        sqlx::query("SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payload")
            .bind(channel)
            .bind(payloads)
            .execute(conn)
            .await?;
        Ok(())
    }

    /// The ids as JSON arrays, each under Postgres's payload limit, in their order.
    fn payloads(ids: impl IntoIterator<Item = impl AsRef<str>>) -> Vec<String> {
        let mut payloads = Vec::new();
        let mut current = String::new();
        for id in ids {
            let Ok(quoted) = serde_json::to_string(id.as_ref()) else {
                continue;
            };
            // "[" + the id + "]"
            if quoted.len() + 2 > PAYLOAD_LIMIT {
                tracing::warn!(
                    bytes = id.as_ref().len(),
                    "an id too long to announce left out"
                );
                continue;
            }
            if !current.is_empty() && current.len() + 1 + quoted.len() + 1 > PAYLOAD_LIMIT {
                current.push(']');
                payloads.push(std::mem::take(&mut current));
            }
            current.push(if current.is_empty() { '[' } else { ',' });
            current.push_str(&quoted);
        }
        if !current.is_empty() {
            current.push(']');
            payloads.push(current);
        }
        payloads
    }

    /// The ids a payload announces: a JSON array, or one bare id as a catalog of an earlier
    /// release announced them, a notification per row.
    pub fn ids(payload: &str) -> Vec<String> {
        serde_json::from_str(payload).unwrap_or_else(|_| vec![payload.to_owned()])
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn a_batch_of_ids_is_one_payload_that_reads_back_as_its_ids() {
            let announced = ["billing", "crm", "a\"quoted\"\nid"];
            let payloads = payloads(announced);
            assert_eq!(payloads.len(), 1);
            assert_eq!(ids(&payloads[0]), ["billing", "crm", "a\"quoted\"\nid"]);
        }

        #[test]
        fn many_ids_are_split_under_postgres_s_payload_limit_in_their_order() {
            let many: Vec<String> = (0..2000).map(|i| format!("plugin-{i:06}")).collect();
            let payloads = payloads(&many);
            assert!(payloads.len() > 1);
            assert!(payloads.iter().all(|p| p.len() <= PAYLOAD_LIMIT));
            let read: Vec<String> = payloads.iter().flat_map(|p| ids(p)).collect();
            assert_eq!(read, many);
        }

        #[test]
        fn an_id_too_long_for_any_payload_is_left_out() {
            let long = "x".repeat(PAYLOAD_LIMIT);
            let payloads = payloads(["before", long.as_str(), "after"]);
            assert_eq!(payloads, [r#"["before","after"]"#]);
        }

        #[test]
        fn nothing_to_announce_is_no_payload() {
            assert!(payloads(Vec::<String>::new()).is_empty());
        }

        #[test]
        fn a_bare_id_of_an_earlier_release_reads_as_itself() {
            assert_eq!(ids("billing"), ["billing"]);
            assert_eq!(ids("[not json"), ["[not json"]);
        }
    }
}
