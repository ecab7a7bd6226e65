//! The REST API's OpenAPI 3.1 document, assembled from each part's described routes (utoipa
//! reads the handlers' annotations, so the document cannot drift from the code), served at
//! `/api/v1/openapi.json`.

use std::sync::OnceLock;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::{Map, Value};
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

/// The document as served: [`document`] with the manifest's own JSON Schema (OpenAPI 3.1 speaks
/// JSON Schema 2020-12) as the schema of every manifest a request carries, so that a client
/// or a fuzzer knows what a valid one is. Its `$defs` become components of their own, since
/// a `$ref` in the document resolves against the document.
pub fn served() -> Value {
    let mut doc = serde_json::to_value(document()).unwrap_or_default();
    let mut manifest: Value = serde_json::from_str(domain::plugin::MANIFEST_SCHEMA)
        .unwrap_or_else(|_| Value::Object(Map::new()));
    let defs = manifest
        .as_object_mut()
        .and_then(|m| {
            m.remove("$schema");
            m.remove("$id");
            m.remove("$defs")
        })
        .unwrap_or_default();
    let schemas = &mut doc["components"]["schemas"];
    if let Value::Object(defs) = defs {
        for (name, def) in defs {
            schemas[format!("PluginManifest_{name}")] = def;
        }
    }
    schemas["PluginManifest"] = manifest;
    let text = doc
        .to_string()
        .replace("\"#/$defs/", "\"#/components/schemas/PluginManifest_");
    let mut doc: Value = serde_json::from_str(&text).unwrap_or_default();
    let reference = serde_json::json!({"$ref": "#/components/schemas/PluginManifest"});
    for (path, method) in [
        ("/api/v1/plugins", "post"),
        ("/api/v1/plugins/{id}/update", "post"),
    ] {
        doc["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"] =
            reference.clone();
    }
    doc["components"]["schemas"]["PublishVersion"]["properties"]["manifest"] = reference;
    doc
}

/// `GET /api/v1/openapi.json`, public like the manifest's JSON Schema.
pub fn routes() -> Router {
    static JSON: OnceLock<String> = OnceLock::new();
    Router::new().route(
        "/api/v1/openapi.json",
        get(|| async {
            let json = JSON.get_or_init(|| served().to_string());
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
        // The command API's 27 (webhooks' 6 included), the reads' 7 (AsyncAPI and webhooks'
        // 3 included), the DLQ's 5, the projections' 2, discovery's 1.
        assert_eq!(operations, 42);
        assert!(json["components"]["securitySchemes"]["bearer"].is_object());
    }

    #[test]
    fn manifests_are_described_by_their_json_schema_with_resolvable_references() {
        let served = super::served();
        let text = served.to_string();
        assert!(
            !text.contains("#/$defs/"),
            "every reference resolves in the document"
        );
        let manifest = &served["components"]["schemas"]["PluginManifest"];
        assert_eq!(
            manifest["required"],
            serde_json::json!(["id", "name", "version"])
        );
        assert!(served["components"]["schemas"]["PluginManifest_resources"].is_object());
        assert_eq!(
            served["paths"]["/api/v1/plugins"]["post"]["requestBody"]["content"]["application/json"]
                ["schema"]["$ref"],
            "#/components/schemas/PluginManifest"
        );
    }
}
