//! A small Confluent-compatible schema registry for Avro, persisted in Postgres, which the
//! platform serves itself on a single machine when no external registry (Redpanda's,
//! Confluent's) is configured.
//!
//! It speaks the subset of the Confluent REST API that Kafka clients and
//! `schema_registry_converter` use: registering and looking up schemas under subjects, fetching
//! them by global id or by subject and version, compatibility checks, and compatibility levels.
//!
//! # Compatibility
//!
//! **The global default level is `FULL_TRANSITIVE`**, the platform's policy for event subjects:
//! a new version must be readable by, and able to read, every earlier version of its subject,
//! so any consumer can read any producer's events whatever versions either was built with. In
//! practice a field may be added or removed only when it has a default. `PUT /config` and
//! `PUT /config/{subject}` change the level; the levels mean what they mean for Confluent
//! (non-transitive ones check against the latest version only).
//!
//! # Identity of schemas
//!
//! A schema is identified by apache-avro's JSON serialisation of the parsed schema: whitespace,
//! attribute order and the spelling of primitive types do not make a new schema; defaults,
//! docs and logical types do (the Avro *Parsing Canonical Form* drops those, so it would hand
//! out the id of a schema that decodes a timestamp as a bare `long`). Registering a schema that
//! a subject already has returns its id without a new version; the same schema under several
//! subjects has one global id.
//!
//! # Not supported
//!
//! Schema types other than Avro, schema references, deleting subjects or versions, modes and
//! contexts. `?deleted=` and `?normalize=` are accepted and ignored.
//!
//! # Who may write
//!
//! Changing a compatibility level administers the platform (`infra::policy`'s
//! `AdministerPlatform`): it needs a `super_admin` bearer token, as every other change to the
//! platform does. So does registering a schema, but for a plugin's own identity (the token the
//! platform gives each plugin it runs), which registers the subjects of its own topic
//! `plugin.{id}` and no others (`infra::policy::may_register_schema`). The platform's own components register their schemas
//! with a service token minted from the shared secret (`SchemaRegistryConfig::service_token`).
//! Reads, lookups and compatibility checks change nothing and stay open: the schemas are the
//! log's public contract (checked in under `event-schemas/schemas/`), and every consumer of
//! the log, plugins included, decodes records by asking for their schema by id.
//!
//! Errors are problem documents (RFC 7807) that also carry Confluent's `error_code` and
//! `message`, which Confluent clients read.

mod compatibility;
mod error;
pub mod journal;
mod store;

use std::future::Future;

use apache_avro::Schema;
use axum::body::Bytes;
use axum::extract::{FromRef, FromRequestParts, Path, Query, State};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use event_schemas::Topics;
use infra::actor::Actor;
use infra::auth::TokenKeys;
use infra::policy::{Access, may_register_schema};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use compatibility::Level;
pub use error::RegistryError;
pub use journal::Journal;
use store::{GLOBAL, Registered};

const MEDIA_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// What the handlers share: the store, the keys that verify writers' tokens, and the journal
/// that makes each write durable on the log before it is answered. Without a journal (the
/// crate's own tests) Postgres is the only copy.
#[derive(Clone, FromRef)]
struct Registry {
    pool: PgPool,
    keys: TokenKeys,
    /// Names each plugin's own topic, whose subjects its identity may register.
    topics: Topics,
    journal: Option<Journal>,
}

impl Registry {
    async fn record(&self, entries: &[journal::Entry]) -> Result<(), RegistryError> {
        if let Some(journal) = &self.journal {
            journal.append(entries).await?;
        }
        Ok(())
    }
}

/// An authenticated caller that may register schemas under some subjects: which ones, the
/// handler asks the policy once it knows the subject.
struct SchemaWriter(infra::auth::Claims);

impl<S> FromRequestParts<S> for SchemaWriter
where
    TokenKeys: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = RegistryError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let actor = Actor::from_request_parts(parts, state)
            .await
            .map_err(RegistryError::Refused)?;
        Ok(SchemaWriter(actor.0))
    }
}

/// A caller the policy lets change compatibility levels: a writer who administers the
/// platform.
struct SchemaAdmin;

impl<S> FromRequestParts<S> for SchemaAdmin
where
    TokenKeys: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = RegistryError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let SchemaWriter(writer) = SchemaWriter::from_request_parts(parts, state).await?;
        Actor(writer)
            .authorize(Access::AdministerPlatform)
            .map_err(RegistryError::Refused)?;
        Ok(SchemaAdmin)
    }
}

