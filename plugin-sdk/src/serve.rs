//! Serving a plugin: the standard endpoints every plugin answers (FR-009: the install checks
//! them), and the server on `127.0.0.1:$PORT` that stops on SIGTERM (the platform's stop),
//! letting the requests under way finish.

use axum::routing::get;
use axum::{Json, Router};
use infra::http::Readiness;
use tokio_util::sync::CancellationToken;

use crate::config::PluginConfig;
use crate::events::SubscribeError;

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

/// Serves `router` on `127.0.0.1:$PORT` until SIGTERM, SIGINT or `shutdown`. A body extractor
/// takes at most what the gateway passes on ([`infra::http::PLUGIN_REQUEST_BODY_MAX_BYTES`]).
pub async fn serve(
    config: &PluginConfig,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", config.port)).await?;
    println!("listening on 127.0.0.1:{}", config.port);
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let router = router.layer(axum::extract::DefaultBodyLimit::max(
        infra::http::PLUGIN_REQUEST_BODY_MAX_BYTES,
    ));
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

/// Why a plugin that serves and subscribes stopped other than by SIGTERM.
#[derive(Debug, thiserror::Error)]
pub enum StopError {
    #[error("serving failed: {0}")]
    Serve(#[from] std::io::Error),
    #[error("the subscription ended: {0}")]
    Subscription(#[from] SubscribeError),
    #[error("the subscription's task failed: {0}")]
    SubscriptionTask(#[from] tokio::task::JoinError),
}

/// [`serve`] beside the plugin's subscription (the spawned [`Subscription::run`], given the
/// same `shutdown`), until SIGTERM or until either ends. A stop waits for the subscription to
/// leave its consumer group while the runtime still runs: a plugin that returned at once would
/// close its consumer in a runtime shutting down, and the next instance would wait for the
/// group to let go of the partitions.
///
/// [`Subscription::run`]: crate::Subscription::run
pub async fn serve_subscribed(
    config: &PluginConfig,
    router: Router,
    mut subscription: tokio::task::JoinHandle<Result<(), SubscribeError>>,
    shutdown: CancellationToken,
) -> Result<(), StopError> {
    tokio::select! {
        served = serve(config, router, shutdown.clone()) => served?,
        ended = &mut subscription => return Ok(ended??),
    }
    shutdown.cancel();
    Ok(subscription.await??)
}
