//! The webhook endpoints and their deliveries, as admins read them: a super admin every
//! endpoint, a tenant admin its tenant's (another tenant's endpoint does not exist for it).
//! No answer holds a secret: the registration and each rotation are the only ones.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use infra::actor::Actor;
use infra::http::Problem;
use infra::openapi::Problems;
use infra::policy::Access;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

use crate::consistency::Consistent;
use crate::schema::CATALOG;

const DELIVERIES: &str = webhooks::store::SCHEMA;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Page {
    limit: Option<i64>,
    after: Option<Uuid>,
}

#[derive(Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    id: Uuid,
    tenant_id: Option<Uuid>,
    url: String,
    events: Vec<String>,
    description: Option<String>,
    /// Set while the endpoint is disabled (by an admin, or by the platform after a day of
    /// failed deliveries): nothing is delivered until it is enabled again.
    disabled_at: Option<DateTime<Utc>>,
    disabled_reason: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

const ENDPOINT_COLUMNS: &str = "id, tenant_id, url, events, description, disabled_at, \
     disabled_reason, created_at, updated_at";

fn internal(error: sqlx::Error) -> Problem {
    tracing::error!(%error, "webhook read failed");
    Problem::internal("the webhooks could not be read")
}

fn not_found(id: &str) -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "webhook-not-found",
        "Webhook not found",
    )
    .detail(format!("no webhook has the id `{}`", id.escape_debug()))
}

/// The tenant whose endpoints the caller sees; `None` for all of them (a super admin).
fn scope(actor: &Actor) -> Result<Option<Uuid>, Problem> {
    actor.authorize(Access::ManageWebhooks)?;
    Ok(actor.principal().tenant())
}

/// The endpoint `id` if the caller may see it.
async fn visible(pool: &PgPool, actor: &Actor, id: &str) -> Result<Endpoint, Problem> {
    let scope = scope(actor)?;
    let parsed = Uuid::parse_str(id).map_err(|_| not_found(id))?;
    sqlx::query_as(&format!(
        "SELECT {ENDPOINT_COLUMNS} FROM {CATALOG}.webhooks
         WHERE id = $1 AND NOT deleted AND ($2::uuid IS NULL OR tenant_id = $2)"
    ))
    .bind(parsed)
    .bind(scope)
    .fetch_optional(pool)
    .await
    .map_err(internal)?
    .ok_or_else(|| not_found(id))
}

/// `GET /api/v1/webhooks`: the endpoints the caller manages, by id, `limit` (1–100,
/// default 50) after `after`.
#[utoipa::path(
    get,
    path = "/api/v1/webhooks",
    tag = "reads",
    params(("limit" = Option<i64>, Query, description = "1 to 100, default 50"), ("after" = Option<String>, Query, description = "the last id of the previous page"), ("X-Consistency-Token" = Option<String>, Header, description = "wait until the read models have applied these events")),
    responses((status = 200, description = "webhook endpoints by id", body = serde_json::Value), Problems),
    security(("bearer" = []))
)]
pub async fn list_webhooks(
    State(pool): State<PgPool>,
    actor: Actor,
    _read_after: Consistent,
    page: Result<Query<Page>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, Problem> {
    let scope = scope(&actor)?;
    let Query(page) = page.map_err(|e| Problem::invalid_query(e.body_text()))?;
    let limit = page.limit.unwrap_or(50).clamp(1, 100);
    let endpoints: Vec<Endpoint> = sqlx::query_as(&format!(
        "SELECT {ENDPOINT_COLUMNS} FROM {CATALOG}.webhooks
         WHERE NOT deleted AND ($1::uuid IS NULL OR tenant_id = $1)
           AND ($2::uuid IS NULL OR id > $2)
         ORDER BY id LIMIT $3"
    ))
    .bind(scope)
    .bind(page.after)
    .bind(limit)
    .fetch_all(&pool)
    .await
    .map_err(internal)?;
    Ok(Json(serde_json::json!({ "webhooks": endpoints })))
}

/// `GET /api/v1/webhooks/{id}`.
#[utoipa::path(
    get,
    path = "/api/v1/webhooks/{id}",
    tag = "reads",
    params(("id" = String, Path, description = "the webhook id (UUID)"), ("X-Consistency-Token" = Option<String>, Header, description = "wait until the read models have applied these events")),
    responses((status = 200, description = "the endpoint", body = serde_json::Value), Problems),
    security(("bearer" = []))
)]
pub async fn get_webhook(
    State(pool): State<PgPool>,
    actor: Actor,
    _read_after: Consistent,
    Path(id): Path<String>,
) -> Result<Json<Endpoint>, Problem> {
    visible(&pool, &actor, &id).await.map(Json)
}

