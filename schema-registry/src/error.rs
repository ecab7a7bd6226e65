use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use infra::http::Problem;

/// Everything a request can fail with: an HTTP status and a problem document (RFC 7807, as
/// every other service of the platform answers) holding Confluent's `error_code` and `message`,
/// which Confluent clients parse.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// No token, or one that may not write (the problem says which).
    #[error("{}", .0.detail.as_deref().unwrap_or(&.0.title))]
    Refused(Problem),
    #[error("Subject '{0}' not found.")]
    SubjectNotFound(String),
    #[error("Version {version} not found for subject '{subject}'.")]
    VersionNotFound { subject: String, version: String },
    #[error("Schema not found")]
    SchemaNotFound,
    #[error("Schema {0} not found")]
    SchemaIdNotFound(String),
    #[error("Subject '{0}' does not have subject-level compatibility configured")]
    SubjectConfigNotFound(String),
    #[error("Invalid schema: {0}")]
    InvalidSchema(String),
    #[error(
        "The specified version '{0}' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\""
    )]
    InvalidVersion(String),
    #[error(
        "Invalid compatibility level '{0}'. Valid values are NONE, BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL and FULL_TRANSITIVE"
    )]
    InvalidCompatibilityLevel(String),
    #[error(
        "Schema being registered is incompatible with an earlier schema for subject \"{subject}\", details: {problems:?}"
    )]
    Incompatible {
        subject: String,
        problems: Vec<String>,
    },
    #[error("Unreadable request body: {0}")]
    BadRequest(String),
    #[error("HTTP 404 Not Found")]
    NoSuchRoute,
    #[error("HTTP 405 Method Not Allowed")]
    NoSuchMethod,
    #[error("Error in the backend data store: {0}")]
    Store(#[from] sqlx::Error),
    #[error("Error in the backend data store: the journal: {0}")]
    Journal(#[from] crate::journal::JournalError),
    #[error("Error in the backend data store: stored schema {id} no longer parses: {reason}")]
    UnreadableStoredSchema { id: i32, reason: String },
}

impl RegistryError {
    /// The HTTP status, Confluent's error code and the problem type's slug.
    fn codes(&self) -> (StatusCode, u32, &'static str) {
        let (status, code) = match self {
            // Confluent's codes for an unauthenticated and a forbidden caller.
            Self::Refused(problem) if problem.status == 401 => (StatusCode::UNAUTHORIZED, 40101),
            Self::Refused(_) => (StatusCode::FORBIDDEN, 40301),
            Self::SubjectNotFound(_) => (StatusCode::NOT_FOUND, 40401),
            Self::VersionNotFound { .. } => (StatusCode::NOT_FOUND, 40402),
            Self::SchemaNotFound | Self::SchemaIdNotFound(_) => (StatusCode::NOT_FOUND, 40403),
            Self::SubjectConfigNotFound(_) => (StatusCode::NOT_FOUND, 40408),
            Self::InvalidSchema(_) => (StatusCode::UNPROCESSABLE_ENTITY, 42201),
            Self::InvalidVersion(_) => (StatusCode::UNPROCESSABLE_ENTITY, 42202),
            Self::InvalidCompatibilityLevel(_) => (StatusCode::UNPROCESSABLE_ENTITY, 42203),
            Self::Incompatible { .. } => (StatusCode::CONFLICT, 409),
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, 400),
            Self::NoSuchRoute => (StatusCode::NOT_FOUND, 404),
            Self::NoSuchMethod => (StatusCode::METHOD_NOT_ALLOWED, 405),
            // Confluent answers 500 here; 503 because clients such as schema_registry_converter
            // retry only 502 and 503, and cache every other error for good: a Postgres outage
            // would otherwise leave a schema id undecodable until the consumer restarts.
            Self::Store(_) | Self::Journal(_) => (StatusCode::SERVICE_UNAVAILABLE, 50001),
            Self::UnreadableStoredSchema { .. } => (StatusCode::INTERNAL_SERVER_ERROR, 50001),
        };
        let slug = match self {
            Self::Refused(_) if code == 40101 => "unauthorized",
            Self::Refused(_) => "forbidden",
            Self::SubjectNotFound(_)
            | Self::VersionNotFound { .. }
            | Self::SchemaNotFound
            | Self::SchemaIdNotFound(_)
            | Self::SubjectConfigNotFound(_)
            | Self::NoSuchRoute => "not-found",
            Self::InvalidSchema(_)
            | Self::InvalidVersion(_)
            | Self::InvalidCompatibilityLevel(_) => "validation",
            Self::Incompatible { .. } => "incompatible-schema",
            Self::BadRequest(_) => "invalid-body",
            Self::NoSuchMethod => "method-not-allowed",
            Self::Store(_) | Self::Journal(_) => "unavailable",
            Self::UnreadableStoredSchema { .. } => "internal",
        };
        (status, code, slug)
    }
}

impl IntoResponse for RegistryError {
    fn into_response(self) -> Response {
        let (status, error_code, slug) = self.codes();
        if status.is_server_error() {
            tracing::error!(error = %self, "schema registry request failed");
        }
        let message = self.to_string();
        let title = status.canonical_reason().unwrap_or("Error");
        Problem::new(status, slug, title)
            .detail(message.clone())
            .with("error_code", error_code)
            .with("message", message)
            .into_response()
    }
}
