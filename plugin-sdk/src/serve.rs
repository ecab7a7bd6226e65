//! Serving a plugin: the standard endpoints every plugin answers (FR-009: the install checks
//! them), and the server on `127.0.0.1:$PORT` that stops on SIGTERM (the platform's stop),
//! letting the requests under way finish.

use axum::routing::get;
use axum::{Json, Router};
use infra::http::Readiness;
use tokio_util::sync::CancellationToken;

use crate::config::PluginConfig;

/// `/health`, `/ready` (the database answers and every registered component, a
/// [`Subscription`](crate::Subscription) included, is ready), `/metrics` (Prometheus) and
/// `/openapi.json` (`openapi`, the plugin's own description): the platform's own
/// operational routes, so a plugin answers them as every platform service does.
pub fn standard_routes(openapi: serde_json::Value, readiness: Readiness) -> Router {
    let openapi = std::sync::Arc::new(openapi);
    infra::http::operational_routes(readiness).route(
        "/openapi.json",
        get(move || {
            let openapi = openapi.clone();
            async move { Json((*openapi).clone()) }
        }),
    )
}

/// Serves `router` on `127.0.0.1:$PORT` until SIGTERM, SIGINT or `shutdown`.
pub async fn serve(
    config: &PluginConfig,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", config.port)).await?;
    println!("listening on 127.0.0.1:{}", config.port);
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    infra::http::serve(listener, router, async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
            () = shutdown.cancelled() => {}
        }
        shutdown.cancel();
    })
    .await
}
