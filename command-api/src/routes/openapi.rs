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
    super::plugins::register_plugin,
    super::plugins::install_plugin,
    super::plugins::enable_plugin,
    super::plugins::disable_plugin,
    super::plugins::update_plugin,
    super::plugins::uninstall_plugin,
    super::tenants::create_tenant,
    super::tenants::suspend_tenant,
    super::tenants::reactivate_tenant,
    super::tenants::delete_tenant,
    super::tenants::enable_tenant_plugin,
    super::tenants::disable_tenant_plugin,
    super::tenants::configure_tenant_plugin,
    super::operations::operation,
    super::plugins::manifest_schema,
    super::webhooks::register_webhook,
    super::webhooks::update_webhook,
    super::webhooks::rotate_secret,
    super::webhooks::delete_webhook,
    super::webhooks::disable_webhook,
    super::webhooks::enable_webhook,
))]
struct Doc;

/// The command API's routes, described.
pub fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi;
    let mut doc = Doc::openapi();
    doc.merge(super::registry::openapi());
    doc
}
