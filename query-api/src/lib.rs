//! The query API: GraphQL over the read models that the projections keep in Postgres.

pub mod asyncapi;
pub mod consistency;
mod dead_letters;
mod edge;
mod history;
mod notifications;
mod permissions;
mod plugin_health;
mod plugin_list;
mod projections;
mod registry;
mod rest;
mod schema;
mod shell;
mod subscriptions;
mod webhooks;

use async_graphql::http::GraphiQLSource;
use async_graphql_axum::{GraphQLProtocol, GraphQLResponse, GraphQLWebSocket};
use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRef, State, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use infra::actor::Actor;
use infra::auth::TokenKeys;
use sqlx::PgPool;
use std::sync::Arc;

use consistency::Progress;
pub use rest::openapi;
pub use schema::{PlexicaSchema, build_schema};

#[derive(Clone, FromRef)]
struct QueryState {
    schema: PlexicaSchema,
    keys: TokenKeys,
    pool: PgPool,
    progress: Arc<Progress>,
    asyncapi: Arc<asyncapi::AsyncApiSource>,
}

/// The query routes over the read model of the `catalog` projection; `consumers` are the
/// checkpointed consumers whose lag `projections` reports.
pub fn router(
    pool: PgPool,
    keys: TokenKeys,
    kafka: &infra::config::KafkaConfig,
    catalog: &infra::consumer::ConsumerSpec,
    consumers: Vec<infra::consumer::ConsumerSpec>,
) -> Router {
    let monitor = Arc::new(projections::Monitor::new(kafka, consumers));
    let notifications = Arc::new(notifications::Notifications::start(pool.clone()));
    let progress = Progress::new(
        pool.clone(),
        schema::CATALOG,
        catalog.topics.clone(),
        notifications.progress.clone(),
    );
    let schema = build_schema(pool.clone(), monitor, notifications);
    Router::new()
        .route(
            "/graphql",
            get(graphiql)
                .post(graphql)
                .layer(DefaultBodyLimit::max(MAX_GRAPHQL_BODY_BYTES)),
        )
        .route("/graphql/schema.graphql", get(sdl))
        .route("/graphql/ws", get(graphql_ws))
        .route("/api/v1/plugins", get(rest::list_plugins))
        .route("/api/v1/plugins/{id}", get(rest::get_plugin))
        .route("/api/v1/tenant/plugins", get(rest::list_tenant_plugins))
        .route("/api/v1/asyncapi.json", get(asyncapi::asyncapi))
        .route("/api/v1/webhooks", get(webhooks::list_webhooks))
        .route("/api/v1/webhooks/{id}", get(webhooks::get_webhook))
        .route(
            "/api/v1/webhooks/{id}/deliveries",
            get(webhooks::list_deliveries),
        )
        .with_state(QueryState {
            schema,
            keys,
            pool,
            progress,
            asyncapi: Arc::new(asyncapi::AsyncApiSource {
                topics: event_schemas::Topics::new(kafka.topic_prefix.clone(), kafka.partitions),
                brokers: kafka.brokers.clone(),
            }),
        })
}

async fn graphiql() -> Html<String> {
    Html(
        GraphiQLSource::build()
            .endpoint("/graphql")
            .subscription_endpoint("/graphql/ws")
            .finish(),
    )
}

/// Subscriptions over graphql-ws (and the older graphql-transport-ws). Browsers cannot set
/// headers on a WebSocket, so the token comes in `connection_init`'s payload:
/// `{"Authorization": "Bearer …"}`.
async fn graphql_ws(
    State(state): State<QueryState>,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    upgrade
        .protocols(async_graphql::http::ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |stream| {
            let keys = state.keys.clone();
            GraphQLWebSocket::new(stream, state.schema.clone(), protocol)
                .on_connection_init(move |payload| async move {
                    let token = ["Authorization", "authorization"]
                        .iter()
                        .find_map(|name| payload.get(*name).and_then(|v| v.as_str()))
                        .and_then(|value| value.parse::<axum::http::HeaderValue>().ok());
                    let mut headers = HeaderMap::new();
                    if let Some(token) = token {
                        headers.insert(axum::http::header::AUTHORIZATION, token);
                    }
                    let actor = Actor::from_headers(&headers, &keys).map_err(|problem| {
                        async_graphql::Error::new(problem.detail.unwrap_or(problem.title))
                    })?;
                    let mut data = async_graphql::Data::default();
                    data.insert(schema::Viewer(actor.map(|a| a.0)));
                    Ok(data)
                })
                .serve()
        })
}

async fn sdl(State(schema): State<PlexicaSchema>) -> String {
    schema.sdl()
}

/// Largest GraphQL request body: a query of any use is a few kilobytes.
pub const MAX_GRAPHQL_BODY_BYTES: usize = 64 * 1024;

/// A GraphQL reply holding one coded error, with the HTTP status the fault calls for.
fn graphql_error(status: StatusCode, code: &'static str, message: String) -> Response {
    let error = schema::coded_error(code, message);
    let mut response = GraphQLResponse::from(async_graphql::Response::from_errors(vec![
        error.into_server_error(async_graphql::Pos::default()),
    ]))
    .into_response();
    *response.status_mut() = status;
    response
}

/// The body of a GraphQL POST as a request: a 413 when too large, a coded 400 when it is not
/// a GraphQL request in JSON.
fn graphql_request(
    body: Result<Bytes, BytesRejection>,
) -> Result<async_graphql::Request, Box<Response>> {
    let body = body.map_err(|rejection| {
        Box::new(graphql_error(
            rejection.status(),
            "BAD_REQUEST",
            rejection.body_text(),
        ))
    })?;
    serde_json::from_slice(&body).map_err(|e| {
        Box::new(graphql_error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            format!("the body is not a GraphQL request in JSON: {e}"),
        ))
    })
}

async fn graphql(
    State(state): State<QueryState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let request = match graphql_request(body) {
        Ok(request) => request,
        Err(response) => return *response,
    };
    let actor = match Actor::from_headers(&headers, &state.keys) {
        Ok(actor) => actor,
        Err(problem) => {
            let error = schema::coded_error(
                "UNAUTHENTICATED",
                problem.detail.unwrap_or_else(|| problem.title.clone()),
            );
            return GraphQLResponse::from(async_graphql::Response::from_errors(vec![
                error.into_server_error(async_graphql::Pos::default()),
            ]))
            .into_response();
        }
    };
    // Authenticated first, so that an anonymous request never waits.
    if actor.is_some() {
        let waited = match consistency::token_of(&headers) {
            Ok(token) => state.progress.wait_for(&token).await,
            Err(error) => Err(error),
        };
        if let Err(error) = waited {
            let error = schema::coded_error(error.code(), error.to_string());
            return GraphQLResponse::from(async_graphql::Response::from_errors(vec![
                error.into_server_error(async_graphql::Pos::default()),
            ]))
            .into_response();
        }
    }
    let request = request.data(schema::Viewer(actor.map(|a| a.0)));
    GraphQLResponse::from(state.schema.execute(request).await).into_response()
}
