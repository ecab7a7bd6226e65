//! The SDK of Plexica plugins written in Rust.
//!
//! A plugin process is started by the platform's process driver with its environment
//! ([`PluginConfig`]); the gateway forwards requests to it with the caller's tenant, user and
//! trace ([`RequestContext`]); its data lives in the tenant's schema ([`TenantDb`]).
//! It serves the standard endpoints ([`standard_routes`], [`serve`]), calls other plugins
//! for its caller through the gateway ([`Services`]), and publishes and subscribes on the log
//! ([`events`]). HTTP errors are RFC 7807 problems ([`Problem`]), a bad JSON body included
//! ([`JsonBody`]).

pub mod config;
pub mod context;
pub mod events;
pub mod json;
pub mod problem;
pub mod serve;
pub mod service;
pub mod tenant_db;

pub use config::{ConfigError, PluginConfig};
pub use context::RequestContext;
pub use event_schemas::record::AvroRecord;
pub use events::{
    EventContext, EventHandler, EventsConfig, PluginEvent, Publisher, ReceivedEvent, Subscription,
};
pub use json::JsonBody;
pub use problem::Problem;
pub use serve::{StopError, serve, serve_subscribed, standard_routes};
pub use service::{ServiceError, Services};
pub use tenant_db::TenantDb;
