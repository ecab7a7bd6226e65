//! The gateway (FR-010, FR-012, US-004): `ANY /api/plugins/{pluginId}/{*path}` is the only
//! way in to a plugin from outside, and the way between plugins. And service discovery:
//! `GET /api/v1/services/{pluginId}`, answered from the driver's memory.
//!
//! A request needs a valid bearer token; the caller's tenant (a super admin names one in
//! `X-Tenant-ID`) must have the plugin enabled, else 404 (asked of [`Enablements`], which
//! keeps the catalog's answers between its commits). The gateway sets `X-Tenant-ID`,
//! `X-User-ID`, `X-Trace-ID` and `traceparent` from what it verified, replacing whatever the
//! client sent under those names, and passes `Authorization` on. A plugin that is not
//! running or not healthy gets no traffic (503); one that refuses the connection gives 502;
//! one that has not answered within the timeout (5 s by default) gives 504. Every refusal is
//! an RFC 7807 problem.

use infra::openapi::Problems;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use futures::TryStreamExt;
use infra::auth::{Claims, TokenKeys};
use infra::http::{PLUGIN_REQUEST_BODY_MAX_BYTES, Problem};
use infra::policy::Principal;
use sqlx::PgPool;
use uuid::Uuid;

use crate::PluginId;
use crate::enablements::Enablements;
use crate::health::HealthStatus;
use crate::process::ProcessRuntime;

/// The headers the gateway sets from what it verified; a client's values are dropped.
const CONTEXT_HEADERS: [&str; 4] = ["x-tenant-id", "x-user-id", "x-trace-id", "traceparent"];
/// Not passed on in either direction (RFC 9110 §7.6.1), plus `host`.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

#[derive(Clone)]
pub struct GatewayState {
    pub runtime: ProcessRuntime,
    pub keys: TokenKeys,
    pub enablements: Enablements,
    pub timeout: Duration,
    pub client: reqwest::Client,
}

impl GatewayState {
    pub fn new(runtime: ProcessRuntime, keys: TokenKeys, pool: PgPool, timeout: Duration) -> Self {
        Self {
            runtime,
            keys,
            enablements: Enablements::start(pool),
            timeout,
            client: reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default(),
        }
    }
}

pub fn router(state: GatewayState) -> Router {
    Router::new()
        .route("/api/plugins/{plugin_id}/{*path}", any(forward))
        .route("/api/plugins/{plugin_id}/", any(forward_root))
        .route("/api/v1/services/{plugin_id}", get(service))
        .with_state(state)
}

fn problem(status: StatusCode, slug: &str, title: &str, detail: impl Into<String>) -> Response {
    Problem::new(status, slug, title)
        .detail(detail)
        .into_response()
}

/// The caller, from the bearer token.
fn caller(state: &GatewayState, headers: &HeaderMap) -> Result<Claims, Problem> {
    let unauthorized = |detail: &str| {
        Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized").detail(detail)
    };
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| unauthorized("a bearer token is required"))?;
    state
        .keys
        .verify(token)
        .map_err(|_| unauthorized("the bearer token is not valid"))
}

/// The tenant the request acts for: a tenant admin's own, or the one a super admin names.
/// Who counts as which is `infra::policy`'s to say, as on every other route.
fn tenant_of(claims: &Claims, headers: &HeaderMap) -> Result<Uuid, Problem> {
    let named = match Principal::of(claims) {
        Principal::TenantAdmin { tenant } => return Ok(tenant),
        Principal::SuperAdmin => headers
            .get("x-tenant-id")
            .and_then(|v| v.to_str().ok())
            .or(claims.tenant_id.as_deref()),
        Principal::Nobody => {
            return Err(
                Problem::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden").detail(
                    "this needs a `tenant_admin` token naming its tenant, or `super_admin`",
                ),
            );
        }
    };
    let tenant = named.ok_or_else(|| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "tenant-required",
            "Tenant required",
        )
        .detail("a super admin names the tenant in X-Tenant-ID")
    })?;
    Uuid::parse_str(tenant).map_err(|_| {
        Problem::new(StatusCode::BAD_REQUEST, "invalid-tenant", "Invalid tenant")
            .detail("the tenant id is not a UUID")
    })
}

