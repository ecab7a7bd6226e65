//! REST routes of the command side (spec 004 section 8).

mod openapi;
mod registry;

use axum::extract::{FromRef, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use domain::plugin::{MANIFEST_SCHEMA, Manifest, PluginCommand, PluginId};
use domain::reservation::{ReservationCommand, ReservationScope};
use domain::tenant::{TenantCommand, TenantId, TenantName, TenantSlug};
use domain::{Command, FieldError};
use event_schemas::commands::CommandOutcome;
use infra::auth::TokenKeys;
use infra::edge::optional_document;
use infra::http::{JsonBody, Problem};
use infra::openapi::Problems;
use infra::policy::Access;
use openapi::CommandReplies;
pub use openapi::openapi;
use serde::Deserialize;
use uuid::Uuid;

use crate::bus::{CommandBus, Submission, SubmitError};
use infra::actor::Actor;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

#[derive(Clone, FromRef)]
pub struct ApiState {
    pub bus: CommandBus,
    pub keys: TokenKeys,
}

pub fn router(bus: CommandBus, keys: TokenKeys) -> Router {
    Router::new()
        .route("/api/v1/plugins", post(register_plugin))
        .route("/api/v1/plugins/{id}", delete(uninstall_plugin))
        .route("/api/v1/plugins/{id}/install", post(install_plugin))
        .route("/api/v1/plugins/{id}/enable", post(enable_plugin))
        .route("/api/v1/plugins/{id}/disable", post(disable_plugin))
        .route("/api/v1/plugins/{id}/update", post(update_plugin))
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
        .route("/api/v1/operations/{id}", get(operation))
        .route("/api/v1/schemas/plugin-manifest.json", get(manifest_schema))
        .merge(registry::routes())
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(ApiState { bus, keys })
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

fn plugin_id(id: &str) -> Result<PluginId, Problem> {
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
struct WithReason {
    reason: Option<String>,
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
    let Query(options) = options.map_err(|e| {
        Problem::new(StatusCode::BAD_REQUEST, "invalid-query", "Invalid query")
            .detail(e.body_text())
    })?;
    let command = PluginCommand::Uninstall {
        purge_data: options.purge_data,
    };
    lifecycle(&bus, &actor, &headers, &id, command, Reply::Started).await
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
    // A retry with the same Idempotency-Key must name the same tenant, or its slug, reserved
    // by the first attempt, would look taken.
    let id = TenantId(match (body.id, idempotency_key(&headers)?) {
        (Some(id), _) => id,
        (None, Some(key)) => Uuid::new_v5(
            &TENANT_ID_NAMESPACE,
            format!("{}\n{key}", actor.0.sub).as_bytes(),
        ),
        (None, None) => Uuid::now_v7(),
    });
    // The slug is unique across tenants: reserved first, through the one aggregate that
    // serialises every claim on a slug.
    let reserve = Command::Reservation {
        scope: ReservationScope::TenantSlugs,
        command: ReservationCommand::Reserve {
            owner: id.to_string(),
            names: vec![slug.as_str().to_owned()],
        },
    };
    let newly_reserved = match submit_command(&bus, &actor, &headers, &reserve, Some("slug"))
        .await?
    {
        Submission::Decided(outcome) if outcome.accepted => !outcome.events.is_empty(),
        Submission::Decided(refused) => return Ok(outcome_body(&refused, StatusCode::OK)),
        Submission::Pending { .. } => {
            return Err(Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Slug reservation pending",
            )
            .detail("the slug's reservation was not decided in time; send the request again with the same Idempotency-Key"));
        }
    };
    let slug_name = slug.as_str().to_owned();
    let command = Command::Tenant {
        id,
        command: TenantCommand::Create { slug, name },
    };
    let submission = submit_command(&bus, &actor, &headers, &command, None).await?;
    if let Submission::Decided(refused) = &submission
        && !refused.accepted
        && newly_reserved
    {
        // The tenant was not created (its id exists): the slug this request reserved for it
        // goes back, or it would be held for good by a tenant that never took it.
        let unreserve = Command::Reservation {
            scope: ReservationScope::TenantSlugs,
            command: ReservationCommand::Unreserve {
                owner: id.to_string(),
                names: vec![slug_name],
            },
        };
        submit_command(&bus, &actor, &headers, &unreserve, Some("unreserve")).await?;
    }
    Ok(reply_to(
        submission,
        Reply::Created(format!("/api/v1/tenants/{id}")),
    ))
}

/// Namespace of the tenant ids derived from an Idempotency-Key (UUID v5).
const TENANT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x8a1f_6c2e_52d4_4f0e_9b7a_1d3c_5e6f_7a80);

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

fn invalid_input(errors: Vec<FieldError>) -> Problem {
    let detail = errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
        "Validation failed",
    )
    .detail(detail)
    .with("errors", &errors)
}

/// How an accepted command is answered.
enum Reply {
    /// 201 with the new resource's location.
    Created(String),
    /// 202: the command started a saga; the operation URL follows its steps.
    Started,
    /// 200.
    Done,
}

