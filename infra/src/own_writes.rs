//! What this process's command processor knows of the partitions it writes while it holds
//! their leases: where each ends, as the broker's acknowledgements of its records say, and
//! which keys its own records at the end have.
//!
//! Why: the saga runner acts on a plugin's event only when no later record of the plugin
//! follows it (`command-api/src/sagas/look_ahead.rs`), and asked the broker for the partition's end
//! for each event, the largest cost a command put on tansu after its own records. For an
//! event its own process wrote a moment ago, the process already knows the answer.
//!
//! An acknowledgement says where the partition ended when it was written; the records after
//! it are written later, as after any answer the broker gives. What is known stops being
//! told once the processor stops writing a partition (its lease lost, a batch failed, a new
//! assignment, a stop), so that it never stands for a partition another processor writes.
//! It is the process's, as a process runs one command processor (`plexica all`, `plexica
//! command-api`): a second one in the same process (two platforms in one test) makes every
//! answer from here the other's too.
//!
//! "A record of this key follows" is answered from here only for records the processor
//! found its lease still held after the broker acknowledged them ([`held`]): a new owner
//! writes its fence after it takes the lease, so such a record comes before any fence that
//! voids it, and every reader admits it. A record not yet confirmed so may be a fenced
//! writer's, void to every reader, which only the log can tell; the caller reads the log then.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, MutexGuard, PoisonError};

/// Most keys remembered for one partition: past it, what was remembered is forgotten and
/// the partition is known again from its next record on.
const KEYS_REMEMBERED: usize = 4096;

/// What the processor wrote at the end of one partition.
#[derive(Debug)]
struct Written {
    /// Every offset from here to `end` is one of the processor's records, each key's last in
    /// `last_of_key`.
    known_from: i64,
    /// The offset after the last record acknowledged.
    end: i64,
    /// The processor's records below this offset were written under a lease it held after
    /// their acknowledgement.
    held_below: i64,
    last_of_key: HashMap<Vec<u8>, i64>,
}

static WRITTEN: LazyLock<Mutex<HashMap<(String, i32), Written>>> = LazyLock::new(Default::default);

fn written() -> MutexGuard<'static, HashMap<(String, i32), Written>> {
    WRITTEN.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The broker acknowledged the processor's record of `key` at `offset` of `topic`'s
/// `partition`, written under the partition's lease.
pub fn wrote(topic: &str, partition: i32, offset: i64, key: &[u8]) {
    let mut written = written();
    let partition = written
        .entry((topic.to_owned(), partition))
        .or_insert_with(|| Written {
            known_from: offset,
            end: offset,
            held_below: offset,
            last_of_key: HashMap::new(),
        });
    if offset != partition.end || partition.last_of_key.len() >= KEYS_REMEMBERED {
        // Another writer's records between (or a record told out of order): what is known
        // starts again here.
        partition.last_of_key.clear();
        partition.known_from = offset.max(partition.end);
    }
    if offset >= partition.end {
        partition.end = offset + 1;
        partition.last_of_key.insert(key.to_vec(), offset);
    }
}

/// The processor checked, after the broker acknowledged its record at `offset` of `topic`'s
/// `partition`, that it still held the partition's lease.
pub fn held(topic: &str, partition: i32, offset: i64) {
    if let Some(partition) = written().get_mut(&(topic.to_owned(), partition)) {
        partition.held_below = partition.held_below.max(offset + 1).min(partition.end);
    }
}

/// The processor no longer writes `partition` of any topic.
pub fn stopped_writing(partition: i32) {
    written().retain(|(_, number), _| *number != partition);
}

/// The processor writes no partition any more.
pub fn stopped_writing_all() {
    written().clear();
}

/// What the processor's own writes tell of the records of `key` after `offset` in `topic`'s
/// `partition`; `None` when it does not write the partition, or wrote nothing after `offset`.
pub fn after(topic: &str, partition: i32, offset: i64, key: &[u8]) -> Option<WrittenAfter> {
    let written = written();
    let partition = written.get(&(topic.to_owned(), partition))?;
    if offset >= partition.end {
        return None;
    }
    Some(match partition.last_of_key.get(key) {
        Some(last) if *last > offset && *last < partition.held_below => WrittenAfter::KeyFollows,
        Some(last) if *last > offset => WrittenAfter::EndsAt(partition.end),
        _ if offset + 1 < partition.known_from => WrittenAfter::EndsAt(partition.end),
        _ => WrittenAfter::NoneOfTheKey,
    })
}

