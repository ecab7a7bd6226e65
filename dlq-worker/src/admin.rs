//! The DLQ's admin API (super_admin only). Every action is first a record on `plexica.dlq`,
//! so the DLQ's log is the audit of what admins did; the worker and the consumers act on
//! those records, and the reply is 202 with the record's position.

use axum::extract::{FromRef, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use event_schemas::Topics;
use event_schemas::topics::{PLUGIN_CONSUMER_PREFIX, RETRYING_CONSUMERS, takes_retries};
use infra::actor::Actor;
use infra::auth::TokenKeys;
use infra::dead_letter::{self, control, header, record};
use infra::http::{JsonBody, Problem};
use infra::openapi::Problems;
use infra::policy::Access;
use rdkafka::producer::FutureProducer;
use serde::Deserialize;
use serde_json::json;
use sqlx::PgPool;

use crate::SCHEMA;

#[derive(Clone, FromRef)]
pub struct AdminState {
    pub producer: FutureProducer,
    pub topics: Topics,
    pub pool: PgPool,
    pub keys: TokenKeys,
}

pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/api/v1/admin/dlq/retry", post(retry_matching))
        .route("/api/v1/admin/dlq/{id}/retry", post(retry_one))
        .route("/api/v1/admin/dlq/{id}/discard", post(discard))
        .route(
            "/api/v1/admin/dlq/keys/{consumer}/{key}/release",
            post(release_key),
        )
        .route("/api/v1/admin/consumers/{consumer}/replay", post(replay))
        .with_state(state)
}

fn invalid(pointer: &str, message: impl Into<String>) -> Problem {
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid-input",
        "The request is not valid",
    )
    .with(
        "errors",
        json!([{"pointer": pointer, "message": message.into()}]),
    )
}

fn unavailable(error: impl std::fmt::Display) -> Problem {
    tracing::error!(%error, "DLQ admin action failed");
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "The DLQ is not available",
    )
    .detail("the action was not recorded; send it again")
}

fn dead_letter_id(id: &str) -> Result<uuid::Uuid, Problem> {
    uuid::Uuid::parse_str(id)
        .map_err(|e| invalid("/id", format!("`{id}` is not a dead letter id: {e}")))
}

fn not_found(what: String) -> Problem {
    Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found").detail(what)
}

/// Only consumers that read a retry topic can be sent anything.
fn known_consumer(consumer: &str) -> Result<(), Problem> {
    if takes_retries(consumer) {
        Ok(())
    } else {
        Err(not_found(format!(
            "no consumer `{consumer}` takes retries; known: {} and every plugin's `{PLUGIN_CONSUMER_PREFIX}<pluginId>`",
            RETRYING_CONSUMERS.join(", ")
        )))
    }
}

fn accepted(body: serde_json::Value) -> Response {
    (StatusCode::ACCEPTED, Json(body)).into_response()
}

#[derive(sqlx::FromRow)]
struct Letter {
    id: uuid::Uuid,
    consumer: String,
    record_key: Option<String>,
    status: String,
    parked_behind: Option<uuid::Uuid>,
}

