//! The caller's context, as the gateway forwards it: tenant, user, trace and authorization.

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use secrecy::SecretString;
use uuid::Uuid;

use crate::problem::Problem;

pub const TENANT_HEADER: &str = "x-tenant-id";
pub const USER_HEADER: &str = "x-user-id";
pub const TRACE_HEADER: &str = "x-trace-id";
pub const TRACEPARENT_HEADER: &str = "traceparent";
pub const AUTHORIZATION_HEADER: &str = "authorization";

/// Who is calling, for which tenant. Extracting it from a request without a valid
/// `X-Tenant-ID` answers 400 with a problem. The caller's `Authorization` is a secret: no
/// `Debug` or log prints it; it is only passed on, to the gateway, for calls made for the
/// caller.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub tenant: Uuid,
    pub user: Option<String>,
    pub trace_id: Option<String>,
    pub traceparent: Option<String>,
    pub authorization: Option<SecretString>,
}

impl RequestContext {
    /// Reads the gateway's headers.
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, Problem> {
        let text = |name: &str| {
            headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        };
        let tenant = headers
            .get(TENANT_HEADER)
            .ok_or_else(|| Problem::bad_request("the request has no X-Tenant-ID header"))?
            .to_str()
            .ok()
            .and_then(|value| Uuid::parse_str(value.trim()).ok())
            .ok_or_else(|| Problem::bad_request("the X-Tenant-ID header is not a UUID"))?;
        Ok(Self {
            tenant,
            user: text(USER_HEADER),
            trace_id: text(TRACE_HEADER),
            traceparent: text(TRACEPARENT_HEADER),
            authorization: text(AUTHORIZATION_HEADER).map(SecretString::from),
        })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestContext {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Problem> {
        Self::from_headers(&parts.headers)
    }
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderValue, Request};

    use super::*;

    async fn extract(headers: &[(&str, HeaderValue)]) -> Result<RequestContext, Problem> {
        let mut request = Request::builder();
        for (name, value) in headers {
            request = request.header(*name, value.clone());
        }
        let (mut parts, ()) = request.body(()).unwrap().into_parts();
        RequestContext::from_request_parts(&mut parts, &()).await
    }

    #[tokio::test]
    async fn the_gateways_headers_are_read() {
        let tenant = Uuid::now_v7();
        let context = extract(&[
            (
                TENANT_HEADER,
                HeaderValue::from_str(&tenant.to_string()).unwrap(),
            ),
            (USER_HEADER, HeaderValue::from_static("alice")),
            (TRACE_HEADER, HeaderValue::from_static("abc")),
            (AUTHORIZATION_HEADER, HeaderValue::from_static("Bearer t")),
        ])
        .await
        .unwrap();
        assert_eq!(context.tenant, tenant);
        assert_eq!(context.user.as_deref(), Some("alice"));
        let authorization = context.authorization.as_ref().expect("passed on");
        assert_eq!(
            secrecy::ExposeSecret::expose_secret(authorization),
            "Bearer t"
        );
        assert!(
            !format!("{context:?}").contains("Bearer t"),
            "never printed"
        );
        assert_eq!(context.traceparent, None);
    }

    #[tokio::test]
    async fn a_missing_tenant_is_a_problem_400() {
        let problem = extract(&[]).await.unwrap_err();
        assert_eq!(problem.status, 400);
    }

    #[tokio::test]
    async fn a_garbage_tenant_is_a_problem_400() {
        for garbage in ["acme", "", "'; DROP SCHEMA x; --", "0190a1b2-c3d4"] {
            let problem = extract(&[(TENANT_HEADER, HeaderValue::from_str(garbage).unwrap())])
                .await
                .unwrap_err();
            assert_eq!(problem.status, 400, "{garbage:?}");
        }
    }

    #[tokio::test]
    async fn a_tenant_of_bytes_that_are_no_text_is_a_problem_400() {
        // A NUL cannot be in a header value (the http crate refuses it before any extractor);
        // bytes that are not UTF-8 can.
        assert!(HeaderValue::from_bytes(b"\0").is_err());
        let value = HeaderValue::from_bytes(b"\xff\xfe0190").unwrap();
        let problem = extract(&[(TENANT_HEADER, value)]).await.unwrap_err();
        assert_eq!(problem.status, 400);
    }
}
