//! How a command is submitted and answered: the Idempotency-Key, the wait for the outcome,
//! and the reply (events and consistency token, or the problem).

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use domain::{Command, FieldError};
use event_schemas::commands::CommandOutcome;
use infra::http::Problem;

use crate::bus::{CommandBus, Submission, SubmitError};
use infra::actor::Actor;

pub(super) fn invalid_input(errors: Vec<FieldError>) -> Problem {
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
pub(super) enum Reply {
    /// 201 with the new resource's location.
    Created(String),
    /// 202: the command started a saga; the operation URL follows its steps.
    Started,
    /// 200.
    Done,
}

pub(super) async fn submit(
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
pub(super) fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, Problem> {
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
pub(super) async fn submit_command(
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
pub(super) fn reply_to(submission: Submission, reply: Reply) -> Response {
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
pub(super) fn outcome_body(outcome: &CommandOutcome, accepted_status: StatusCode) -> Response {
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
    accepted_body(outcome, accepted_status, serde_json::Map::new())
}

/// The reply for an accepted command, its body holding `extra` too.
pub(super) fn accepted_body(
    outcome: &CommandOutcome,
    status: StatusCode,
    extra: serde_json::Map<String, serde_json::Value>,
) -> Response {
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
    let mut body = serde_json::json!({
        "commandId": outcome.command_id,
        "status": "accepted",
        "aggregate": outcome.aggregate_key,
        "events": events,
        "consistencyToken": token,
    });
    if let Some(fields) = body.as_object_mut() {
        fields.extend(extra);
    }
    let mut response = (status, Json(body)).into_response();
    if let Ok(token) = HeaderValue::from_str(&token) {
        response.headers_mut().insert("x-consistency-token", token);
    }
    response
}

/// `topic:partition:offset` of each event, comma-separated: a query that presents it waits
/// until the projections have passed these offsets.
pub(super) fn consistency_token(outcome: &CommandOutcome) -> String {
    outcome
        .events
        .iter()
        .map(|e| format!("{}:{}:{}", e.topic, e.partition, e.offset))
        .collect::<Vec<_>>()
        .join(",")
}
