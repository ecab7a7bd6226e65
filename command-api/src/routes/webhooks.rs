//! REST commands of webhook endpoints (Phase 2 plan, M2.4): register, update, rotate the
//! secret, delete. A super admin manages platform endpoints (every tenant's events) and any
//! tenant's; a tenant admin its own tenant's. The signing secret is in the answer to the
//! registration and to each rotation, derived again from the event that set it, never read
//! from the log.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::post;
use domain::webhook::{Description, EventTypes, Manager, WebhookCommand, WebhookId, WebhookUrl};
use domain::{Command, FieldError};
use event_schemas::commands::CommandOutcome;
use infra::actor::Actor;
use infra::http::{JsonBody, Problem};
use infra::openapi::Problems;
use infra::policy::Access;
use secrecy::ExposeSecret;
use serde::Deserialize;
use uuid::Uuid;
use webhooks::SigningKey;

use super::ApiState;
use super::openapi::CommandReplies;
use super::replies::{
    Reply, accepted_body, idempotency_key, invalid_input, outcome_body, reply_to, submit_command,
};
use crate::bus::{CommandBus, Submission};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/webhooks", post(register_webhook))
        .route(
            "/api/v1/webhooks/{id}",
            axum::routing::patch(update_webhook).delete(delete_webhook),
        )
        .route("/api/v1/webhooks/{id}/rotate-secret", post(rotate_secret))
        .route("/api/v1/webhooks/{id}/disable", post(disable_webhook))
        .route("/api/v1/webhooks/{id}/enable", post(enable_webhook))
}

/// Namespaces the ids derived from an Idempotency-Key.
const WEBHOOK_ID_NAMESPACE: Uuid = Uuid::from_u128(0x3c1d_2b7e_8f40_4a51_9e62_7d8c_0b1a_f3e4);

/// Who manages: a super admin, or a tenant admin for their tenant.
fn manager(actor: &Actor) -> Result<Manager, Problem> {
    actor.authorize(Access::ManageWebhooks)?;
    Ok(actor
        .principal()
        .tenant()
        .map_or(Manager::Platform, |tenant| {
            Manager::Tenant(domain::tenant::TenantId(tenant))
        }))
}

/// Sends `command` to endpoint `id`; the reply is 200.
async fn webhook_command(
    bus: &CommandBus,
    actor: &Actor,
    headers: &HeaderMap,
    id: WebhookId,
    command: WebhookCommand,
) -> Result<Response, Problem> {
    let command = Command::Webhook { id, command };
    let submission = submit_command(bus, actor, headers, &command, None).await?;
    Ok(reply_to(submission, Reply::Done))
}

fn webhook_id(id: &str) -> Result<WebhookId, Problem> {
    Uuid::parse_str(id).map(WebhookId).map_err(|_| {
        Problem::new(
            StatusCode::NOT_FOUND,
            "webhook-not-found",
            "Webhook not found",
        )
        .detail(format!("no webhook has the id `{}`", id.escape_debug()))
    })
}

/// Each field's parse, its errors gathered: all of a body's mistakes in one answer.
fn parsed<T>(result: Result<T, FieldError>, errors: &mut Vec<FieldError>) -> Option<T> {
    result.map_err(|error| errors.push(error)).ok()
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RegisterWebhook {
    /// Where the events are POSTed: http or https.
    url: String,
    /// The CloudEvents types it receives: `core.*` types (see `/api/v1/asyncapi.json`), a
    /// plugin's `plugin.<id>.<name>`, or `plugin.published`, `plugin.updated`,
    /// `plugin.installed` and `plugin.reviewed`, which stand for core types.
    events: Vec<String>,
    description: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/v1/webhooks",
    tag = "commands",
    request_body(content = RegisterWebhook),
    responses(CommandReplies, Problems),
    security(("bearer" = []))
)]
async fn register_webhook(
    State(state): State<ApiState>,
    actor: Actor,
    headers: HeaderMap,
    JsonBody(body): JsonBody<RegisterWebhook>,
) -> Result<Response, Problem> {
    let by = manager(&actor)?;
    let mut errors = Vec::new();
    let url = parsed(WebhookUrl::parse(&body.url), &mut errors);
    let events = parsed(EventTypes::parse(body.events), &mut errors);
    let description = body
        .description
        .and_then(|d| parsed(Description::parse(d), &mut errors));
    let (Some(url), Some(events)) = (url, events) else {
        return Err(invalid_input(errors));
    };
    if !errors.is_empty() {
        return Err(invalid_input(errors));
    }
    // A retry with the same Idempotency-Key names the same endpoint, and gets its answer.
    let id = WebhookId(match idempotency_key(&headers)? {
        Some(key) => Uuid::new_v5(
            &WEBHOOK_ID_NAMESPACE,
            format!("{}\n{key}", actor.0.sub).as_bytes(),
        ),
        None => Uuid::now_v7(),
    });
    let command = Command::Webhook {
        id,
        command: WebhookCommand::Register {
            by,
            url,
            events,
            description,
        },
    };
    let submission = submit_command(&state.bus, &actor, &headers, &command, None).await?;
    Ok(with_secret(
        submission,
        &state.webhook_key,
        id,
        StatusCode::CREATED,
    ))
}

