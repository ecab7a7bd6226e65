//! Bearer authentication of requests, and the role checks handlers make.

use crate::auth::{Claims, TokenKeys};
use crate::http::Problem;
use crate::policy::{Access, Principal, authorize};
use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Actor(pub Claims);

impl<S> FromRequestParts<S> for Actor
where
    TokenKeys: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Actor::from_headers(&parts.headers, &TokenKeys::from_ref(state))? {
            Some(actor) => Ok(actor),
            None => Err(unauthorized("send `Authorization: Bearer <token>`")),
        }
    }
}

/// The 403 problem of a request the policy refused.
pub fn forbidden(denied: crate::policy::Denied) -> Problem {
    Problem::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden").detail(denied.to_string())
}

fn unauthorized(detail: &str) -> Problem {
    Problem::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "Authentication required",
    )
    .detail(detail)
}

impl Actor {
    /// The caller named by the `Authorization` header: none without the header, an error
    /// with a header that does not carry a valid bearer token.
    pub fn from_headers(headers: &HeaderMap, keys: &TokenKeys) -> Result<Option<Self>, Problem> {
        let Some(header) = headers.get(axum::http::header::AUTHORIZATION) else {
            return Ok(None);
        };
        let token = header
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| unauthorized("the Authorization header is not a bearer token"))?;
        keys.verify(token.trim())
            .map(|claims| Some(Actor(claims)))
            .map_err(|e| unauthorized(&e.to_string()))
    }

    /// The caller as the policies see it.
    pub fn principal(&self) -> Principal {
        Principal::of(&self.0)
    }

    /// A 403 problem unless the policy lets the caller do `access`.
    pub fn authorize(&self, access: Access) -> Result<(), Problem> {
        authorize(self.principal(), access).map_err(forbidden)
    }

    /// The tenant a tenant admin administers: the token's `tenant_id`. Forbidden for other
    /// roles and for a token that names no tenant (or not a tenant id).
    pub fn administered_tenant(&self) -> Result<uuid::Uuid, Problem> {
        self.authorize(Access::AdministerOwnTenant)?;
        self.principal()
            .tenant()
            .ok_or_else(|| forbidden(crate::policy::Denied("this action needs a tenant")))
    }
}