/// The registry's HTTP routes (Confluent REST subset), as an axum Router with state applied;
/// writes need a token that `keys` verifies.
pub fn router(pool: PgPool, keys: TokenKeys, topics: Topics, journal: Option<Journal>) -> Router {
    Router::new()
        .route("/subjects", get(list_subjects))
        .route("/subjects/{subject}", post(lookup))
        .route(
            "/subjects/{subject}/versions",
            get(list_versions).post(register),
        )
        .route("/subjects/{subject}/versions/{version}", get(get_version))
        .route(
            "/subjects/{subject}/versions/{version}/schema",
            get(get_version_schema),
        )
        .route("/schemas/ids/{id}", get(schema_by_id))
        .route("/schemas/ids/{id}/versions", get(versions_of_id))
        .route(
            "/compatibility/subjects/{subject}/versions",
            post(check_as_registration),
        )
        .route(
            "/compatibility/subjects/{subject}/versions/{version}",
            post(check_against_version),
        )
        .route("/config", get(get_global_config).put(put_global_config))
        .route(
            "/config/{subject}",
            get(get_subject_config)
                .put(put_subject_config)
                .delete(delete_subject_config),
        )
        .fallback(|| async { RegistryError::NoSuchRoute })
        .method_not_allowed_fallback(|| async { RegistryError::NoSuchMethod })
        .layer(axum::middleware::from_fn(infra::edge::refuse_nul_in_uri))
        .with_state(Registry {
            pool,
            keys,
            topics,
            journal,
        })
}

/// Serves the router on the listener until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    pool: PgPool,
    keys: TokenKeys,
    topics: Topics,
    journal: Option<Journal>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(pool, keys, topics, journal))
        .with_graceful_shutdown(shutdown)
        .await
}

/// A JSON answer with Confluent's media type, which some clients insist on.
pub(crate) fn reply(status: StatusCode, body: &impl serde::Serialize) -> Response {
    (status, [(CONTENT_TYPE, MEDIA_TYPE)], Json(body)).into_response()
}

type Answer = Result<Response, RegistryError>;

fn ok(body: &impl serde::Serialize) -> Answer {
    Ok(reply(StatusCode::OK, body))
}

