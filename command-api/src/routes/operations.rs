//! A command's outcome by its id: what a client polls after a 202.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use infra::http::Problem;
use infra::openapi::Problems;
use infra::policy::Access;
use uuid::Uuid;

use crate::bus::CommandBus;
use infra::actor::Actor;

use super::ApiState;
use super::replies::outcome_body;

pub fn routes() -> Router<ApiState> {
    Router::new().route("/api/v1/operations/{id}", get(operation))
}
#[utoipa::path(
    get,
    path = "/api/v1/operations/{id}",
    tag = "commands",
    params(("id" = String, Path, description = "the command id")),
    responses((status = 200, description = "the command's outcome", body = serde_json::Value), Problems),
    security(("bearer" = []))
)]
async fn operation(
    State(bus): State<CommandBus>,
    actor: Actor,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    // An outcome names tenants and what was done to them: the same rule as GraphQL's.
    actor.authorize(Access::ReadPlatform)?;
    let id = Uuid::parse_str(&id).map_err(|_| {
        Problem::new(StatusCode::NOT_FOUND, "not-found", "No such operation")
            .detail(format!("`{id}` is not an operation id"))
    })?;
    match bus.outcomes().get(id).await {
        Ok(Some(outcome)) => Ok(outcome_body(&outcome, StatusCode::OK).into_response()),
        Ok(None) => Err(
            Problem::new(StatusCode::NOT_FOUND, "not-found", "No outcome yet")
                .detail("the operation is still pending, or unknown")
                .with("commandId", id.to_string()),
        ),
        Err(error) => Err(Problem::internal(error.to_string())),
    }
}
