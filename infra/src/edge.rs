//! Hostile input at the edge: text that Postgres cannot store (a NUL, in text or jsonb) is
//! refused before it can become an event, and unknown routes, methods and NUL-bearing URIs
//! answer with problem documents like every other fault.

use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::http::Problem;

/// Whether Postgres can store `text` in a `text` or `jsonb` column: it refuses NUL in both.
pub fn storable(text: &str) -> bool {
    !text.contains('\0')
}

/// The JSON pointer (RFC 6901) of the first string or key in `value` that Postgres cannot
/// store, if any; a key's own NUL is shown escaped so that the pointer stays printable.
pub fn unstorable_text(value: &Value) -> Option<String> {
    fn token(key: &str) -> String {
        key.replace('~', "~0")
            .replace('/', "~1")
            .replace('\0', "\\u0000")
    }
    match value {
        Value::String(s) if !storable(s) => Some(String::new()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| unstorable_text(item).map(|rest| format!("/{i}{rest}"))),
        Value::Object(fields) => fields.iter().find_map(|(key, item)| {
            if storable(key) {
                unstorable_text(item).map(|rest| format!("/{}{rest}", token(key)))
            } else {
                Some(format!("/{}", token(key)))
            }
        }),
        _ => None,
    }
}

/// The 422 problem naming the field at `pointer` whose text cannot be stored.
pub fn unstorable_problem(pointer: &str) -> Problem {
    let at = if pointer.is_empty() { "/" } else { pointer };
    let message = "text must not contain NUL (U+0000)";
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
        "Validation failed",
    )
    .detail(format!("{at}: {message}"))
    .with(
        "errors",
        serde_json::json!([{"pointer": pointer, "message": message}]),
    )
}

/// A JSON document as the typed value `T`: a 422 problem naming the field when some text
/// cannot be stored or the document does not have `T`'s shape (wrong type, unknown field).
pub fn typed_document<T: serde::de::DeserializeOwned>(document: Value) -> Result<T, Problem> {
    if let Some(pointer) = unstorable_text(&document) {
        return Err(unstorable_problem(&pointer));
    }
    serde_json::from_value(document).map_err(|e| {
        Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
            "The request body is not acceptable",
        )
        .detail(e.to_string())
    })
}

/// A JSON body that may be absent: `None` when empty, a 400 problem when it is not JSON, a
/// 422 problem when it is JSON of the wrong shape.
pub fn optional_document<T: serde::de::DeserializeOwned>(
    body: &[u8],
) -> Result<Option<T>, Problem> {
    if body.is_empty() {
        return Ok(None);
    }
    let document: Value = serde_json::from_slice(body).map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-body",
            "The request body is not acceptable",
        )
        .detail(e.to_string())
    })?;
    typed_document(document).map(Some)
}

/// Whether a raw URI component holds a percent-encoded NUL.
fn holds_nul(component: &str) -> bool {
    component
        .as_bytes()
        .windows(3)
        .any(|w| w[0] == b'%' && w[1] == b'0' && w[2] == b'0')
}

/// Refuses a NUL in the path (404: no resource has such a name) or in the query (400) before
/// any handler sees it.
pub async fn refuse_nul_in_uri(request: Request, next: Next) -> Response {
    let uri = request.uri();
    if holds_nul(uri.path()) {
        return Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found")
            .detail("no resource has a name holding NUL (U+0000)")
            .into_response();
    }
    if uri.query().is_some_and(holds_nul) {
        return Problem::invalid_query("a query parameter holds NUL (U+0000)").into_response();
    }
    next.run(request).await
}

async fn no_route() -> Problem {
    Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found").detail("no route has this path")
}

async fn no_method() -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
    )
    .detail("this route does not answer this method")
}

/// The edge every service's router sits behind: NUL-bearing URIs refused, and unknown routes
/// and methods answered with problem documents.
pub fn guarded(router: Router) -> Router {
    router
        .fallback(no_route)
        .method_not_allowed_fallback(no_method)
        .layer(axum::middleware::from_fn(refuse_nul_in_uri))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_pointer_names_the_first_text_holding_nul() {
        assert_eq!(unstorable_text(&json!({"name": "ab"})), None);
        assert_eq!(
            unstorable_text(&json!({"a": [1, {"b/c": "x\u{0}"}]})),
            Some("/a/1/b~1c".into())
        );
        assert_eq!(
            unstorable_text(&json!({"k\u{0}": 1})),
            Some("/k\\u0000".into())
        );
    }

    #[test]
    fn a_percent_encoded_nul_is_found_in_any_case() {
        assert!(holds_nul("/api/v1/plugins/%00"));
        assert!(!holds_nul("/api/v1/plugins/%2500"));
        assert!(!holds_nul("/api/v1/plugins/a"));
    }
}
