use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Everything a request can fail with, answered as Confluent does: an HTTP status and a body
/// `{"error_code": …, "message": …}` that Confluent clients parse.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
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
    #[error("Error in the backend data store: {0}")]
    Store(#[from] sqlx::Error),
    #[error("Error in the backend data store: the journal: {0}")]
    Journal(#[from] crate::journal::JournalError),
    #[error("Error in the backend data store: stored schema {id} no longer parses: {reason}")]
    UnreadableStoredSchema { id: i32, reason: String },
}

impl RegistryError {
    fn codes(&self) -> (StatusCode, u32) {
        match self {
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
            // Confluent answers 500 here; 503 because clients such as schema_registry_converter
            // retry only 502 and 503, and cache every other error for good: a Postgres outage
            // would otherwise leave a schema id undecodable until the consumer restarts.
            Self::Store(_) | Self::Journal(_) => (StatusCode::SERVICE_UNAVAILABLE, 50001),
            Self::UnreadableStoredSchema { .. } => (StatusCode::INTERNAL_SERVER_ERROR, 50001),
        }
    }
}

impl IntoResponse for RegistryError {
    fn into_response(self) -> Response {
        let (status, error_code) = self.codes();
        if status.is_server_error() {
            tracing::error!(error = %self, "schema registry request failed");
        }
        crate::reply(
            status,
            &json!({ "error_code": error_code, "message": self.to_string() }),
        )
    }
}
