//! A plugin built on the Rust SDK, for the end-to-end tests of events: `POST /deals/{id}/won`
//! publishes `plugin.{id}.deal.won` with the caller's context, and every event it subscribes
//! to is recorded in the `received` table of its tenant's schema, in the consumer's
//! transaction (`GET /received` lists them; `GET /through-gateway/received` asks the plugin
//! itself through the gateway, for the caller). Its bundle is `tests/plugins/events-rs`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use end_to_end::deal_won::DealWon;
use futures::future::BoxFuture;
use plexica_plugin_sdk::events::{Body, HandlerError};
use plexica_plugin_sdk::{
    EventContext, EventHandler, EventsConfig, PluginConfig, Problem, Publisher, ReceivedEvent,
    RequestContext, Services, Subscription, TenantDb, serve_subscribed, standard_routes,
};
use serde::Deserialize;
use sqlx::PgConnection;
use tokio_util::sync::CancellationToken;

struct Recorder;

impl EventHandler for Recorder {
    fn handle<'a>(
        &'a mut self,
        tx: &'a mut PgConnection,
        event: &'a ReceivedEvent,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            let body = match &event.body {
                Body::Core(core) => format!("{core:?}"),
                Body::Plugin { .. } => {
                    let deal: DealWon = event.record()?;
                    if deal.amount < 0 {
                        return Err(HandlerError::Permanent(
                            format!("deal {} has a negative amount", deal.deal_id).into(),
                        ));
                    }
                    serde_json::to_string(&deal).unwrap_or_default()
                }
            };
            event.enter_tenant(tx).await?;
            sqlx::query(
                "INSERT INTO received
                     (event_id, event_type, user_id, correlation_id, causation_id, traceparent, body)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (event_id) DO NOTHING",
            )
            .bind(event.envelope.id)
            .bind(&event.envelope.event_type)
            .bind(&event.envelope.user_id)
            .bind(&event.envelope.correlation_id)
            .bind(event.envelope.causation_id)
            .bind(&event.envelope.traceparent)
            .bind(body)
            .execute(&mut *tx)
            .await?;
            Ok(())
        })
    }
}

#[derive(Clone)]
struct App {
    publisher: Publisher,
    db: TenantDb,
    services: Services,
    plugin_id: String,
}

#[derive(Deserialize)]
struct Won {
    amount: i64,
}

async fn deal_won(
    State(app): State<Arc<App>>,
    context: RequestContext,
    Path(deal_id): Path<String>,
    Json(won): Json<Won>,
) -> Result<impl IntoResponse, Problem> {
    let event = DealWon {
        deal_id: deal_id.clone(),
        amount: won.amount,
    };
    let id = app
        .publisher
        .publish(&EventContext::from(&context), &deal_id, &event)
        .await
        .map_err(|e| Problem::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({"eventId": id})),
    ))
}

async fn received(
    State(app): State<Arc<App>>,
    context: RequestContext,
) -> Result<Json<serde_json::Value>, Problem> {
    let internal = |e: sqlx::Error| Problem::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    let mut tx = app.db.begin(&context).await.map_err(internal)?;
    let rows: Vec<ReceivedRow> = sqlx::query_as(
        "SELECT event_type, user_id, correlation_id, causation_id, body FROM received
             ORDER BY event_type, body",
    )
    .fetch_all(&mut *tx)
    .await
    .map_err(internal)?;
    Ok(Json(serde_json::json!(
        rows.into_iter()
            .map(
                |(event_type, user, correlation, causation, body)| serde_json::json!({
                    "type": event_type, "user": user, "correlation": correlation,
                    "causation": causation, "body": body
                })
            )
            .collect::<Vec<_>>()
    )))
}

/// `event_type, user_id, correlation_id, causation_id, body` of a received event.
type ReceivedRow = (
    String,
    Option<String>,
    Option<String>,
    Option<uuid::Uuid>,
    String,
);

async fn through_gateway(
    State(app): State<Arc<App>>,
    context: RequestContext,
) -> Result<Json<serde_json::Value>, Problem> {
    let unavailable = |e: String| Problem::new(StatusCode::BAD_GATEWAY, e);
    let answer = app
        .services
        .call(
            &context,
            reqwest::Method::GET,
            &app.plugin_id,
            "/received",
            None,
        )
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    answer
        .json()
        .await
        .map(Json)
        .map_err(|e| unavailable(e.to_string()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = PluginConfig::from_env()?;
    let events = EventsConfig::from_env()?;
    let pool = sqlx::PgPool::connect(&config.database_url).await?;
    let shutdown = CancellationToken::new();
    let subscription = Subscription::new(&events)?;
    let readiness = infra::http::Readiness::new(pool.clone());
    let consumer =
        tokio::spawn(subscription.run(Recorder, pool.clone(), readiness.clone(), shutdown.clone()));
    let app = Arc::new(App {
        publisher: Publisher::new(&events)?,
        db: TenantDb::new(pool),
        services: Services::new(&config),
        plugin_id: config.plugin_id.clone(),
    });
    let router = Router::new()
        .route("/deals/{id}/won", post(deal_won))
        .route("/received", get(received))
        .route("/through-gateway/received", get(through_gateway))
        .with_state(app)
        .merge(standard_routes(
            serde_json::json!({"openapi": "3.1.0", "info": {"title": "events", "version": "1.0.0"}, "paths": {}}),
            readiness,
        ));
    serve_subscribed(&config, router, consumer, shutdown).await?;
    Ok(())
}
