//! REST commands of the plugin registry (milestone M2.4): publishing, yanking and deprecating
//! versions and classifying plugins, by super admins; reviews, by any signed-in admin.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{post, put};
use domain::plugin::{Manifest, PluginId};
use domain::registry::{Classification, Rating, RegistryCommand, ReviewComment};
use domain::tenant::TenantId;
use domain::{Command, FieldError};
use infra::actor::Actor;
use infra::http::{JsonBody, Problem};
use infra::policy::Access;
use serde::Deserialize;

use super::ApiState;
use super::openapi::CommandReplies;
use super::plugins::plugin_id;
use super::replies::{Reply, invalid_input, submit};
use crate::bus::CommandBus;
use infra::openapi::Problems;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route(
            "/api/v1/registry/plugins/{id}/versions",
            post(publish_version),
        )
        .route(
            "/api/v1/registry/plugins/{id}/versions/{version}/yank",
            post(yank_version),
        )
        .route(
            "/api/v1/registry/plugins/{id}/versions/{version}/deprecate",
            post(deprecate_version),
        )
        .route(
            "/api/v1/registry/plugins/{id}/classification",
            put(classify),
        )
        .route(
            "/api/v1/registry/plugins/{id}/verification",
            put(set_verification),
        )
        .route(
            "/api/v1/registry/plugins/{id}/reviews/mine",
            put(submit_review),
        )
}

/// The registry's command routes, described.
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    publish_version,
    yank_version,
    deprecate_version,
    classify,
    set_verification,
    submit_review,
))]
struct Doc;

pub(super) fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi;
    Doc::openapi()
}

/// Submits a registry command for plugin `id`.
async fn registry_command(
    bus: &CommandBus,
    actor: &Actor,
    headers: &HeaderMap,
    id: PluginId,
    command: RegistryCommand,
    reply: Reply,
) -> Result<Response, Problem> {
    submit(
        bus,
        actor,
        headers,
        Command::Registry { id, command },
        reply,
    )
    .await
}

fn version(version: &str) -> Result<semver::Version, Problem> {
    semver::Version::parse(version).map_err(|e| {
        invalid_input(vec![FieldError::new(
            "/version",
            format!("`{version}` is not a semantic version: {e}"),
        )])
    })
}

