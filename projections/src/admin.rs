//! The projections' admin API (super_admin only): rebuild a projection without downtime and
//! follow the rebuild. Replaying a projection from an offset or a time is the DLQ admin's
//! `POST /api/v1/admin/consumers/{name}/replay`, the same for every checkpointed consumer.

use axum::extract::{FromRef, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use infra::actor::Actor;
use infra::auth::TokenKeys;
use infra::http::Problem;
use infra::openapi::Problems;
use infra::policy::Access;
use sqlx::PgPool;

use crate::rebuild::{self, PROJECTIONS, RequestError};

#[derive(Clone, FromRef)]
pub struct AdminState {
    pub pool: PgPool,
    pub keys: TokenKeys,
}

pub fn router(state: AdminState) -> Router {
    Router::new()
        .route(
            "/api/v1/admin/projections/{name}/rebuild",
            post(request_rebuild),
        )
        .route(
            "/api/v1/admin/projections/{name}/rebuilds/{id}",
            get(show_rebuild),
        )
        .with_state(state)
}

fn not_found(detail: String) -> Problem {
    Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found").detail(detail)
}

fn known_projection(name: &str) -> Result<(), Problem> {
    if PROJECTIONS.contains(&name) {
        Ok(())
    } else {
        Err(not_found(format!(
            "no projection is named `{name}`; known: {}",
            PROJECTIONS.join(", ")
        )))
    }
}

fn unavailable(error: impl std::fmt::Display) -> Problem {
    tracing::error!(%error, "projection admin action failed");
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "The projections' store is not available",
    )
    .detail("nothing was recorded; send it again")
}

fn location(rebuild: &rebuild::Rebuild) -> String {
    format!(
        "/api/v1/admin/projections/{}/rebuilds/{}",
        rebuild.projection, rebuild.id
    )
}

/// 202 with the rebuild and its URL; 409 with the one under way.
#[utoipa::path(
    post,
    path = "/api/v1/admin/projections/{name}/rebuild",
    tag = "admin",
    params(("name" = String, Path, description = "the projection: `catalog`")),
    responses((status = 202, description = "the rebuild, its URL in `Location`", body = serde_json::Value), Problems),
    security(("bearer" = []))
)]
async fn request_rebuild(
    State(state): State<AdminState>,
    actor: Actor,
    Path(name): Path<String>,
) -> Result<Response, Problem> {
    actor.authorize(Access::AdministerPlatform)?;
    known_projection(&name)?;
    match rebuild::request(&state.pool, &name, &actor.0.sub).await {
        Ok(rebuild) => Ok((
            StatusCode::ACCEPTED,
            [(header::LOCATION, location(&rebuild))],
            Json(rebuild),
        )
            .into_response()),
        Err(RequestError::AlreadyUnderWay(under_way)) => Err(Problem::new(
            StatusCode::CONFLICT,
            "rebuild-under-way",
            "A rebuild of this projection is under way",
        )
        .detail(format!(
            "rebuild {} is {}; one rebuild of a projection at a time",
            under_way.id, under_way.status
        ))
        .with("rebuild", location(&under_way))),
        Err(RequestError::Postgres(error)) => Err(unavailable(error)),
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/admin/projections/{name}/rebuilds/{id}",
    tag = "admin",
    params(("name" = String, Path), ("id" = String, Path, description = "the rebuild id (UUID)")),
    responses((status = 200, description = "the rebuild", body = serde_json::Value), Problems),
    security(("bearer" = []))
)]
async fn show_rebuild(
    State(state): State<AdminState>,
    actor: Actor,
    Path((name, id)): Path<(String, String)>,
) -> Result<Json<rebuild::Rebuild>, Problem> {
    actor.authorize(Access::AdministerPlatform)?;
    known_projection(&name)?;
    let missing = || not_found(format!("no rebuild {id} of {name}"));
    let id = uuid::Uuid::parse_str(&id).map_err(|_| missing())?;
    rebuild::find(&state.pool, &name, id)
        .await
        .map_err(unavailable)?
        .map(Json)
        .ok_or_else(missing)
}

/// The projection admin routes, described for the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(request_rebuild, show_rebuild))]
struct Doc;

pub fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi;
    Doc::openapi()
}