async fn forward_root(
    State(state): State<GatewayState>,
    Path(plugin_id): Path<String>,
    request: Request,
) -> Response {
    proxy(state, plugin_id, request).await
}

async fn forward(
    State(state): State<GatewayState>,
    Path((plugin_id, _path)): Path<(String, String)>,
    request: Request,
) -> Response {
    proxy(state, plugin_id, request).await
}

/// The path to forward, as the client encoded it: the decoded one would let `%3F` or `%23`
/// change the query the plugin sees.
fn raw_path<'a>(uri: &'a axum::http::Uri, plugin_id: &str) -> &'a str {
    uri.path()
        .strip_prefix("/api/plugins/")
        .and_then(|rest| rest.strip_prefix(plugin_id))
        .unwrap_or("/")
}

async fn proxy(state: GatewayState, plugin_id: String, request: Request) -> Response {
    let started = Instant::now();
    let response = match proxy_inner(&state, &plugin_id, request).await {
        Ok(response) | Err(response) => response,
    };
    let status = response.status().as_u16().to_string();
    let plugin = PluginId::parse(&plugin_id)
        .map(|p| p.to_string())
        .unwrap_or_else(|_| "invalid".to_owned());
    metrics::counter!("plexica_gateway_requests_total", "plugin" => plugin.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("plexica_gateway_request_duration_seconds", "plugin" => plugin)
        .record(started.elapsed().as_secs_f64());
    response
}

async fn proxy_inner(
    state: &GatewayState,
    plugin_id: &str,
    request: Request,
) -> Result<Response, Response> {
    let not_found = || {
        problem(
            StatusCode::NOT_FOUND,
            "plugin-not-found",
            "Plugin not found",
            format!("no plugin `{plugin_id}` is enabled for this tenant"),
        )
    };
    let (parts, body) = request.into_parts();
    let claims = caller(state, &parts.headers).map_err(IntoResponse::into_response)?;
    let too_large = || {
        problem(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            "Request body too large",
            format!("a request to a plugin carries at most {PLUGIN_REQUEST_BODY_MAX_BYTES} bytes"),
        )
    };
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // A larger body is refused before it reaches the plugin (by its `Content-Length`) or as
    // soon as it grows past the limit (a streamed body, below): no caller makes a plugin, or
    // the gateway, take unbounded input.
    if declared.is_some_and(|length| length > PLUGIN_REQUEST_BODY_MAX_BYTES as u64) {
        return Err(too_large());
    }
    let id = PluginId::parse(plugin_id).map_err(|_| not_found())?;
    let tenant = tenant_of(&claims, &parts.headers).map_err(IntoResponse::into_response)?;
    let enabled = state
        .enablements
        .enabled(tenant, id.as_str())
        .await
        .map_err(|e| Problem::internal(e.to_string()).into_response())?;
    if !enabled {
        return Err(not_found());
    }
    let unavailable = |detail: String| {
        problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "plugin-unavailable",
            "Plugin unavailable",
            detail,
        )
    };
    let (endpoint, in_flight) = state
        .runtime
        .route(id.as_str())
        .ok_or_else(|| unavailable(format!("plugin `{id}` is not running")))?;
    if endpoint.health.status != HealthStatus::Healthy {
        return Err(unavailable(format!(
            "plugin `{id}` is {}{}",
            endpoint.health.status.as_str().to_ascii_lowercase(),
            endpoint
                .health
                .last_error
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        )));
    }

    let mut url = format!("{}{}", endpoint.url(), raw_path(&parts.uri, id.as_str()));
    if let Some(query) = parts.uri.query() {
        url.push('?');
        url.push_str(query);
    }
    let mut headers = HeaderMap::new();
    for (name, value) in &parts.headers {
        let lower = name.as_str();
        if !HOP_BY_HOP.contains(&lower) && !CONTEXT_HEADERS.contains(&lower) {
            headers.append(name.clone(), value.clone());
        }
    }
    let traceparent = infra::telemetry::new_traceparent();
    let trace_id = infra::telemetry::trace_id(&traceparent)
        .unwrap_or_default()
        .to_owned();
    for (name, value) in [
        ("x-tenant-id", tenant.to_string()),
        ("x-user-id", claims.sub.clone()),
        ("x-trace-id", trace_id),
        ("traceparent", traceparent),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    let body = Body::new(http_body_util::Limited::new(
        body,
        PLUGIN_REQUEST_BODY_MAX_BYTES,
    ));
    let body = reqwest::Body::wrap_stream(body.into_data_stream());
    let upstream = state
        .client
        .request(parts.method, url)
        .headers(headers)
        .body(body);
    let response = match tokio::time::timeout(state.timeout, upstream.send()).await {
        Err(_) => {
            return Err(problem(
                StatusCode::GATEWAY_TIMEOUT,
                "plugin-timeout",
                "Plugin timeout",
                format!(
                    "plugin `{id}` did not answer within {} ms",
                    state.timeout.as_millis()
                ),
            ));
        }
        Ok(Err(error)) if over_limit(&error) => return Err(too_large()),
        Ok(Err(error)) => {
            let detail = if error.is_connect() {
                format!("plugin `{id}` refused the connection")
            } else {
                format!("plugin `{id}` failed to answer: {error}")
            };
            return Err(problem(
                StatusCode::BAD_GATEWAY,
                "plugin-unreachable",
                "Bad gateway",
                detail,
            ));
        }
        Ok(Ok(response)) => response,
    };
    let mut builder = Response::builder().status(response.status().as_u16());
    for (name, value) in response.headers() {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            builder = builder.header(name.as_str(), value.as_bytes());
        }
    }
    // The instance stays in service until the body has gone through.
    let stream = response.bytes_stream().map_ok(move |chunk| {
        let _keep = &in_flight;
        chunk
    });
    builder
        .body(Body::from_stream(stream))
        .map_err(|e| Problem::internal(e.to_string()).into_response())
}

