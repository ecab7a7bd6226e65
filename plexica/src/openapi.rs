//! The REST API's OpenAPI 3.1 document, assembled from each part's described routes (utoipa
//! reads the handlers' annotations, so the document cannot drift from the code), served at
//! `/api/v1/openapi.json`.

use std::sync::OnceLock;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use utoipa::openapi::{InfoBuilder, OpenApi};

/// Every REST route of the platform, whichever parts a process runs.
pub fn document() -> OpenApi {
    let mut doc = command_api::openapi();
    doc.merge(query_api::openapi());
    doc.merge(projections::admin::openapi());
    doc.merge(dlq_worker::admin::openapi());
    doc.merge(plugin_runtime::gateway::openapi());
    doc.info = InfoBuilder::new()
        .title("Plexica")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(
            "The command and read REST API of the Plexica event log. Every fault is an \
             RFC 7807 problem document (`application/problem+json`).",
        ))
        .build();
    infra::openapi::with_bearer_scheme(doc)
}

/// `GET /api/v1/openapi.json`, public like the manifest's JSON Schema.
pub fn routes() -> Router {
    static JSON: OnceLock<String> = OnceLock::new();
    Router::new().route(
        "/api/v1/openapi.json",
        get(|| async {
            let json = JSON.get_or_init(|| document().to_pretty_json().unwrap_or_default());
            ([(header::CONTENT_TYPE, "application/json")], json.as_str()).into_response()
        }),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_document_is_openapi_3_1_with_every_route() {
        let doc = super::document();
        let json = serde_json::to_value(&doc).expect("serialises");
        assert_eq!(json["openapi"], "3.1.0");
        let operations: usize = json["paths"]
            .as_object()
            .expect("paths")
            .values()
            .map(|methods| methods.as_object().map_or(0, serde_json::Map::len))
            .sum();
        // The command API's 21, the reads' 3, the DLQ's 5, the projections' 2, discovery's 1.
        assert_eq!(operations, 32);
        assert!(json["components"]["securitySchemes"]["bearer"].is_object());
    }
}