/// The reply to a command that sets the secret: accepted, it holds the endpoint's id and
/// the secret the event set; else as any command's.
fn with_secret(
    submission: Submission,
    key: &SigningKey,
    id: WebhookId,
    status: StatusCode,
) -> Response {
    match submission {
        Submission::Decided(outcome) if outcome.accepted => {
            let Some(version) = secret_version(&outcome) else {
                return outcome_body(&outcome, status);
            };
            let secret = key.endpoint_secret(id.0, version).reveal();
            let mut extra = serde_json::Map::new();
            extra.insert("id".into(), id.to_string().into());
            extra.insert("secret".into(), secret.expose_secret().into());
            let mut response = accepted_body(&outcome, status, extra);
            if status == StatusCode::CREATED
                && let Ok(location) = format!("/api/v1/webhooks/{id}").parse()
            {
                response.headers_mut().insert(header::LOCATION, location);
            }
            // The body holds a secret: no cache keeps it.
            response.headers_mut().insert(
                header::CACHE_CONTROL,
                header::HeaderValue::from_static("no-store"),
            );
            response
        }
        other => reply_to(other, Reply::Done),
    }
}

/// The aggregate version of the event that set the secret.
fn secret_version(outcome: &CommandOutcome) -> Option<i64> {
    outcome
        .events
        .iter()
        .find(|e| {
            e.event_type == "core.webhook.registered"
                || e.event_type == "core.webhook.secret-rotated"
        })
        .map(|e| e.aggregate_version)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateWebhook {
    url: Option<String>,
    events: Option<Vec<String>>,
    /// `null` clears it; absent keeps it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    description: Option<Option<String>>,
}

/// Tells a field sent as `null` (`Some(None)`) from one not sent (`None`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

#[utoipa::path(
    patch,
    path = "/api/v1/webhooks/{id}",
    tag = "commands",
    params(("id" = String, Path, description = "the webhook id (UUID)")),
    request_body(content = UpdateWebhook),
    responses(CommandReplies, Problems),
    security(("bearer" = []))
)]
async fn update_webhook(
    State(bus): State<CommandBus>,
    actor: Actor,
    headers: HeaderMap,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<UpdateWebhook>,
) -> Result<Response, Problem> {
    let by = manager(&actor)?;
    let id = webhook_id(&id)?;
    let mut errors = Vec::new();
    let url = body
        .url
        .and_then(|u| parsed(WebhookUrl::parse(&u), &mut errors));
    let events = body
        .events
        .and_then(|e| parsed(EventTypes::parse(e), &mut errors));
    let description = match body.description {
        None => None,
        Some(None) => Some(None),
        Some(Some(d)) => parsed(Description::parse(d), &mut errors).map(Some),
    };
    if !errors.is_empty() {
        return Err(invalid_input(errors));
    }
    let command = WebhookCommand::Update {
        by,
        url,
        events,
        description,
    };
    webhook_command(&bus, &actor, &headers, id, command).await
}

#[utoipa::path(
    post,
    path = "/api/v1/webhooks/{id}/rotate-secret",
    tag = "commands",
    params(("id" = String, Path, description = "the webhook id (UUID)")),
    responses(CommandReplies, Problems),
    security(("bearer" = []))
)]
async fn rotate_secret(
    State(state): State<ApiState>,
    actor: Actor,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let by = manager(&actor)?;
    let id = webhook_id(&id)?;
    let command = Command::Webhook {
        id,
        command: WebhookCommand::RotateSecret { by },
    };
    let submission = submit_command(&state.bus, &actor, &headers, &command, None).await?;
    Ok(with_secret(
        submission,
        &state.webhook_key,
        id,
        StatusCode::OK,
    ))
}

#[utoipa::path(
    delete,
    path = "/api/v1/webhooks/{id}",
    tag = "commands",
    params(("id" = String, Path, description = "the webhook id (UUID)")),
    responses(CommandReplies, Problems),
    security(("bearer" = []))
)]
async fn delete_webhook(
    State(bus): State<CommandBus>,
    actor: Actor,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let by = manager(&actor)?;
    let id = webhook_id(&id)?;
    webhook_command(&bus, &actor, &headers, id, WebhookCommand::Delete { by }).await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct DisableWebhook {
    reason: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/v1/webhooks/{id}/disable",
    tag = "commands",
    params(("id" = String, Path, description = "the webhook id (UUID)")),
    request_body(content = DisableWebhook, description = "optional"),
    responses(CommandReplies, Problems),
    security(("bearer" = []))
)]
async fn disable_webhook(
    State(bus): State<CommandBus>,
    actor: Actor,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, Problem> {
    let by = manager(&actor)?;
    let id = webhook_id(&id)?;
    let reason = infra::edge::optional_document::<DisableWebhook>(&body)?
        .and_then(|b| b.reason)
        .map(Description::parse)
        .transpose()
        .map_err(|error| invalid_input(vec![error]))?;
    webhook_command(
        &bus,
        &actor,
        &headers,
        id,
        WebhookCommand::Disable { by, reason },
    )
    .await
}

#[utoipa::path(
    post,
    path = "/api/v1/webhooks/{id}/enable",
    tag = "commands",
    params(("id" = String, Path, description = "the webhook id (UUID)")),
    responses(CommandReplies, Problems),
    security(("bearer" = []))
)]
async fn enable_webhook(
    State(bus): State<CommandBus>,
    actor: Actor,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let by = manager(&actor)?;
    let id = webhook_id(&id)?;
    webhook_command(&bus, &actor, &headers, id, WebhookCommand::Enable { by }).await
}
