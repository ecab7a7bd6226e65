//! The query API: GraphQL over the read models that the projections keep in Postgres.

mod dead_letters;
mod rest;
mod schema;

use async_graphql::http::GraphiQLSource;
use async_graphql_axum::{GraphQLRequest, GraphQLResponse};
use axum::Router;
use axum::extract::{FromRef, State};
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use infra::actor::Actor;
use infra::auth::TokenKeys;
use sqlx::PgPool;

pub use schema::{PlexicaSchema, build_schema};

#[derive(Clone, FromRef)]
struct QueryState {
    schema: PlexicaSchema,
    keys: TokenKeys,
    pool: PgPool,
}

pub fn router(pool: PgPool, keys: TokenKeys) -> Router {
    let schema = build_schema(pool.clone());
    Router::new()
        .route("/graphql", get(graphiql).post(graphql))
        .route("/graphql/schema.graphql", get(sdl))
        .route("/api/v1/plugins", get(rest::list_plugins))
        .route("/api/v1/plugins/{id}", get(rest::get_plugin))
        .route("/api/v1/tenant/plugins", get(rest::list_tenant_plugins))
        .with_state(QueryState { schema, keys, pool })
}

async fn graphiql() -> Html<String> {
    Html(GraphiQLSource::build().endpoint("/graphql").finish())
}

async fn sdl(State(schema): State<PlexicaSchema>) -> String {
    schema.sdl()
}

async fn graphql(
    State(state): State<QueryState>,
    headers: HeaderMap,
    request: GraphQLRequest,
) -> Response {
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
    let request = request
        .into_inner()
        .data(schema::Viewer(actor.map(|a| a.0)));
    GraphQLResponse::from(state.schema.execute(request).await).into_response()
}