async fn submit(
    bus: &CommandBus,
    actor: &Actor,
    headers: &HeaderMap,
    command: Command,
    reply: Reply,
) -> Result<Response, Problem> {
    let submission = submit_command(bus, actor, headers, &command, None).await?;
    Ok(reply_to(submission, reply))
}

/// The request's `Idempotency-Key`, if it has a usable one.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, Problem> {
    headers
        .get("idempotency-key")
        .map(|value| {
            value
                .to_str()
                .ok()
                .filter(|v| !v.is_empty() && v.len() <= 255)
                .ok_or_else(|| {
                    Problem::new(
                        StatusCode::BAD_REQUEST,
                        "invalid-header",
                        "Invalid Idempotency-Key",
                    )
                    .detail("the Idempotency-Key must be 1 to 255 visible ASCII characters")
                })
        })
        .transpose()
}

/// Puts `command` in the log and waits for its outcome. A request that issues more than one
/// command tells them apart by `part`, which extends its Idempotency-Key.
async fn submit_command(
    bus: &CommandBus,
    actor: &Actor,
    headers: &HeaderMap,
    command: &Command,
    part: Option<&str>,
) -> Result<Submission, Problem> {
    let idempotency_key = idempotency_key(headers)?.map(|key| match part {
        Some(part) => format!("{key}#{part}"),
        None => key.to_owned(),
    });
    let traceparent = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .filter(|v| infra::telemetry::trace_id(v).is_some())
        .map_or_else(infra::telemetry::new_traceparent, str::to_owned);
    bus.submit(&actor.0, command, idempotency_key.as_deref(), traceparent)
        .await
        .map_err(|error| match error {
            SubmitError::IdempotencyMismatch => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "Idempotency-Key reused",
            )
            .detail(error.to_string()),
            other => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Command not accepted",
            )
            .detail(other.to_string()),
        })
}

/// The HTTP reply to a command once it is in the log.
fn reply_to(submission: Submission, reply: Reply) -> Response {
    match submission {
        Submission::Decided(outcome) if outcome.accepted => {
            let (status, location) = match reply {
                Reply::Created(location) => (StatusCode::CREATED, Some(location)),
                Reply::Started => (
                    StatusCode::ACCEPTED,
                    Some(format!("/api/v1/operations/{}", outcome.command_id)),
                ),
                Reply::Done => (StatusCode::OK, None),
            };
            let mut response = outcome_body(&outcome, status).into_response();
            if let Some(Ok(location)) = location.map(|l| HeaderValue::from_str(&l)) {
                response.headers_mut().insert(header::LOCATION, location);
            }
            response
        }
        Submission::Decided(outcome) => outcome_body(&outcome, StatusCode::OK).into_response(),
        Submission::Pending { command_id } => {
            let status_url = format!("/api/v1/operations/{command_id}");
            let mut response = (
                StatusCode::ACCEPTED,
                Json(serde_json::json!({
                    "commandId": command_id.to_string(),
                    "status": "pending",
                    "statusUrl": status_url,
                })),
            )
                .into_response();
            if let Ok(url) = HeaderValue::from_str(&status_url) {
                response.headers_mut().insert(header::LOCATION, url);
            }
            response
        }
    }
}

/// The reply for a decided command: the events and consistency token when accepted, the
/// problem document when rejected.
fn outcome_body(outcome: &CommandOutcome, accepted_status: StatusCode) -> Response {
    if !outcome.accepted {
        let problem: serde_json::Value = outcome
            .rejection
            .as_deref()
            .and_then(|r| serde_json::from_str(r).ok())
            .unwrap_or_else(|| serde_json::json!({"title": "Rejected", "status": 409}));
        let status = problem
            .get("status")
            .and_then(serde_json::Value::as_u64)
            .and_then(|s| u16::try_from(s).ok())
            .and_then(|s| StatusCode::from_u16(s).ok())
            .unwrap_or(StatusCode::CONFLICT);
        return (
            status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            Json(problem),
        )
            .into_response();
    }
    let token = consistency_token(outcome);
    let events: Vec<serde_json::Value> = outcome
        .events
        .iter()
        .map(|e| {
            serde_json::json!({
                "topic": e.topic, "partition": e.partition, "offset": e.offset,
                "eventType": e.event_type, "aggregateVersion": e.aggregate_version,
            })
        })
        .collect();
    let mut response = (
        accepted_status,
        Json(serde_json::json!({
            "commandId": outcome.command_id,
            "status": "accepted",
            "aggregate": outcome.aggregate_key,
            "events": events,
            "consistencyToken": token,
        })),
    )
        .into_response();
    if let Ok(token) = HeaderValue::from_str(&token) {
        response.headers_mut().insert("x-consistency-token", token);
    }
    response
}

/// `topic:partition:offset` of each event, comma-separated: a query that presents it waits
/// until the projections have passed these offsets.
fn consistency_token(outcome: &CommandOutcome) -> String {
    outcome
        .events
        .iter()
        .map(|e| format!("{}:{}:{}", e.topic, e.partition, e.offset))
        .collect::<Vec<_>>()
        .join(",")
}
