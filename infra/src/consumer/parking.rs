//! Parked keys (DESIGN.md section 6): a key whose record was dead-lettered, whose later
//! records follow it to the DLQ until it is released.

use std::collections::HashMap;

/// A key parked for this consumer: its records go to the DLQ until it is released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ParkedKey {
    /// The dead letter that parked the key.
    pub head: uuid::Uuid,
    /// The latest dead letter of the key: a release naming an older one is stale.
    pub last: uuid::Uuid,
}

pub(super) type ParkedKeys = HashMap<Vec<u8>, ParkedKey>;
