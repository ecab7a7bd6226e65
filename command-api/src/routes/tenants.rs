//! REST commands of tenants (spec 004 section 8): create (a slug reservation, then the
//! tenant), suspend, reactivate and delete, by super admins; and a tenant's plugins, by its
//! admins.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{delete, post, put};
use domain::tenant::{TenantCommand, TenantId, TenantName, TenantSlug};
use domain::{Command, FieldError};
use infra::edge::optional_document;
use infra::http::{JsonBody, Problem};
use infra::openapi::Problems;
use infra::policy::Access;
use serde::Deserialize;
use uuid::Uuid;

use crate::bus::CommandBus;
use infra::actor::Actor;

use super::ApiState;
use super::openapi::CommandReplies;
use super::plugins::{WithReason, plugin_id};
use super::replies::{Reply, idempotency_key, invalid_input, outcome_body, reply_to, submit};
use super::tenant_creation::{self, Creation};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/tenants", post(create_tenant))
        .route("/api/v1/tenants/{id}", delete(delete_tenant))
        .route("/api/v1/tenants/{id}/suspend", post(suspend_tenant))
        .route("/api/v1/tenants/{id}/reactivate", post(reactivate_tenant))
        .route(
            "/api/v1/tenant/plugins/{id}/enable",
            post(enable_tenant_plugin),
        )
        .route(
            "/api/v1/tenant/plugins/{id}/disable",
            post(disable_tenant_plugin),
        )
        .route(
            "/api/v1/tenant/plugins/{id}/config",
            put(configure_tenant_plugin),
        )
}
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateTenant {
    id: Option<Uuid>,
    slug: String,
    name: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/tenants",
    tag = "commands",
    request_body(content = CreateTenant),
    responses(CommandReplies, Problems),
    security(("bearer" = []))
)]
async fn create_tenant(
    State(bus): State<CommandBus>,
    actor: Actor,
    headers: HeaderMap,
    JsonBody(body): JsonBody<CreateTenant>,
) -> Result<Response, Problem> {
    actor.authorize(Access::AdministerPlatform)?;
    let slug = TenantSlug::parse(&body.slug);
    let name = TenantName::parse(&body.name);
    let (slug, name) = match (slug, name) {
        (Ok(slug), Ok(name)) => (slug, name),
        (slug, name) => {
            return Err(invalid_input(
                [slug.err(), name.err()].into_iter().flatten().collect(),
            ));
        }
    };
    let id = tenant_creation::tenant_id(&actor, body.id, idempotency_key(&headers)?);
    Ok(
        match tenant_creation::create(&bus, &actor, &headers, id, slug, name).await? {
            Creation::SlugTaken(refused) => outcome_body(&refused, StatusCode::OK),
            Creation::SlugPending => {
                return Err(Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "Slug reservation pending",
                )
                .detail("the slug's reservation was not decided in time; send the request again with the same Idempotency-Key"));
            }
            Creation::Submitted(submission) => {
                reply_to(submission, Reply::Created(format!("/api/v1/tenants/{id}")))
            }
        },
    )
}

fn tenant_id(id: &str) -> Result<TenantId, Problem> {
    Uuid::parse_str(id).map(TenantId).map_err(|e| {
        invalid_input(vec![FieldError::new(
            "/id",
            format!("`{id}` is not a tenant id: {e}"),
        )])
    })
}

/// A command to tenant `id`; the reply is 200.
async fn tenant_command(
    bus: &CommandBus,
    actor: &Actor,
    headers: &HeaderMap,
    id: TenantId,
    command: TenantCommand,
) -> Result<Response, Problem> {
    submit(
        bus,
        actor,
        headers,
        Command::Tenant { id, command },
        Reply::Done,
    )
    .await
}