/// Whether sending failed because the request body grew past [`PLUGIN_REQUEST_BODY_MAX_BYTES`].
fn over_limit(error: &reqwest::Error) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if cause.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = cause.source();
    }
    false
}

/// Where a plugin is served (M2.3 service discovery), from the driver's memory.
#[utoipa::path(
    get,
    path = "/api/v1/services/{plugin_id}",
    tag = "plugins",
    params(("plugin_id" = String, Path)),
    responses((status = 200, description = "where the running plugin is served", body = serde_json::Value), Problems),
    security(("bearer" = []))
)]
async fn service(
    State(state): State<GatewayState>,
    Path(plugin_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(problem) = caller(&state, &headers) {
        return problem.into_response();
    }
    let Some(endpoint) = state.runtime.endpoint(&plugin_id) else {
        return problem(
            StatusCode::NOT_FOUND,
            "service-not-found",
            "Service not found",
            format!("plugin `{plugin_id}` is not running"),
        );
    };
    Json(serde_json::json!({
        "id": endpoint.plugin,
        "version": endpoint.version,
        "url": format!("/api/plugins/{}/", endpoint.plugin),
        "instances": [{
            "address": endpoint.url(),
            "health": {
                "status": endpoint.health.status.as_str(),
                "since": endpoint.health.since,
                "lastError": endpoint.health.last_error,
                "restarts": endpoint.health.restarts,
            },
            "limits": endpoint.limits,
            "memoryBytes": endpoint.memory_bytes,
        }],
    }))
    .into_response()
}

/// Service discovery, described for the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(service))]
struct Doc;

pub fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi;
    Doc::openapi()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_forwarded_path_keeps_the_clients_encoding() {
        let uri: axum::http::Uri = "/api/plugins/notes/a%3Fb/c%23d?x=1".parse().expect("uri");
        assert_eq!(raw_path(&uri, "notes"), "/a%3Fb/c%23d");
        let root: axum::http::Uri = "/api/plugins/notes/".parse().expect("uri");
        assert_eq!(raw_path(&root, "notes"), "/");
    }
}
