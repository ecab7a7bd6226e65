//! Shared plumbing of every Plexica service. Nothing here knows about plugins or tenants: it
//! is the configuration, clients and HTTP furniture that each service would otherwise copy.

pub mod actor;
pub mod auth;
pub mod config;
pub mod consumer;
pub mod dead_letter;
pub mod doorbell;
pub mod edge;
pub mod group_member;
pub mod group_watch;
pub mod http;
pub mod kafka;
pub mod local_log;
pub mod openapi;
pub mod own_writes;
pub mod policy;
pub mod postgres;
pub mod redis;
pub mod telemetry;
/// Test support (fresh databases, the test run's settings): for the test harness and xtask only.
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod whole_commands;
