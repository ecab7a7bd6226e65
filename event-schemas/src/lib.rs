//! The log's contract, shared by every producer and consumer of Plexica's topics (plugins
//! included): topic names, the record envelope in CloudEvents headers, the Avro schemas of
//! events, commands and outcomes, and the codec that writes them in the Confluent wire format
//! with schemas kept in a registry.
//!
//! The codec and the envelope are Kafka and registry I/O: they come with the `wire` feature,
//! which every part of the platform turns on and the pure `domain` crate does not.

#[cfg(feature = "wire")]
pub mod codec;
pub mod commands;
#[cfg(feature = "wire")]
pub mod envelope;
pub mod events;
pub mod record;
pub mod status;
pub mod topics;

#[cfg(feature = "wire")]
pub use codec::{Codec, CodecError};
#[cfg(feature = "wire")]
pub use envelope::{Envelope, HeaderError};
pub use events::{CoreEvent, PluginEvent, PluginHealthEvent, RegistryEvent, TenantEvent};
pub use topics::Topics;
