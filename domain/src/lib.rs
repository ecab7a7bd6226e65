//! Plexica's decisions as pure functions over plain data, in the manner of the Aggregate
//! traits of cqrs-es: `decide(state, command) -> events | rejection` and
//! `evolve(state, event) -> state`. No I/O here: the services are adapters around it.

// A rejection is the ordinary answer to a command, not a rare error path: boxing it would
// only move the size around.
#![allow(clippy::result_large_err)]

pub mod aggregate;
pub mod directory;
pub mod plugin;
pub mod plugin_health;
pub mod registry;
pub mod rejection;
pub mod reservation;
pub mod tenant;
pub mod tenant_schema;
#[cfg(test)]
mod testing;
pub mod webhook;

pub use aggregate::{AggregateKey, AggregateState, Command, decide, evolve};
pub use directory::Directory;
pub use rejection::{FieldError, Reason, Rejection, RejectionKind};
pub use tenant_schema::TenantSchema;