/// What the processor's writes tell of a partition after an offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WrittenAfter {
    /// Every record after it up to the partition's end is the processor's, and none has the
    /// key.
    NoneOfTheKey,
    /// A record of the key follows it that every reader admits.
    KeyFollows,
    /// The partition ends at this offset; what lies between is for the log to tell.
    EndsAt(i64),
}

#[cfg(test)]
mod tests {
    use super::*;

    // The registry is the process's: each test writes a topic of its own.

    #[test]
    fn a_key_not_written_after_an_offset_is_known_not_to_follow() {
        wrote("t1", 0, 10, b"a");
        wrote("t1", 0, 11, b"b");
        wrote("t1", 0, 12, b"c");
        assert_eq!(after("t1", 0, 10, b"a"), Some(WrittenAfter::NoneOfTheKey));
        // A record of the key whose lease was not yet found held: for the log to tell.
        assert_eq!(after("t1", 0, 11, b"c"), Some(WrittenAfter::EndsAt(13)));
        held("t1", 0, 12);
        assert_eq!(after("t1", 0, 11, b"c"), Some(WrittenAfter::KeyFollows));
        // The last record written: nothing follows it.
        assert_eq!(after("t1", 0, 12, b"c"), Some(WrittenAfter::NoneOfTheKey));
        // Past the end: nothing is known.
        assert_eq!(after("t1", 0, 13, b"c"), None);
        assert_eq!(after("t1", 1, 10, b"a"), None);
    }

    #[test]
    fn another_writers_records_between_make_the_keys_unknown_before_them() {
        wrote("t2", 0, 10, b"a");
        // 11 and 12 are another writer's.
        wrote("t2", 0, 13, b"b");
        assert_eq!(after("t2", 0, 10, b"a"), Some(WrittenAfter::EndsAt(14)));
        assert_eq!(after("t2", 0, 12, b"a"), Some(WrittenAfter::NoneOfTheKey));
        // Told out of order: nothing before the end is known.
        wrote("t2", 0, 12, b"a");
        assert_eq!(after("t2", 0, 11, b"b"), Some(WrittenAfter::EndsAt(14)));
        wrote("t2", 0, 14, b"a");
        assert_eq!(after("t2", 0, 12, b"a"), Some(WrittenAfter::EndsAt(15)));
        assert_eq!(after("t2", 0, 13, b"b"), Some(WrittenAfter::NoneOfTheKey));
    }

    #[test]
    fn only_records_acknowledged_before_the_lease_was_found_held_are_known_to_follow() {
        wrote("t4", 0, 10, b"a");
        wrote("t4", 0, 11, b"a");
        held("t4", 0, 11);
        wrote("t4", 0, 12, b"b");
        wrote("t4", 0, 13, b"b");
        assert_eq!(after("t4", 0, 10, b"a"), Some(WrittenAfter::KeyFollows));
        assert_eq!(after("t4", 0, 12, b"b"), Some(WrittenAfter::EndsAt(14)));
        // Held beyond what was acknowledged is no licence for what comes later.
        held("t4", 0, 20);
        wrote("t4", 0, 14, b"b");
        assert_eq!(after("t4", 0, 13, b"b"), Some(WrittenAfter::EndsAt(15)));
        // Only a key's last record is remembered: 13 was held, 14 not yet.
        assert_eq!(after("t4", 0, 12, b"b"), Some(WrittenAfter::EndsAt(15)));
    }

    #[test]
    fn a_partition_no_longer_written_tells_nothing() {
        wrote("t3", 0, 10, b"a");
        wrote("t3", 0, 11, b"b");
        wrote("t3", 1, 10, b"a");
        wrote("t3", 1, 11, b"b");
        stopped_writing(0);
        assert_eq!(after("t3", 0, 10, b"a"), None);
        assert_eq!(after("t3", 1, 10, b"a"), Some(WrittenAfter::NoneOfTheKey));
    }
}
