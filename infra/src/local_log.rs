//! Records this process appended to the log, handed to its own consumers once the broker has
//! acknowledged them: a consumer in the process of the command processor applies the
//! processor's events without waiting for its fetch to bring them back.
//!
//! Why: tansu answers a fetch only after its whole `fetch.wait.max.ms`, with or without data,
//! and plans its queries again for each: a catalog that must show an accepted command at once
//! fetched every 5 ms, half of what a platform at 20 commands/s cost the broker. With the
//! processor's events (and fences) handed over, the catalog of `plexica all` fetches at the
//! background pace and is fresher, not staler. Only consumers on a reply's path take them
//! (`Pace::takes_handed`); `docs/architecture.md` says why the others do not.
//!
//! The log stays the only order. A handed record is the log's record at its offset (the
//! broker's acknowledgement says where), so applying it is applying what a fetch would have
//! brought; a consumer takes one only when it is the next record of a partition it holds, and
//! its fetch still brings every record, a copy already applied being skipped by its offset.
//! Whatever is not handed (a full queue, a large record, another process's record) the fetch
//! brings.

use std::sync::{Arc, LazyLock};

use rdkafka::message::{Message, OwnedMessage};
use tokio::sync::broadcast;

/// Runs of records kept for consumers that have not taken them yet; a consumer further behind
/// misses the oldest and reads them from its fetch.
const CAPACITY: usize = 256;

/// Largest record handed over; a run stops before it. Runs are kept at most [`CAPACITY`]
/// deep, so this bounds what they hold (16 MiB) however slow a consumer; a plugin's manifest
/// of up to a megabyte is left to the fetch.
pub const LARGEST_RECORD: usize = 64 * 1024;

/// Records of one topic's partition at consecutive offsets, as the broker acknowledged them.
pub type Run = Arc<[OwnedMessage]>;

static LOCAL_LOG: LazyLock<broadcast::Sender<Run>> =
    LazyLock::new(|| broadcast::Sender::new(CAPACITY));

/// Hands `records`, acknowledged by the broker with these offsets, to this process's
/// consumers. They must be one partition's, in offset order; a run is cut before the first
/// record larger than [`LARGEST_RECORD`].
pub fn appended(mut records: Vec<OwnedMessage>) {
    if let Some(large) = records.iter().position(|r| size(r) > LARGEST_RECORD) {
        records.truncate(large);
    }
    if records.is_empty() {
        return;
    }
    // No consumer listening is no error: nothing in this process reads the log.
    let _ = LOCAL_LOG.send(records.into());
}

/// Whether a consumer of this process takes its records: a process without one (a command
/// API alone) keeps no copies.
pub fn is_listened() -> bool {
    LOCAL_LOG.receiver_count() > 0
}

/// What a consumer listens on to take this process's records; runs appended before this call
/// are not received.
pub fn listen() -> broadcast::Receiver<Run> {
    LOCAL_LOG.subscribe()
}

fn size(record: &OwnedMessage) -> usize {
    record.payload().map_or(0, <[u8]>::len) + record.key().map_or(0, <[u8]>::len)
}