async fn letter(pool: &PgPool, id: uuid::Uuid) -> Result<Letter, Problem> {
    sqlx::query_as(&format!(
        "SELECT id, consumer, record_key, status, parked_behind FROM {SCHEMA}.dead_letters WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await
    .map_err(unavailable)?
    .ok_or_else(|| not_found(format!("no dead letter {id}")))
}

fn conflict(letter: &Letter, detail: String) -> Problem {
    Problem::new(
        StatusCode::CONFLICT,
        "dead-letter-conflict",
        "Not possible in this state",
    )
    .detail(detail)
    .with("status", &letter.status)
}

/// Records `retry-scheduled` (due now) for `letter`.
async fn schedule_retry(
    state: &AdminState,
    actor: &Actor,
    letter: &Letter,
) -> Result<(i32, i64), Problem> {
    dead_letter::publish_record(
        &state.producer,
        &state.topics.dlq(),
        record::RETRY_SCHEDULED,
        letter.record_key.as_deref().map(str::as_bytes),
        &[
            (header::ID, letter.id.to_string()),
            (header::CONSUMER, letter.consumer.clone()),
            (header::NEXT_RETRY_AT, Utc::now().to_rfc3339()),
            (header::ACTOR, actor.0.sub.clone()),
        ],
        None,
    )
    .await
    .map_err(unavailable)
}

/// `POST /api/v1/admin/dlq/{id}/retry`: retry one dead letter now.
#[utoipa::path(
    post,
    path = "/api/v1/admin/dlq/{id}/retry",
    tag = "admin",
    params(("id" = String, Path, description = "the dead letter id (UUID)")),
    responses((status = 202, description = "recorded on `plexica.dlq`", body = serde_json::Value), Problems),
    security(("bearer" = []))
)]
async fn retry_one(
    State(state): State<AdminState>,
    actor: Actor,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    actor.authorize(Access::AdministerPlatform)?;
    let letter = letter(&state.pool, dead_letter_id(&id)?).await?;
    match letter.status.as_str() {
        "FAILED" | "RETRY_SCHEDULED" => {}
        "PARKED" => {
            let head = letter
                .parked_behind
                .map(|h| h.to_string())
                .unwrap_or_default();
            return Err(conflict(
                &letter,
                format!(
                    "parked behind dead letter {head}: retry or discard that one first, or release the key"
                ),
            ));
        }
        other => {
            return Err(conflict(&letter, format!("the dead letter is {other}")));
        }
    }
    let (partition, offset) = schedule_retry(&state, &actor, &letter).await?;
    Ok(accepted(json!({
        "id": letter.id, "record": record::RETRY_SCHEDULED,
        "dlqPartition": partition, "dlqOffset": offset,
    })))
}

/// Which dead letters `POST /api/v1/admin/dlq/retry` retries; every field narrows.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RetryFilter {
    pub consumer: Option<String>,
    pub fingerprint: Option<String>,
    pub event_type: Option<String>,
    pub tenant_id: Option<String>,
    /// Dead-lettered at or after.
    pub from: Option<DateTime<Utc>>,
    /// Dead-lettered before.
    pub to: Option<DateTime<Utc>>,
}

/// Most dead letters one filtered retry schedules; the reply says when more matched.
const RETRY_BATCH: i64 = 1000;

