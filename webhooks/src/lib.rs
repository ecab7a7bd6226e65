//! Webhooks (Phase 2 plan, M2.4), delivered as the Standard Webhooks specification says.
//!
//! Endpoints are aggregates of the log (`domain::webhook`), listed by the catalog. The
//! `webhooks` consumer reads the core topics and, in its checkpoint's transaction, enqueues a
//! delivery for each endpoint an event is for ([`enqueue`]); the deliverer posts them in
//! order per endpoint and key, signed, retried with backoff, and dead-letters those that run
//! out of attempts ([`deliver`]). No address a webhook may not reach is ever connected to
//! ([`guard`]).

pub mod config;
mod dead_letters;
pub mod deliver;
pub mod enqueue;
pub mod guard;
pub mod signing;
pub mod store;

pub use config::WebhookConfig;
pub use deliver::Deliverer;
pub use enqueue::{Enqueuer, spec};
pub use signing::{EndpointSecret, SigningKey};
