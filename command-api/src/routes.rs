//! REST routes of the command side (spec 004 section 8), one module per resource.

mod openapi;
mod operations;
mod plugins;
mod registry;
mod replies;
mod tenant_creation;
mod tenants;
mod webhooks;

use axum::Router;
use axum::extract::FromRef;
use infra::auth::TokenKeys;
pub use openapi::openapi;

use crate::bus::CommandBus;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

#[derive(Clone, FromRef)]
pub struct ApiState {
    pub bus: CommandBus,
    pub keys: TokenKeys,
    /// Derives the webhook secrets the registration and rotation answer.
    pub webhook_key: ::webhooks::SigningKey,
}

pub fn router(bus: CommandBus, keys: TokenKeys, webhook_key: ::webhooks::SigningKey) -> Router {
    Router::new()
        .merge(plugins::routes())
        .merge(tenants::routes())
        .merge(operations::routes())
        .merge(registry::routes())
        .merge(webhooks::routes())
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(ApiState {
            bus,
            keys,
            webhook_key,
        })
}