/// Bodies are JSON whatever content type the client declares: Confluent clients send their own
/// media type, curl users send none.
fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, RegistryError> {
    serde_json::from_slice(body).map_err(|e| RegistryError::BadRequest(e.to_string()))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SchemaRequest {
    schema: String,
    schema_type: Option<String>,
    references: Option<Vec<serde_json::Value>>,
}

/// A schema from a request, parsed and identified.
struct Candidate {
    text: String,
    parsed: Schema,
    canonical: String,
    fingerprint: Vec<u8>,
}

impl Candidate {
    fn from_body(body: &[u8]) -> Result<Self, RegistryError> {
        let request: SchemaRequest = parse_body(body)?;
        if let Some(kind) = request.schema_type.as_deref()
            && !kind.eq_ignore_ascii_case("AVRO")
        {
            return Err(RegistryError::InvalidSchema(format!(
                "schema type {kind} is not supported, this registry holds Avro schemas only"
            )));
        }
        if request.references.is_some_and(|r| !r.is_empty()) {
            return Err(RegistryError::InvalidSchema(
                "schema references are not supported by this registry".to_owned(),
            ));
        }
        let parsed = Schema::parse_str(&request.schema)
            .map_err(|e| RegistryError::InvalidSchema(e.to_string()))?;
        let canonical = serde_json::to_string(&parsed)
            .map_err(|e| RegistryError::InvalidSchema(e.to_string()))?;
        let fingerprint = Sha256::digest(canonical.as_bytes()).to_vec();
        Ok(Self {
            text: request.schema,
            parsed,
            canonical,
            fingerprint,
        })
    }
}

/// `latest` (or Confluent's alias `-1`) is `None`.
fn parse_version(text: &str) -> Result<Option<i32>, RegistryError> {
    match text {
        "latest" | "-1" => Ok(None),
        _ => match text.parse::<i32>() {
            Ok(version) if version > 0 => Ok(Some(version)),
            _ => Err(RegistryError::InvalidVersion(text.to_owned())),
        },
    }
}

fn parse_id(text: &str) -> Result<i32, RegistryError> {
    text.parse()
        .map_err(|_| RegistryError::SchemaIdNotFound(text.to_owned()))
}

/// Problems with `candidate` following `history` under `level`: against every version for a
/// transitive level, else against `version` alone (none when `None`).
fn problems_against(
    level: Level,
    candidate: &Schema,
    history: &[Registered],
    version: Option<i32>,
) -> Result<Vec<String>, RegistryError> {
    let previous = history
        .iter()
        .filter(|r| level != Level::None && (level.is_transitive() || Some(r.version) == version))
        .map(|r| {
            Schema::parse_str(&r.schema)
                .map(|schema| (r.version, schema))
                .map_err(|e| RegistryError::UnreadableStoredSchema {
                    id: r.id,
                    reason: e.to_string(),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(compatibility::problems(level, candidate, &previous))
}

async fn register(
    SchemaWriter(writer): SchemaWriter,
    State(registry): State<Registry>,
    Path(subject): Path<String>,
    body: Bytes,
) -> Answer {
    may_register_schema(&writer, &subject, |id| registry.topics.plugin(id))
        .map_err(|denied| RegistryError::Refused(infra::actor::forbidden(denied)))?;
    let candidate = Candidate::from_body(&body)?;
    let mut tx = registry.pool.begin().await?;
    store::lock_subject(&mut *tx, &subject).await?;
    if let Some(existing) = store::find(&mut *tx, &subject, &candidate.fingerprint).await? {
        return ok(&json!({ "id": existing.id }));
    }
    let level = store::effective_level(&mut *tx, &subject).await?;
    let history = store::history(&mut *tx, &subject).await?;
    let latest = history.last().map(|r| r.version);
    let problems = problems_against(level, &candidate.parsed, &history, latest)?;
    if !problems.is_empty() {
        return Err(RegistryError::Incompatible { subject, problems });
    }
    let id = store::insert_schema(
        &mut *tx,
        &candidate.fingerprint,
        &candidate.canonical,
        &candidate.text,
    )
    .await?;
    let version = latest.unwrap_or(0) + 1;
    store::insert_version(&mut *tx, &subject, version, id).await?;
    // On the log before the commit and the answer: an id a client encodes with is never lost.
    registry
        .record(&[
            journal::Entry::Schema {
                id,
                fingerprint: hex::encode(&candidate.fingerprint),
                canonical: candidate.canonical.clone(),
                schema: candidate.text.clone(),
            },
            journal::Entry::Version {
                subject: subject.clone(),
                version,
                id,
            },
        ])
        .await?;
    tx.commit().await?;
    tracing::info!(subject, id, version, "schema registered");
    ok(&json!({ "id": id }))
}

async fn lookup(State(pool): State<PgPool>, Path(subject): Path<String>, body: Bytes) -> Answer {
    let candidate = Candidate::from_body(&body)?;
    match store::find(&pool, &subject, &candidate.fingerprint).await? {
        Some(found) => ok(&found),
        None if store::versions(&pool, &subject).await?.is_empty() => {
            Err(RegistryError::SubjectNotFound(subject))
        }
        None => Err(RegistryError::SchemaNotFound),
    }
}

async fn list_subjects(State(pool): State<PgPool>) -> Answer {
    ok(&store::subjects(&pool).await?)
}

async fn list_versions(State(pool): State<PgPool>, Path(subject): Path<String>) -> Answer {
    let versions = store::versions(&pool, &subject).await?;
    if versions.is_empty() {
        return Err(RegistryError::SubjectNotFound(subject));
    }
    ok(&versions)
}

async fn find_version(
    pool: &PgPool,
    subject: String,
    version: String,
) -> Result<Registered, RegistryError> {
    match store::version(pool, &subject, parse_version(&version)?).await? {
        Some(found) => Ok(found),
        None if store::versions(pool, &subject).await?.is_empty() => {
            Err(RegistryError::SubjectNotFound(subject))
        }
        None => Err(RegistryError::VersionNotFound { subject, version }),
    }
}

async fn get_version(
    State(pool): State<PgPool>,
    Path((subject, version)): Path<(String, String)>,
) -> Answer {
    ok(&find_version(&pool, subject, version).await?)
}

async fn get_version_schema(
    State(pool): State<PgPool>,
    Path((subject, version)): Path<(String, String)>,
) -> Answer {
    let found = find_version(&pool, subject, version).await?;
    Ok(([(CONTENT_TYPE, MEDIA_TYPE)], found.schema).into_response())
}

async fn schema_by_id(State(pool): State<PgPool>, Path(id): Path<String>) -> Answer {
    match store::schema(&pool, parse_id(&id)?).await? {
        // Confluent leaves out `schemaType` for Avro, and clients read its absence as Avro.
        Some(schema) => ok(&json!({ "schema": schema })),
        None => Err(RegistryError::SchemaIdNotFound(id)),
    }
}

async fn versions_of_id(State(pool): State<PgPool>, Path(id): Path<String>) -> Answer {
    // Nothing is ever deleted, so every stored schema has at least one version.
    let usages = store::usages(&pool, parse_id(&id)?).await?;
    if usages.is_empty() {
        return Err(RegistryError::SchemaIdNotFound(id));
    }
    let usages: Vec<_> = usages
        .into_iter()
        .map(|(subject, version)| json!({ "subject": subject, "version": version }))
        .collect();
    ok(&usages)
}

#[derive(Deserialize)]
struct CompatibilityQuery {
    #[serde(default)]
    verbose: bool,
}

/// The check a registration would make: against the latest version, or all of them.
async fn check_as_registration(
    State(pool): State<PgPool>,
    Path(subject): Path<String>,
    Query(query): Query<CompatibilityQuery>,
    body: Bytes,
) -> Answer {
    check(&pool, subject, None, query.verbose, &body).await
}

async fn check_against_version(
    State(pool): State<PgPool>,
    Path((subject, version)): Path<(String, String)>,
    Query(query): Query<CompatibilityQuery>,
    body: Bytes,
) -> Answer {
    check(&pool, subject, Some(version), query.verbose, &body).await
}

async fn check(
    pool: &PgPool,
    subject: String,
    version: Option<String>,
    verbose: bool,
    body: &[u8],
) -> Answer {
    let candidate = Candidate::from_body(body)?;
    let history = store::history(pool, &subject).await?;
    let against = match version {
        // A subject without versions accepts anything, as its first registration would.
        None => history.last().map(|r| r.version),
        Some(version) => {
            let wanted = parse_version(&version)?;
            if history.is_empty() {
                return Err(RegistryError::SubjectNotFound(subject));
            }
            let found = history
                .iter()
                .rev()
                .find(|r| wanted.is_none_or(|w| w == r.version))
                .ok_or(RegistryError::VersionNotFound {
                    subject: subject.clone(),
                    version,
                })?;
            Some(found.version)
        }
    };
    let level = store::effective_level(pool, &subject).await?;
    let problems = problems_against(level, &candidate.parsed, &history, against)?;
    let mut answer = json!({ "is_compatible": problems.is_empty() });
    if verbose {
        answer["messages"] = json!(problems);
    }
    ok(&answer)
}

#[derive(Deserialize)]
struct ConfigRequest {
    compatibility: String,
}

#[derive(Deserialize)]
struct ConfigQuery {
    #[serde(default, rename = "defaultToGlobal")]
    default_to_global: bool,
}

async fn global_level(pool: &PgPool) -> Result<Level, RegistryError> {
    Ok(store::level(pool, GLOBAL).await?.unwrap_or(Level::DEFAULT))
}

async fn set_level(registry: &Registry, subject: &str, body: &[u8]) -> Answer {
    let request: ConfigRequest = parse_body(body)?;
    let level = Level::parse(&request.compatibility).ok_or(
        RegistryError::InvalidCompatibilityLevel(request.compatibility),
    )?;
    let mut tx = registry.pool.begin().await?;
    store::set_level(&mut *tx, subject, level).await?;
    registry
        .record(&[journal::Entry::Level {
            subject: subject.to_owned(),
            level: Some(level.as_str().to_owned()),
        }])
        .await?;
    tx.commit().await?;
    // Confluent answers a PUT with the request's field name, a GET with `compatibilityLevel`.
    ok(&json!({ "compatibility": level.as_str() }))
}

async fn get_global_config(State(pool): State<PgPool>) -> Answer {
    ok(&json!({ "compatibilityLevel": global_level(&pool).await?.as_str() }))
}

async fn put_global_config(
    _: SchemaAdmin,
    State(registry): State<Registry>,
    body: Bytes,
) -> Answer {
    set_level(&registry, GLOBAL, &body).await
}

async fn get_subject_config(
    State(pool): State<PgPool>,
    Path(subject): Path<String>,
    Query(query): Query<ConfigQuery>,
) -> Answer {
    let level = match store::level(&pool, &subject).await? {
        Some(level) => level,
        None if query.default_to_global => global_level(&pool).await?,
        None => return Err(RegistryError::SubjectConfigNotFound(subject)),
    };
    ok(&json!({ "compatibilityLevel": level.as_str() }))
}

async fn put_subject_config(
    _: SchemaAdmin,
    State(registry): State<Registry>,
    Path(subject): Path<String>,
    body: Bytes,
) -> Answer {
    set_level(&registry, &subject, &body).await
}

async fn delete_subject_config(
    _: SchemaAdmin,
    State(registry): State<Registry>,
    Path(subject): Path<String>,
) -> Answer {
    let mut tx = registry.pool.begin().await?;
    let Some(level) = store::delete_level(&mut *tx, &subject).await? else {
        return Err(RegistryError::SubjectConfigNotFound(subject));
    };
    registry
        .record(&[journal::Entry::Level {
            subject: subject.clone(),
            level: None,
        }])
        .await?;
    tx.commit().await?;
    ok(&json!({ "compatibilityLevel": level.as_str() }))
}
