//! Records handed to this process's own consumers, so that they need not fetch them: the
//! records the command processor appended, once the broker has acknowledged them, and the
//! records the catalog applied, once its batch has committed.
//!
//! Why: tansu answers a fetch only after its whole `fetch.wait.max.ms`, with or without data,
//! plans its queries again for each, and reads each record's headers with a query of its own.
//! A catalog that must show an accepted command at once fetched every 5 ms, half of what a
//! platform at 20 commands/s cost the broker; and every consumer of the processor's events
//! fetched each of them again. With the processor's events (and fences) handed over, the
//! catalog of `plexica all` is fresher, not staler, and its partitions rest while they are
//! fed; the consumers that must not pass the catalog (the webhooks find an event's endpoints
//! in it) take what it applied ([`Stage::Applied`]), and rest too. `docs/architecture.md`
//! says why each takes which.
//!
//! The log stays the only order. A handed record is the log's record at its offset (the
//! broker's acknowledgement, or the catalog's fetch, says where), so applying it is applying
//! what a fetch would have brought; a consumer takes one only when it is the next record of a
//! partition it holds, and what it does not take its fetch brings (a full queue, a large
//! record, another process's record before it).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock, Mutex};

use rdkafka::message::{Message, OwnedMessage};
use tokio::sync::broadcast;

/// Runs of records kept for consumers that have not taken them yet; a consumer further behind
/// misses the oldest and reads them from its fetch.
const CAPACITY: usize = 256;

/// Largest record handed over; a run stops before it: a plugin's manifest of up to a
/// megabyte is left to the fetch.
pub const LARGEST_RECORD: usize = 64 * 1024;

/// Most a run holds, its records' keys and values: what goes beyond is left to the fetch. A
/// consumer behind holds at most [`CAPACITY`] runs, 64 MiB at most, however long the batches
/// it is handed (a catalog reading the log from its start applies 2,000 records a batch).
pub const LARGEST_RUN: usize = 256 * 1024;

/// Records of one topic's partition at consecutive offsets, as the log has them.
pub type Run = Arc<[OwnedMessage]>;

/// Which of its process's records a consumer is handed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// The command processor's, as the broker acknowledges them: for a consumer on the path of
    /// a reply (the catalog).
    Appended,
    /// The catalog's, as it commits them: for a consumer that must not pass the catalog.
    Applied,
}

/// The topics each stage hands over records of, as their writers declared them.
static FED_TOPICS: LazyLock<Mutex<HashMap<Stage, HashSet<String>>>> =
    LazyLock::new(Default::default);

static APPENDED: LazyLock<broadcast::Sender<Run>> =
    LazyLock::new(|| broadcast::Sender::new(CAPACITY));
static APPLIED: LazyLock<broadcast::Sender<Run>> =
    LazyLock::new(|| broadcast::Sender::new(CAPACITY));

impl Stage {
    fn log(self) -> &'static broadcast::Sender<Run> {
        match self {
            Stage::Appended => &APPENDED,
            Stage::Applied => &APPLIED,
        }
    }

    /// Hands `records`, at `self`, to this process's consumers. They must be one partition's,
    /// at consecutive offsets as the log has them; a run is cut before the first record
    /// larger than [`LARGEST_RECORD`], and after [`LARGEST_RUN`].
    pub fn hand(self, mut records: Vec<OwnedMessage>) {
        if let Some(large) = records.iter().position(|r| size(r) > LARGEST_RECORD) {
            records.truncate(large);
        }
        let mut run_size = 0;
        if let Some(beyond) = records.iter().position(|r| {
            run_size += size(r);
            run_size > LARGEST_RUN
        }) {
            records.truncate(beyond.max(1));
        }
        if records.is_empty() {
            return;
        }
        // No consumer listening is no error: nothing in this process takes them.
        let _ = self.log().send(records.into());
    }

    /// Records of `topics` are handed over at `self` from now on, as they are written: a
    /// consumer of this process taking them at `self` needs no doorbell for them.
    pub fn feeds(self, topics: impl IntoIterator<Item = String>) {
        FED_TOPICS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(self)
            .or_default()
            .extend(topics);
    }

    /// Whether records of `topic` are handed over at `self`.
    pub fn hands(self, topic: &str) -> bool {
        FED_TOPICS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&self)
            .is_some_and(|topics| topics.contains(topic))
    }

    /// Whether a consumer of this process takes records at `self`: a process without one (a
    /// command API alone) keeps no copies.
    pub fn is_listened(self) -> bool {
        self.log().receiver_count() > 0
    }

    /// What a consumer listens on to take records at `self`; runs handed before this call are
    /// not received.
    pub fn listen(self) -> broadcast::Receiver<Run> {
        self.log().subscribe()
    }
}

/// Hands `records`, acknowledged by the broker with these offsets, to this process's
/// consumers ([`Stage::Appended`]).
pub fn appended(records: Vec<OwnedMessage>) {
    Stage::Appended.hand(records);
}

/// Whether a consumer of this process takes the records the processor appends.
pub fn is_listened() -> bool {
    Stage::Appended.is_listened()
}

fn size(record: &OwnedMessage) -> usize {
    record.payload().map_or(0, <[u8]>::len) + record.key().map_or(0, <[u8]>::len)
}
