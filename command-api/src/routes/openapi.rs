//! The command API's part of the OpenAPI document: the routes' own `utoipa::path`
//! annotations, gathered, and the replies every command shares.

/// What an accepted command answers: its events and a consistency token.
#[derive(utoipa::IntoResponses)]
#[allow(
    dead_code,
    reason = "a description only: the handlers answer `Response`s"
)]
pub(super) enum CommandReplies {
    /// Accepted and decided.
    #[response(status = 200)]
    Done(serde_json::Value),
    /// Accepted, and it created the resource in `Location`.
    #[response(status = 201)]
    Created(serde_json::Value),
    /// A saga started, or the decision took longer than the reply timeout: the operation is
    /// in `Location`.
    #[response(status = 202)]
    Started(serde_json::Value),
}

/// The command side's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    super::register_plugin,
    super::install_plugin,
    super::enable_plugin,
    super::disable_plugin,
    super::update_plugin,
    super::uninstall_plugin,
    super::create_tenant,
    super::suspend_tenant,
    super::reactivate_tenant,
    super::delete_tenant,
    super::enable_tenant_plugin,
    super::disable_tenant_plugin,
    super::configure_tenant_plugin,
    super::operation,
    super::manifest_schema,
))]
struct Doc;

/// The command API's routes, described.
pub fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi;
    let mut doc = Doc::openapi();
    doc.merge(super::registry::openapi());
    doc
}