#[derive(Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
struct Delivery {
    seq: i64,
    event_id: Uuid,
    event_type: String,
    status: String,
    attempts: i32,
    next_attempt_at: DateTime<Utc>,
    last_status: Option<i32>,
    last_error: Option<String>,
    created_at: DateTime<Utc>,
    delivered_at: Option<DateTime<Utc>>,
    /// Each attempt: `{at, statusCode, error, durationMs}`.
    #[sqlx(json)]
    attempt_log: serde_json::Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryPage {
    limit: Option<i64>,
    /// The `seq` of the last delivery of the previous page (newest first).
    before: Option<i64>,
    status: Option<String>,
}

/// `GET /api/v1/webhooks/{id}/deliveries`: the deliveries to the endpoint, newest first,
/// each with its attempts (the "webhook logs").
#[utoipa::path(
    get,
    path = "/api/v1/webhooks/{id}/deliveries",
    tag = "reads",
    params(("id" = String, Path, description = "the webhook id (UUID)"), ("limit" = Option<i64>, Query, description = "1 to 100, default 50"), ("before" = Option<i64>, Query, description = "the last seq of the previous page"), ("status" = Option<String>, Query, description = "PENDING, DELIVERED or FAILED")),
    responses((status = 200, description = "deliveries, newest first", body = serde_json::Value), Problems),
    security(("bearer" = []))
)]
pub async fn list_deliveries(
    State(pool): State<PgPool>,
    actor: Actor,
    Path(id): Path<String>,
    page: Result<Query<DeliveryPage>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, Problem> {
    let endpoint = visible(&pool, &actor, &id).await?;
    let Query(page) = page.map_err(|e| Problem::invalid_query(e.body_text()))?;
    if let Some(status) = &page.status
        && !matches!(status.as_str(), "PENDING" | "DELIVERED" | "FAILED")
    {
        return Err(Problem::invalid_query(format!(
            "status `{}` is not PENDING, DELIVERED or FAILED",
            status.escape_debug()
        )));
    }
    let limit = page.limit.unwrap_or(50).clamp(1, 100);
    let deliveries: Vec<Delivery> = sqlx::query_as(&format!(
        "SELECT d.seq, d.event_id, d.event_type, d.status, d.attempts, d.next_attempt_at,
                d.last_status, d.last_error, d.created_at, d.delivered_at,
                coalesce((SELECT jsonb_agg(jsonb_build_object(
                              'at', a.attempted_at, 'statusCode', a.status_code,
                              'error', a.error, 'durationMs', a.duration_ms)
                          ORDER BY a.attempt)
                          FROM {DELIVERIES}.attempts a WHERE a.delivery_seq = d.seq),
                         '[]'::jsonb) AS attempt_log
         FROM {DELIVERIES}.deliveries d
         WHERE d.webhook_id = $1 AND ($2::bigint IS NULL OR d.seq < $2)
           AND ($3::text IS NULL OR d.status = $3)
         ORDER BY d.seq DESC LIMIT $4"
    ))
    .bind(endpoint.id)
    .bind(page.before)
    .bind(page.status)
    .bind(limit)
    .fetch_all(&pool)
    .await
    .map_err(internal)?;
    Ok(Json(serde_json::json!({ "deliveries": deliveries })))
}