#[utoipa::path(
    post,
    path = "/api/v1/tenants/{id}/suspend",
    tag = "commands",
    params(("id" = String, Path, description = "the tenant id (UUID)")),
    request_body(content = Option<WithReason>, description = "optional"),
    responses(CommandReplies, Problems),
    security(("bearer" = []))
)]
async fn suspend_tenant(
    State(bus): State<CommandBus>,
    actor: Actor,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, Problem> {
    actor.authorize(Access::AdministerPlatform)?;
    // The body is optional: an admin suspending a tenant need not say why.
    let reason = optional_document::<WithReason>(&body)?.and_then(|b| b.reason);
    let command = TenantCommand::Suspend { reason };
    tenant_command(&bus, &actor, &headers, tenant_id(&id)?, command).await
}

#[utoipa::path(
    post,
    path = "/api/v1/tenants/{id}/reactivate",
    tag = "commands",
    params(("id" = String, Path, description = "the tenant id (UUID)")),
    responses(CommandReplies, Problems),
    security(("bearer" = []))
)]
async fn reactivate_tenant(
    State(bus): State<CommandBus>,
    actor: Actor,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    actor.authorize(Access::AdministerPlatform)?;
    tenant_command(
        &bus,
        &actor,
        &headers,
        tenant_id(&id)?,
        TenantCommand::Reactivate,
    )
    .await
}

#[utoipa::path(
    delete,
    path = "/api/v1/tenants/{id}",
    tag = "commands",
    params(("id" = String, Path, description = "the tenant id (UUID)")),
    responses(CommandReplies, Problems),
    security(("bearer" = []))
)]
async fn delete_tenant(
    State(bus): State<CommandBus>,
    actor: Actor,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    actor.authorize(Access::AdministerPlatform)?;
    tenant_command(
        &bus,
        &actor,
        &headers,
        tenant_id(&id)?,
        TenantCommand::Delete,
    )
    .await
}

/// The body of a tenant's plugin configuration: optional when enabling.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct WithConfiguration<C> {
    configuration: C,
}

#[utoipa::path(
    post,
    path = "/api/v1/tenant/plugins/{id}/enable",
    tag = "commands",
    params(("id" = String, Path, description = "the plugin id")),
    request_body(content = WithConfiguration<serde_json::Value>, description = "optional: without it, the configuration kept from an earlier enablement, else `{}`"),
    responses(CommandReplies, Problems),
    security(("bearer" = []))
)]
async fn enable_tenant_plugin(
    State(bus): State<CommandBus>,
    actor: Actor,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, Problem> {
    let tenant = TenantId(actor.administered_tenant()?);
    let plugin = plugin_id(&id)?;
    // Without a configuration, the tenant's earlier one applies, else `{}`.
    let configuration = optional_document::<WithConfiguration<Option<serde_json::Value>>>(&body)?
        .and_then(|b| b.configuration);
    let command = TenantCommand::EnablePlugin {
        plugin,
        configuration,
    };
    tenant_command(&bus, &actor, &headers, tenant, command).await
}

#[utoipa::path(
    post,
    path = "/api/v1/tenant/plugins/{id}/disable",
    tag = "commands",
    params(("id" = String, Path, description = "the plugin id")),
    responses(CommandReplies, Problems),
    security(("bearer" = []))
)]
async fn disable_tenant_plugin(
    State(bus): State<CommandBus>,
    actor: Actor,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let tenant = TenantId(actor.administered_tenant()?);
    let plugin = plugin_id(&id)?;
    tenant_command(
        &bus,
        &actor,
        &headers,
        tenant,
        TenantCommand::DisablePlugin { plugin },
    )
    .await
}

#[utoipa::path(
    put,
    path = "/api/v1/tenant/plugins/{id}/config",
    tag = "commands",
    params(("id" = String, Path, description = "the plugin id")),
    request_body(content = WithConfiguration<serde_json::Value>),
    responses(CommandReplies, Problems),
    security(("bearer" = []))
)]
async fn configure_tenant_plugin(
    State(bus): State<CommandBus>,
    actor: Actor,
    headers: HeaderMap,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<WithConfiguration<serde_json::Value>>,
) -> Result<Response, Problem> {
    let tenant = TenantId(actor.administered_tenant()?);
    let command = TenantCommand::ConfigurePlugin {
        plugin: plugin_id(&id)?,
        configuration: body.configuration,
    };
    tenant_command(&bus, &actor, &headers, tenant, command).await
}
