//! The spec's read-only REST routes (spec 004 section 8), over the same read models as GraphQL.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use infra::actor::Actor;
use infra::http::Problem;
use infra::openapi::Problems;
use infra::policy::Access;
use serde::Deserialize;
use sqlx::PgPool;

use crate::consistency::Consistent;
use crate::registry::VERSION_COLUMNS;
use crate::schema::{CATALOG, PLUGIN_COLUMNS, Plugin, TenantPlugin};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Page {
    limit: Option<i64>,
    after: Option<String>,
}

fn internal(error: sqlx::Error) -> Problem {
    tracing::error!(%error, "read model query failed");
    Problem::internal("the read model could not be queried")
}

/// `GET /api/v1/plugins`: registered plugins by id, `limit` (1–100, default 50) after `after`.
#[utoipa::path(
    get,
    path = "/api/v1/plugins",
    tag = "reads",
    params(("limit" = Option<i64>, Query, description = "1 to 100, default 50"), ("after" = Option<String>, Query, description = "the last plugin id of the previous page"), ("X-Consistency-Token" = Option<String>, Header, description = "wait until the read models have applied these events")),
    responses((status = 200, description = "registered plugins by id", body = serde_json::Value), Problems),
    security(("bearer" = []))
)]
pub async fn list_plugins(
    State(pool): State<PgPool>,
    actor: Actor,
    _read_after: Consistent,
    page: Result<Query<Page>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, Problem> {
    actor.authorize(Access::ReadRegistry)?;
    let Query(page) = page.map_err(|e| Problem::invalid_query(e.body_text()))?;
    let limit = page.limit.unwrap_or(50).clamp(1, 100);
    let plugins: Vec<Plugin> = sqlx::query_as(&format!(
        "SELECT {PLUGIN_COLUMNS} FROM {CATALOG}.plugins
         WHERE $1::text IS NULL OR id > $1 ORDER BY id LIMIT $2"
    ))
    .bind(page.after)
    .bind(limit)
    .fetch_all(&pool)
    .await
    .map_err(internal)?;
    Ok(Json(serde_json::json!({
        "plugins": plugins.iter().map(Plugin::to_json).collect::<Vec<_>>(),
    })))
}

/// `GET /api/v1/plugins/{id}`: the plugin with its registry entry (`versions`, `categories`,
/// `tags`, `rating`).
#[utoipa::path(
    get,
    path = "/api/v1/plugins/{id}",
    tag = "reads",
    params(("id" = String, Path), ("X-Consistency-Token" = Option<String>, Header)),
    responses((status = 200, description = "the plugin with its registry entry", body = serde_json::Value), Problems),
    security(("bearer" = []))
)]
pub async fn get_plugin(
    State(pool): State<PgPool>,
    actor: Actor,
    _read_after: Consistent,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, Problem> {
    actor.authorize(Access::ReadRegistry)?;
    let plugin: Option<Plugin> = sqlx::query_as(&format!(
        "SELECT {PLUGIN_COLUMNS} FROM {CATALOG}.plugins WHERE id = $1"
    ))
    .bind(&id)
    .fetch_optional(&pool)
    .await
    .map_err(internal)?;
    let Some(plugin) = plugin else {
        return Err(
            Problem::new(StatusCode::NOT_FOUND, "not-found", "No such plugin")
                .detail(format!("no plugin `{id}` is registered")),
        );
    };
    let mut body = plugin.to_json();
    if let Some(fields) = body.as_object_mut() {
        fields.extend(registry_entry(&pool, &id).await.map_err(internal)?);
    }
    Ok(Json(body))
}

#[derive(sqlx::FromRow)]
struct PublishedVersion {
    version: String,
    release_notes: Option<String>,
    yanked: bool,
    yank_reason: Option<String>,
    deprecated: bool,
    deprecation_message: Option<String>,
    published_at: chrono::DateTime<chrono::Utc>,
}

/// The registry's fields of plugin `id`: empty lists and no rating before any registry event.
async fn registry_entry(
    pool: &PgPool,
    id: &str,
) -> Result<serde_json::Map<String, serde_json::Value>, sqlx::Error> {
    let versions: Vec<PublishedVersion> = sqlx::query_as(&format!(
        "SELECT {VERSION_COLUMNS}
         FROM {CATALOG}.plugin_versions WHERE plugin_id = $1 ORDER BY published_at, version"
    ))
    .bind(id)
    .fetch_all(pool)
    .await?;
    let labels: Option<(Vec<String>, Vec<String>, bool)> = sqlx::query_as(&format!(
        "SELECT categories, tags, verified FROM {CATALOG}.plugin_registry WHERE plugin_id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    let (average, count): (Option<f64>, i64) = sqlx::query_as(&format!(
        "SELECT avg(rating)::float8, count(*) FROM {CATALOG}.plugin_reviews WHERE plugin_id = $1"
    ))
    .bind(id)
    .fetch_one(pool)
    .await?;
    let (categories, tags, verified) = labels.unwrap_or_default();
    let versions: Vec<serde_json::Value> = versions
        .into_iter()
        .map(|v| {
            serde_json::json!({
                "version": v.version, "releaseNotes": v.release_notes,
                "yanked": v.yanked, "yankReason": v.yank_reason,
                "deprecated": v.deprecated, "deprecationMessage": v.deprecation_message,
                "publishedAt": v.published_at,
            })
        })
        .collect();
    let mut fields = serde_json::Map::new();
    fields.insert("versions".into(), versions.into());
    fields.insert("categories".into(), categories.into());
    fields.insert("tags".into(), tags.into());
    fields.insert("verified".into(), verified.into());
    fields.insert(
        "rating".into(),
        serde_json::json!({"average": average, "count": count}),
    );
    Ok(fields)
}

/// `GET /api/v1/tenant/plugins`: the plugins of the caller's tenant, enabled or disabled
/// (spec 004's `tenant_plugins`), with each plugin's name, version and global status.
#[utoipa::path(
    get,
    path = "/api/v1/tenant/plugins",
    tag = "reads",
    params(("X-Consistency-Token" = Option<String>, Header)),
    responses((status = 200, description = "the plugins of the caller's tenant", body = serde_json::Value), Problems),
    security(("bearer" = []))
)]
pub async fn list_tenant_plugins(
    State(pool): State<PgPool>,
    actor: Actor,
    _read_after: Consistent,
) -> Result<Json<serde_json::Value>, Problem> {
    let tenant = actor.administered_tenant()?;
    let plugins = TenantPlugin::of_tenant(&pool, tenant)
        .await
        .map_err(internal)?;
    Ok(Json(serde_json::json!({
        "tenantId": tenant,
        "plugins": plugins.iter().map(TenantPlugin::to_json).collect::<Vec<_>>(),
    })))
}

/// The read routes, described for the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    list_plugins,
    get_plugin,
    list_tenant_plugins,
    crate::asyncapi::asyncapi,
    crate::webhooks::list_webhooks,
    crate::webhooks::get_webhook,
    crate::webhooks::list_deliveries
))]
struct Doc;

pub fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi;
    Doc::openapi()
}
