//! The registry's queries. Each takes any executor so that reads use the pool and registration
//! runs them inside its transaction.

use serde::Serialize;
use sqlx::PgExecutor;

use crate::compatibility::Level;

/// The key of the global compatibility level in `schema_registry_config`.
pub(crate) const GLOBAL: &str = "";

#[derive(Debug, Serialize, sqlx::FromRow)]
pub(crate) struct Registered {
    pub subject: String,
    pub id: i32,
    pub version: i32,
    pub schema: String,
}

const REGISTERED: &str = "SELECT v.subject, s.id, v.version, s.schema \
     FROM schema_registry_subject_versions v JOIN schema_registry_schemas s ON s.id = v.schema_id";

pub(crate) async fn subjects(db: impl PgExecutor<'_>) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT DISTINCT subject FROM schema_registry_subject_versions ORDER BY subject",
    )
    .fetch_all(db)
    .await
}

pub(crate) async fn versions(db: impl PgExecutor<'_>, subject: &str) -> sqlx::Result<Vec<i32>> {
    sqlx::query_scalar(
        "SELECT version FROM schema_registry_subject_versions WHERE subject = $1 ORDER BY version",
    )
    .bind(subject)
    .fetch_all(db)
    .await
}

/// One version of `subject`, or its latest when `version` is `None`.
pub(crate) async fn version(
    db: impl PgExecutor<'_>,
    subject: &str,
    version: Option<i32>,
) -> sqlx::Result<Option<Registered>> {
    sqlx::query_as(&format!(
        "{REGISTERED} WHERE v.subject = $1 AND ($2::integer IS NULL OR v.version = $2) \
         ORDER BY v.version DESC LIMIT 1"
    ))
    .bind(subject)
    .bind(version)
    .fetch_optional(db)
    .await
}

/// Every version of `subject`, oldest first.
pub(crate) async fn history(
    db: impl PgExecutor<'_>,
    subject: &str,
) -> sqlx::Result<Vec<Registered>> {
    sqlx::query_as(&format!(
        "{REGISTERED} WHERE v.subject = $1 ORDER BY v.version"
    ))
    .bind(subject)
    .fetch_all(db)
    .await
}

/// The version of `subject` holding the schema with this fingerprint.
pub(crate) async fn find(
    db: impl PgExecutor<'_>,
    subject: &str,
    fingerprint: &[u8],
) -> sqlx::Result<Option<Registered>> {
    sqlx::query_as(&format!(
        "{REGISTERED} WHERE v.subject = $1 AND s.fingerprint = $2"
    ))
    .bind(subject)
    .bind(fingerprint)
    .fetch_optional(db)
    .await
}

pub(crate) async fn schema(db: impl PgExecutor<'_>, id: i32) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar("SELECT schema FROM schema_registry_schemas WHERE id = $1")
        .bind(id)
        .fetch_optional(db)
        .await
}

/// The (subject, version) pairs registering schema `id`.
pub(crate) async fn usages(db: impl PgExecutor<'_>, id: i32) -> sqlx::Result<Vec<(String, i32)>> {
    sqlx::query_as(
        "SELECT subject, version FROM schema_registry_subject_versions WHERE schema_id = $1 \
         ORDER BY subject, version",
    )
    .bind(id)
    .fetch_all(db)
    .await
}

/// The level configured for `subject` (or [`GLOBAL`]), if any.
pub(crate) async fn level(db: impl PgExecutor<'_>, subject: &str) -> sqlx::Result<Option<Level>> {
    let name: Option<String> =
        sqlx::query_scalar("SELECT compatibility FROM schema_registry_config WHERE subject = $1")
            .bind(subject)
            .fetch_optional(db)
            .await?;
    name.map(|name| parse_level(&name)).transpose()
}

/// The level that governs `subject`: its own, else the global one, else the default.
pub(crate) async fn effective_level(db: impl PgExecutor<'_>, subject: &str) -> sqlx::Result<Level> {
    let name: Option<String> = sqlx::query_scalar(
        "SELECT compatibility FROM schema_registry_config WHERE subject IN ($1, '') \
         ORDER BY subject = '' LIMIT 1",
    )
    .bind(subject)
    .fetch_optional(db)
    .await?;
    Ok(match name {
        Some(name) => parse_level(&name)?,
        None => Level::DEFAULT,
    })
}

pub(crate) async fn set_level(
    db: impl PgExecutor<'_>,
    subject: &str,
    level: Level,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO schema_registry_config (subject, compatibility) VALUES ($1, $2) \
         ON CONFLICT (subject) DO UPDATE SET compatibility = EXCLUDED.compatibility",
    )
    .bind(subject)
    .bind(level.as_str())
    .execute(db)
    .await?;
    Ok(())
}

/// Removes the level of `subject`, answering the one it had.
pub(crate) async fn delete_level(
    db: impl PgExecutor<'_>,
    subject: &str,
) -> sqlx::Result<Option<Level>> {
    let name: Option<String> = sqlx::query_scalar(
        "DELETE FROM schema_registry_config WHERE subject = $1 RETURNING compatibility",
    )
    .bind(subject)
    .fetch_optional(db)
    .await?;
    name.map(|name| parse_level(&name)).transpose()
}

/// Serialises registrations under one subject until the transaction ends, so that version
/// numbers are read and written by one registration at a time. The first key keeps this lock
/// apart from the platform's other advisory locks.
pub(crate) async fn lock_subject(db: impl PgExecutor<'_>, subject: &str) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('schema_registry_subject'), hashtext($1))")
        .bind(subject)
        .execute(db)
        .await?;
    Ok(())
}

/// The id of the schema with this fingerprint, inserting it when new.
pub(crate) async fn insert_schema(
    db: impl PgExecutor<'_>,
    fingerprint: &[u8],
    canonical: &str,
    schema: &str,
) -> sqlx::Result<i32> {
    // The no-op update makes RETURNING yield the existing row's id too, including when another
    // subject inserts the same schema concurrently (the insert waits for it, then conflicts).
    sqlx::query_scalar(
        "INSERT INTO schema_registry_schemas (fingerprint, canonical, schema) VALUES ($1, $2, $3) \
         ON CONFLICT (fingerprint) DO UPDATE SET fingerprint = EXCLUDED.fingerprint RETURNING id",
    )
    .bind(fingerprint)
    .bind(canonical)
    .bind(schema)
    .fetch_one(db)
    .await
}

pub(crate) async fn insert_version(
    db: impl PgExecutor<'_>,
    subject: &str,
    version: i32,
    schema_id: i32,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO schema_registry_subject_versions (subject, version, schema_id) \
         VALUES ($1, $2, $3)",
    )
    .bind(subject)
    .bind(version)
    .bind(schema_id)
    .execute(db)
    .await?;
    Ok(())
}

fn parse_level(name: &str) -> sqlx::Result<Level> {
    Level::parse(name)
        .ok_or_else(|| sqlx::Error::Decode(format!("unknown compatibility level {name:?}").into()))
}
