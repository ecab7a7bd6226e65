//! REST commands of a plugin's lifecycle (spec 004 section 8): register, install, enable,
//! disable, update and uninstall, by super admins; and the manifest's JSON Schema.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use domain::plugin::{MANIFEST_SCHEMA, Manifest, PluginCommand, PluginId};
use domain::{Command, FieldError};
use infra::edge::optional_document;
use infra::http::{JsonBody, Problem};
use infra::openapi::Problems;
use infra::policy::Access;
use serde::Deserialize;

use crate::bus::CommandBus;
use infra::actor::Actor;

use super::ApiState;
use super::openapi::CommandReplies;
use super::replies::{Reply, invalid_input, submit};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/plugins", post(register_plugin))
        .route("/api/v1/plugins/{id}", delete(uninstall_plugin))
        .route("/api/v1/plugins/{id}/install", post(install_plugin))
        .route("/api/v1/plugins/{id}/enable", post(enable_plugin))
        .route("/api/v1/plugins/{id}/disable", post(disable_plugin))
        .route("/api/v1/plugins/{id}/update", post(update_plugin))
        .route("/api/v1/schemas/plugin-manifest.json", get(manifest_schema))
}
#[utoipa::path(
    post,
    path = "/api/v1/plugins",
    tag = "commands",
    request_body(content = serde_json::Value, description = "a plugin manifest (its JSON Schema: /api/v1/schemas/plugin-manifest.json)"),
    responses(CommandReplies, Problems),
    security(("bearer" = []))
)]
async fn register_plugin(
    State(bus): State<CommandBus>,
    actor: Actor,
    headers: HeaderMap,
    JsonBody(document): JsonBody<serde_json::Value>,
) -> Result<Response, Problem> {
    actor.authorize(Access::AdministerPlatform)?;
    let manifest = Manifest::parse(document).map_err(invalid_input)?;
    let location = format!("/api/v1/plugins/{}", manifest.id);
    let command = Command::Plugin {
        id: manifest.id.clone(),
        command: PluginCommand::Register { manifest },
    };
    submit(&bus, &actor, &headers, command, Reply::Created(location)).await
}

pub(super) fn plugin_id(id: &str) -> Result<PluginId, Problem> {
    PluginId::parse(id).map_err(|e| invalid_input(vec![FieldError::new("/id", e.message)]))
}

/// A lifecycle command without parameters beyond the plugin.
async fn lifecycle(
    bus: &CommandBus,
    actor: &Actor,
    headers: &HeaderMap,
    id: &str,
    command: PluginCommand,
    reply: Reply,
) -> Result<Response, Problem> {
    actor.authorize(Access::AdministerPlatform)?;
    let id = plugin_id(id)?;
    submit(bus, actor, headers, Command::Plugin { id, command }, reply).await
}

/// Starts the install saga; the reply is 202 and the operation URL follows its steps.
#[utoipa::path(
    post,
    path = "/api/v1/plugins/{id}/install",
    tag = "commands",
    params(("id" = String, Path, description = "the plugin id")),
    responses(CommandReplies, Problems),
    security(("bearer" = []))
)]
async fn install_plugin(
    State(bus): State<CommandBus>,
    actor: Actor,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    lifecycle(
        &bus,
        &actor,
        &headers,
        &id,
        PluginCommand::Install,
        Reply::Started,
    )
    .await
}

#[utoipa::path(
    post,
    path = "/api/v1/plugins/{id}/enable",
    tag = "commands",
    params(("id" = String, Path, description = "the plugin id")),
    responses(CommandReplies, Problems),
    security(("bearer" = []))
)]
async fn enable_plugin(
    State(bus): State<CommandBus>,
    actor: Actor,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    lifecycle(
        &bus,
        &actor,
        &headers,
        &id,
        PluginCommand::Enable,
        Reply::Done,
    )
    .await
}

/// The optional body of disable and suspend.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct WithReason {
    pub(super) reason: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/v1/plugins/{id}/disable",
    tag = "commands",
    params(("id" = String, Path, description = "the plugin id")),
    request_body(content = Option<WithReason>, description = "optional"),
    responses(CommandReplies, Problems),
    security(("bearer" = []))
)]
async fn disable_plugin(
    State(bus): State<CommandBus>,
    actor: Actor,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, Problem> {
    // The body is optional: an admin disabling a plugin need not say why.
    let reason = optional_document::<WithReason>(&body)?.and_then(|b| b.reason);
    lifecycle(
        &bus,
        &actor,
        &headers,
        &id,
        PluginCommand::Disable { reason },
        Reply::Done,
    )
    .await
}

#[utoipa::path(
    post,
    path = "/api/v1/plugins/{id}/update",
    tag = "commands",
    params(("id" = String, Path, description = "the plugin id")),
    request_body(content = serde_json::Value, description = "a plugin manifest (its JSON Schema: /api/v1/schemas/plugin-manifest.json)"),
    responses(CommandReplies, Problems),
    security(("bearer" = []))
)]
async fn update_plugin(
    State(bus): State<CommandBus>,
    actor: Actor,
    headers: HeaderMap,
    Path(id): Path<String>,
    JsonBody(document): JsonBody<serde_json::Value>,
) -> Result<Response, Problem> {
    actor.authorize(Access::AdministerPlatform)?;
    let id = plugin_id(&id)?;
    let manifest = Manifest::parse(document).map_err(invalid_input)?;
    if manifest.id != id {
        return Err(invalid_input(vec![FieldError::new(
            "/id",
            format!("the manifest is for `{}`, not `{id}`", manifest.id),
        )]));
    }
    let command = Command::Plugin {
        id,
        command: PluginCommand::Update { manifest },
    };
    submit(&bus, &actor, &headers, command, Reply::Started).await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct UninstallOptions {
    #[serde(default)]
    purge_data: bool,
}

#[utoipa::path(
    delete,
    path = "/api/v1/plugins/{id}",
    tag = "commands",
    params(("id" = String, Path, description = "the plugin id"), ("purge_data" = Option<bool>, Query, description = "also drop the plugin's tenant data")),
    responses(CommandReplies, Problems),
    security(("bearer" = []))
)]
async fn uninstall_plugin(
    State(bus): State<CommandBus>,
    actor: Actor,
    headers: HeaderMap,
    Path(id): Path<String>,
    options: Result<Query<UninstallOptions>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    let Query(options) = options.map_err(|e| Problem::invalid_query(e.body_text()))?;
    let command = PluginCommand::Uninstall {
        purge_data: options.purge_data,
    };
    lifecycle(&bus, &actor, &headers, &id, command, Reply::Started).await
}

#[utoipa::path(
    get,
    path = "/api/v1/schemas/plugin-manifest.json",
    tag = "commands",
    responses((status = 200, description = "the manifest's JSON Schema", body = serde_json::Value, content_type = "application/schema+json"))
)]
async fn manifest_schema() -> Response {
    (
        [(header::CONTENT_TYPE, "application/schema+json")],
        MANIFEST_SCHEMA,
    )
        .into_response()
}
