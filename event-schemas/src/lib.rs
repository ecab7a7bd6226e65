//! The log's contract, shared by every producer and consumer of Plexica's topics (plugins
//! included): topic names, the record envelope in CloudEvents headers, the Avro schemas of
//! events, commands and outcomes, and the codec that writes them in the Confluent wire format
//! with schemas kept in a registry.

pub mod codec;
pub mod commands;
pub mod envelope;
pub mod events;
pub mod status;
pub mod topics;

pub use codec::{Codec, CodecError};
pub use envelope::{Envelope, HeaderError};
pub use events::{CoreEvent, PluginEvent, RegistryEvent, TenantEvent};
pub use topics::Topics;
