//! A JSON request body whose every rejection is an RFC 7807 problem: a plugin's typed input is
//! parsed at its edge, and a client sending a bad body learns why in the platform's error shape.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use crate::problem::Problem;

/// `axum::Json`, but a body that is not JSON, not of the type, too large or not
/// `application/json` answers a problem with the status axum chose (400, 413, 415 or 422).
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Problem> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(problem_of(&rejection)),
        }
    }
}

fn problem_of(rejection: &JsonRejection) -> Problem {
    Problem::new(rejection.status(), rejection.body_text())
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode, header};

    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Named {
        #[allow(dead_code)]
        name: String,
    }

    async fn extract(content_type: &str, body: &str) -> Result<JsonBody<Named>, Problem> {
        let request = Request::builder()
            .method("POST")
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(body.to_owned()))
            .expect("a request");
        JsonBody::<Named>::from_request(request, &()).await
    }

    #[tokio::test]
    async fn every_bad_body_is_a_problem_with_its_own_status() {
        let status =
            |result: Result<JsonBody<Named>, Problem>| result.map(|_| ()).unwrap_err().status;
        assert_eq!(
            status(extract("application/json", "{").await),
            StatusCode::BAD_REQUEST.as_u16()
        );
        assert_eq!(
            status(extract("application/json", r#"{"name": 1}"#).await),
            StatusCode::UNPROCESSABLE_ENTITY.as_u16()
        );
        assert_eq!(
            status(extract("text/plain", r#"{"name": "a"}"#).await),
            StatusCode::UNSUPPORTED_MEDIA_TYPE.as_u16()
        );
        assert!(
            extract("application/json", r#"{"name": "a"}"#)
                .await
                .is_ok()
        );
    }
}
