//! Records of the command side: commands on `plexica.commands`, outcomes on
//! `plexica.command-results`, and the fence a new partition owner writes.

use serde::{Deserialize, Serialize};

use crate::record::AvroRecord;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandRecord {
    pub command_id: String,
    /// Names the command, e.g. `plugin.register`; the payload's shape follows from it.
    pub command_type: String,
    pub aggregate_key: String,
    /// The command's parameters as JSON.
    pub payload: String,
    pub actor_id: String,
    pub actor_roles: Vec<String>,
    pub actor_tenant_id: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub issued_at: i64,
    pub traceparent: Option<String>,
}

impl AvroRecord for CommandRecord {
    const FULL_NAME: &'static str = "com.plexica.envelope.CommandRecord";
    const SCHEMA: &'static str = include_str!("../schemas/envelope/command_record.avsc");
}

/// Where an event landed in the log: also the consistency token of a command reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventPosition {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub event_type: String,
    pub aggregate_version: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandOutcome {
    pub command_id: String,
    pub aggregate_key: String,
    pub accepted: bool,
    pub events: Vec<EventPosition>,
    /// The RFC 7807 problem, as JSON, of a rejected command.
    pub rejection: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub decided_at: i64,
}

impl AvroRecord for CommandOutcome {
    const FULL_NAME: &'static str = "com.plexica.envelope.CommandOutcome";
    const SCHEMA: &'static str = include_str!("../schemas/envelope/command_outcome.avsc");
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriterFenced {
    pub epoch: i64,
    pub owner: String,
    pub partition: i32,
}

impl AvroRecord for WriterFenced {
    const FULL_NAME: &'static str = "com.plexica.envelope.WriterFenced";
    const SCHEMA: &'static str = include_str!("../schemas/envelope/writer_fenced.avsc");
}
