//! HTTP furniture every service shares: RFC 7807 problems, `/health`, `/ready`, `/metrics`,
//! and serving with graceful shutdown.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde::Serialize;
use sqlx::PgPool;

/// The largest request body a plugin is sent, and the largest the plugin SDK takes: one limit
/// for both, so that the gateway refuses (413) every body a plugin would refuse. A plugin that
/// refused a body the gateway still streams closes the connection under the gateway's writes,
/// and the caller would get a 502 instead of the plugin's 413, or either, by timing.
pub const PLUGIN_REQUEST_BODY_MAX_BYTES: usize = 2 * 1024 * 1024;

/// An RFC 7807 problem document.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Extension members (e.g. `errors`, `commandId`), flattened into the document.
    #[serde(flatten)]
    pub extensions: serde_json::Map<String, serde_json::Value>,
}

impl Problem {
    pub fn new(status: StatusCode, slug: &str, title: impl Into<String>) -> Self {
        Self {
            problem_type: format!("https://plexica.io/problems/{slug}"),
            title: title.into(),
            status: status.as_u16(),
            detail: None,
            extensions: serde_json::Map::new(),
        }
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn with(mut self, key: &str, value: impl Serialize) -> Self {
        if let Ok(value) = serde_json::to_value(value) {
            self.extensions.insert(key.to_owned(), value);
        }
        self
    }

    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
        )
        .detail(detail)
    }

    /// A query string that does not parse, or holds what no query may.
    pub fn invalid_query(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid-query", "Invalid query").detail(detail)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (
            status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            Json(self),
        )
            .into_response()
    }
}

/// The process-wide Prometheus recorder; installed once however many services share the
/// process.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (a test harness): keep serving ours.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// What `/ready` reports: Postgres answers and every registered component says it is ready.
#[derive(Clone)]
pub struct Readiness {
    pool: PgPool,
    components: Arc<Mutex<BTreeMap<String, bool>>>,
}

impl Readiness {
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            components: Arc::default(),
        }
    }

    /// Declares a component, not ready until it says so.
    pub fn register(&self, component: &str) {
        self.set(component, false);
    }

    pub fn set(&self, component: &str, ready: bool) {
        if let Ok(mut components) = self.components.lock() {
            components.insert(component.to_owned(), ready);
        }
    }

    async fn report(&self) -> (bool, serde_json::Value) {
        let database = sqlx::query("SELECT 1").execute(&self.pool).await.is_ok();
        let components = self
            .components
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default();
        let ready = database && components.values().all(|ready| *ready);
        (
            ready,
            serde_json::json!({
                "status": if ready { "ready" } else { "not ready" },
                "database": database,
                "components": components,
            }),
        )
    }
}

/// `/health` (the process lives), `/ready` (it can serve) and `/metrics` (Prometheus).
pub fn operational_routes(readiness: Readiness) -> Router {
    Router::new()
        .route(
            "/health",
            get(|| async { Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/ready", get(ready))
        .route("/metrics", get(|| async { metrics_handle().render() }))
        .with_state(readiness)
}

async fn ready(State(readiness): State<Readiness>) -> Response {
    let (ready, report) = readiness.report().await;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report)).into_response()
}

/// Serves `router` until `shutdown` resolves, then lets in-flight requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// A JSON request body whose rejections are problem documents: 400 when it is not JSON, 413
/// when too large, 415 without a JSON content type, 422 when it has the wrong shape or text
/// that cannot be stored (see [`crate::edge::typed_document`]).
pub struct JsonBody<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for JsonBody<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(
        request: axum::extract::Request,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match Json::<serde_json::Value>::from_request(request, state).await {
            Ok(Json(document)) => crate::edge::typed_document(document).map(Self),
            Err(rejection) => {
                let status = rejection.status();
                let slug = if status == StatusCode::PAYLOAD_TOO_LARGE {
                    "body-too-large"
                } else {
                    "invalid-body"
                };
                Err(
                    Problem::new(status, slug, "The request body is not acceptable")
                        .detail(rejection.body_text()),
                )
            }
        }
    }
}