/// Prefixes the pointers of errors found inside a nested document.
fn under(prefix: &str, errors: Vec<FieldError>) -> Vec<FieldError> {
    errors
        .into_iter()
        .map(|e| FieldError::new(format!("{prefix}{}", e.pointer), e.message))
        .collect()
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PublishVersion {
    manifest: serde_json::Value,
    release_notes: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/v1/registry/plugins/{id}/versions",
    tag = "registry",
    params(("id" = String, Path, description = "the plugin id")),
    request_body(content = PublishVersion),
    responses(CommandReplies, Problems),
    security(("bearer" = []))
)]
async fn publish_version(
    State(bus): State<CommandBus>,
    actor: Actor,
    headers: HeaderMap,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<PublishVersion>,
) -> Result<Response, Problem> {
    actor.authorize(Access::AdministerPlatform)?;
    let id = plugin_id(&id)?;
    let manifest = Manifest::parse(body.manifest)
        .map_err(|errors| invalid_input(under("/manifest", errors)))?;
    let location = format!(
        "/api/v1/registry/plugins/{id}/versions/{}",
        manifest.version
    );
    let command = RegistryCommand::PublishVersion {
        manifest,
        release_notes: body.release_notes,
    };
    registry_command(
        &bus,
        &actor,
        &headers,
        id,
        command,
        Reply::Created(location),
    )
    .await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Yank {
    reason: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/registry/plugins/{id}/versions/{version}/yank",
    tag = "registry",
    params(("id" = String, Path, description = "the plugin id"), ("version" = String, Path, description = "a semantic version")),
    request_body(content = Yank),
    responses(CommandReplies, Problems),
    security(("bearer" = []))
)]
async fn yank_version(
    State(bus): State<CommandBus>,
    actor: Actor,
    headers: HeaderMap,
    Path((id, v)): Path<(String, String)>,
    JsonBody(body): JsonBody<Yank>,
) -> Result<Response, Problem> {
    actor.authorize(Access::AdministerPlatform)?;
    let id = plugin_id(&id)?;
    let command = RegistryCommand::YankVersion {
        version: version(&v)?,
        reason: body.reason,
    };
    registry_command(&bus, &actor, &headers, id, command, Reply::Done).await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Deprecate {
    message: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/registry/plugins/{id}/versions/{version}/deprecate",
    tag = "registry",
    params(("id" = String, Path, description = "the plugin id"), ("version" = String, Path, description = "a semantic version")),
    request_body(content = Deprecate),
    responses(CommandReplies, Problems),
    security(("bearer" = []))
)]
async fn deprecate_version(
    State(bus): State<CommandBus>,
    actor: Actor,
    headers: HeaderMap,
    Path((id, v)): Path<(String, String)>,
    JsonBody(body): JsonBody<Deprecate>,
) -> Result<Response, Problem> {
    actor.authorize(Access::AdministerPlatform)?;
    let id = plugin_id(&id)?;
    let command = RegistryCommand::DeprecateVersion {
        version: version(&v)?,
        message: body.message,
    };
    registry_command(&bus, &actor, &headers, id, command, Reply::Done).await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Classify {
    #[serde(default)]
    categories: Vec<String>,
    #[serde(default)]
    tags: Vec<String>,
}

#[utoipa::path(
    put,
    path = "/api/v1/registry/plugins/{id}/classification",
    tag = "registry",
    params(("id" = String, Path, description = "the plugin id")),
    request_body(content = Classify),
    responses(CommandReplies, Problems),
    security(("bearer" = []))
)]
async fn classify(
    State(bus): State<CommandBus>,
    actor: Actor,
    headers: HeaderMap,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<Classify>,
) -> Result<Response, Problem> {
    actor.authorize(Access::AdministerPlatform)?;
    let id = plugin_id(&id)?;
    let classification =
        Classification::parse(&body.categories, &body.tags).map_err(invalid_input)?;
    let command = RegistryCommand::Classify { classification };
    registry_command(&bus, &actor, &headers, id, command, Reply::Done).await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Verification {
    verified: bool,
    note: Option<String>,
}

/// Whether the marketplace shows the plugin as verified: a super admin's word.
#[utoipa::path(
    put,
    path = "/api/v1/registry/plugins/{id}/verification",
    tag = "registry",
    params(("id" = String, Path, description = "the plugin id")),
    request_body(content = Verification),
    responses(CommandReplies, Problems),
    security(("bearer" = []))
)]
async fn set_verification(
    State(bus): State<CommandBus>,
    actor: Actor,
    headers: HeaderMap,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<Verification>,
) -> Result<Response, Problem> {
    actor.authorize(Access::AdministerPlatform)?;
    let id = plugin_id(&id)?;
    let command = RegistryCommand::SetVerification {
        verified: body.verified,
        note: body.note,
    };
    registry_command(&bus, &actor, &headers, id, command, Reply::Done).await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Review {
    rating: i64,
    comment: Option<String>,
}

/// The caller's own review: the reviewer is the token's subject, so nobody reviews twice or
/// in another's name.
#[utoipa::path(
    put,
    path = "/api/v1/registry/plugins/{id}/reviews/mine",
    tag = "registry",
    params(("id" = String, Path, description = "the plugin id")),
    request_body(content = Review),
    responses(CommandReplies, Problems),
    security(("bearer" = []))
)]
async fn submit_review(
    State(bus): State<CommandBus>,
    actor: Actor,
    headers: HeaderMap,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<Review>,
) -> Result<Response, Problem> {
    actor.authorize(Access::Review)?;
    let id = plugin_id(&id)?;
    let rating = Rating::parse(body.rating);
    let comment = body
        .comment
        .as_deref()
        .map(ReviewComment::parse)
        .transpose();
    let (rating, comment) = match (rating, comment) {
        (Ok(rating), Ok(comment)) => (rating, comment),
        (rating, comment) => {
            return Err(invalid_input(
                [rating.err(), comment.err()]
                    .into_iter()
                    .flatten()
                    .collect(),
            ));
        }
    };
    let command = RegistryCommand::SubmitReview {
        reviewer: actor.0.sub.clone(),
        reviewer_tenant: actor.principal().tenant().map(TenantId),
        rating,
        comment,
    };
    registry_command(&bus, &actor, &headers, id, command, Reply::Done).await
}
