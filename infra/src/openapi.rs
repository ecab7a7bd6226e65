//! The pieces every service's part of the OpenAPI document shares: the bearer security scheme
//! and the problem documents any route may answer.

use utoipa::openapi::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::http::Problem;

/// The faults every authenticated REST route may answer, each a problem document.
#[derive(utoipa::IntoResponses)]
pub enum Problems {
    /// A body that is not JSON, a query or header that is not valid.
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(#[to_schema] Problem),
    /// No token, or one that does not verify.
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(#[to_schema] Problem),
    /// The policy (`infra::policy`) does not let the caller do this.
    #[response(status = 403, content_type = "application/problem+json")]
    Forbidden(#[to_schema] Problem),
    /// No such resource.
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(#[to_schema] Problem),
    /// The resource's state does not allow this.
    #[response(status = 409, content_type = "application/problem+json")]
    Conflict(#[to_schema] Problem),
    /// A body over 1 MiB.
    #[response(status = 413, content_type = "application/problem+json")]
    TooLarge(#[to_schema] Problem),
    /// A body without a JSON content type.
    #[response(status = 415, content_type = "application/problem+json")]
    UnsupportedMediaType(#[to_schema] Problem),
    /// A body of the wrong shape, or text that cannot be stored; `errors` names the fields.
    #[response(status = 422, content_type = "application/problem+json")]
    Invalid(#[to_schema] Problem),
    /// The log, the read models or a consistency wait did not answer in time.
    #[response(status = 503, content_type = "application/problem+json")]
    Unavailable(#[to_schema] Problem),
}

/// Adds the bearer scheme (`bearer`) that the routes' `security` names.
pub fn with_bearer_scheme(mut doc: OpenApi) -> OpenApi {
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .description(Some(
                    "HS256 JWT with `sub`, `roles` (`super_admin`, `tenant_admin`) and `tenant_id`",
                ))
                .build(),
        ),
    );
    doc
}