/// `POST /api/v1/admin/dlq/retry`: retry every head dead letter matching the filter. Records
/// parked behind a head are not retried here: they follow their head, in order.
#[utoipa::path(
    post,
    path = "/api/v1/admin/dlq/retry",
    tag = "admin",
    request_body(content = RetryFilter, description = "optional: every field narrows"),
    responses((status = 202, description = "recorded on `plexica.dlq`", body = serde_json::Value), Problems),
    security(("bearer" = []))
)]
async fn retry_matching(
    State(state): State<AdminState>,
    actor: Actor,
    JsonBody(filter): JsonBody<RetryFilter>,
) -> Result<Response, Problem> {
    actor.authorize(Access::AdministerPlatform)?;
    if let (Some(from), Some(to)) = (filter.from, filter.to)
        && from >= to
    {
        return Err(invalid("/to", "`to` must be after `from`"));
    }
    let letters: Vec<Letter> = sqlx::query_as(&format!(
        "SELECT id, consumer, record_key, status, parked_behind FROM {SCHEMA}.dead_letters
         WHERE status IN ('FAILED', 'RETRY_SCHEDULED')
           AND ($1::text IS NULL OR consumer = $1)
           AND ($2::text IS NULL OR fingerprint = $2)
           AND ($3::text IS NULL OR event_type = $3)
           AND ($4::text IS NULL OR tenant_id = $4)
           AND ($5::timestamptz IS NULL OR dead_lettered_at >= $5)
           AND ($6::timestamptz IS NULL OR dead_lettered_at < $6)
         ORDER BY dlq_partition, dlq_offset LIMIT $7"
    ))
    .bind(&filter.consumer)
    .bind(&filter.fingerprint)
    .bind(&filter.event_type)
    .bind(&filter.tenant_id)
    .bind(filter.from)
    .bind(filter.to)
    .bind(RETRY_BATCH + 1)
    .fetch_all(&state.pool)
    .await
    .map_err(unavailable)?;
    let more = letters.len() as i64 > RETRY_BATCH;
    let mut ids = Vec::with_capacity(letters.len());
    for letter in letters.iter().take(RETRY_BATCH as usize) {
        schedule_retry(&state, &actor, letter).await?;
        ids.push(letter.id);
    }
    Ok(accepted(json!({
        "record": record::RETRY_SCHEDULED, "count": ids.len(), "ids": ids, "more": more,
    })))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct DiscardBody {
    reason: Option<String>,
}

/// `POST /api/v1/admin/dlq/{id}/discard` (optional body `{"reason": …}`): give a dead
/// letter up. If it was its key's head, the key's queue moves on.
#[utoipa::path(
    post,
    path = "/api/v1/admin/dlq/{id}/discard",
    tag = "admin",
    params(("id" = String, Path, description = "the dead letter id (UUID)")),
    request_body(content = DiscardBody, description = "optional"),
    responses((status = 202, description = "recorded on `plexica.dlq`", body = serde_json::Value), Problems),
    security(("bearer" = []))
)]
async fn discard(
    State(state): State<AdminState>,
    actor: Actor,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, Problem> {
    actor.authorize(Access::AdministerPlatform)?;
    // The reason becomes a header of the record on `plexica.dlq` and a row of the audit.
    let reason = infra::edge::optional_document::<DiscardBody>(&body)?.and_then(|b| b.reason);
    let letter = letter(&state.pool, dead_letter_id(&id)?).await?;
    if matches!(letter.status.as_str(), "RESOLVED" | "DISCARDED") {
        return Err(conflict(
            &letter,
            format!("the dead letter is {}", letter.status),
        ));
    }
    let mut context = vec![
        (header::ID, letter.id.to_string()),
        (header::CONSUMER, letter.consumer.clone()),
        (header::ACTOR, actor.0.sub.clone()),
    ];
    if let Some(reason) = reason {
        context.push((header::REASON, reason));
    }
    let (partition, offset) = dead_letter::publish_record(
        &state.producer,
        &state.topics.dlq(),
        record::DISCARDED,
        letter.record_key.as_deref().map(str::as_bytes),
        &context,
        None,
    )
    .await
    .map_err(unavailable)?;
    Ok(accepted(json!({
        "id": letter.id, "record": record::DISCARDED,
        "dlqPartition": partition, "dlqOffset": offset,
    })))
}

/// `POST /api/v1/admin/dlq/keys/{consumer}/{key}/release`: the consumer stops parking the
/// key at once. What was queued behind its head stays, `FAILED`, for an admin to retry or
/// discard one by one.
#[utoipa::path(
    post,
    path = "/api/v1/admin/dlq/keys/{consumer}/{key}/release",
    tag = "admin",
    params(("consumer" = String, Path), ("key" = String, Path, description = "the record key")),
    responses((status = 202, description = "recorded on `plexica.dlq`", body = serde_json::Value), Problems),
    security(("bearer" = []))
)]
async fn release_key(
    State(state): State<AdminState>,
    actor: Actor,
    Path((consumer, key)): Path<(String, String)>,
) -> Result<Response, Problem> {
    actor.authorize(Access::AdministerPlatform)?;
    known_consumer(&consumer)?;
    let parked: Option<String> = sqlx::query_scalar(&format!(
        "SELECT status FROM {SCHEMA}.parked_keys WHERE consumer = $1 AND record_key = $2"
    ))
    .bind(&consumer)
    .bind(&key)
    .fetch_optional(&state.pool)
    .await
    .map_err(unavailable)?;
    match parked.as_deref() {
        None => return Err(not_found(format!("`{consumer}` never parked key `{key}`"))),
        Some("RELEASED") => {
            return Err(
                Problem::new(StatusCode::CONFLICT, "key-not-parked", "Key not parked")
                    .detail(format!("`{consumer}` released key `{key}` already")),
            );
        }
        Some(_) => {}
    }
    crate::release(
        &state.producer,
        &state.topics,
        &consumer,
        &key,
        None,
        &actor.0.sub,
    )
    .await
    .map_err(unavailable)?;
    Ok(accepted(json!({
        "consumer": consumer, "key": key, "record": record::KEY_RELEASED,
    })))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ReplayBody {
    from_offset: Option<i64>,
    from_timestamp: Option<DateTime<Utc>>,
    /// One of the consumer's topics (all of them if absent).
    topic: Option<String>,
}

/// `POST /api/v1/admin/consumers/{consumer}/replay` with `{"fromOffset": n}` or
/// `{"fromTimestamp": "…"}`: the consumer reads its topics again from there. Its read
/// model's guards (aggregate versions) make what it had applied a no-op.
#[utoipa::path(
    post,
    path = "/api/v1/admin/consumers/{consumer}/replay",
    tag = "admin",
    params(("consumer" = String, Path)),
    request_body(content = ReplayBody),
    responses((status = 202, description = "recorded on `plexica.dlq`", body = serde_json::Value), Problems),
    security(("bearer" = []))
)]
async fn replay(
    State(state): State<AdminState>,
    actor: Actor,
    Path(consumer): Path<String>,
    JsonBody(body): JsonBody<ReplayBody>,
) -> Result<Response, Problem> {
    actor.authorize(Access::AdministerPlatform)?;
    known_consumer(&consumer)?;
    let start = match (body.from_offset, body.from_timestamp) {
        (Some(offset), None) if offset >= 0 => (header::REPLAY_FROM_OFFSET, offset.to_string()),
        (Some(_), None) => return Err(invalid("/fromOffset", "an offset is 0 or more")),
        (None, Some(time)) => (
            header::REPLAY_FROM_TIMESTAMP,
            time.timestamp_millis().to_string(),
        ),
        _ => {
            return Err(invalid(
                "",
                "send exactly one of `fromOffset` and `fromTimestamp`",
            ));
        }
    };
    let mut context = vec![
        (header::CONSUMER, consumer.clone()),
        (header::ACTOR, actor.0.sub.clone()),
        start,
    ];
    if let Some(topic) = body.topic {
        let known = event_schemas_topics(&state.topics);
        if !known.contains(&topic) {
            return Err(invalid(
                "/topic",
                format!("`{topic}` is not one of {known:?}"),
            ));
        }
        context.push((header::REPLAY_TOPIC, topic));
    }
    let (partition, offset) = dead_letter::publish_record(
        &state.producer,
        &state.topics.dlq(),
        record::REPLAY_REQUESTED,
        Some(consumer.as_bytes()),
        &context,
        None,
    )
    .await
    .map_err(unavailable)?;
    dead_letter::publish_record(
        &state.producer,
        &state.topics.retry(&consumer),
        control::REPLAY,
        None,
        &context,
        None,
    )
    .await
    .map_err(unavailable)?;
    Ok(accepted(json!({
        "consumer": consumer, "record": record::REPLAY_REQUESTED,
        "dlqPartition": partition, "dlqOffset": offset,
    })))
}

/// The topics a replay may name.
fn event_schemas_topics(topics: &Topics) -> Vec<String> {
    topics.event_topics().to_vec()
}

/// The DLQ admin routes, described for the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(retry_one, retry_matching, discard, release_key, replay))]
struct Doc;

pub fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi;
    Doc::openapi()
}
