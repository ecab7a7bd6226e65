//! Commands this process put on the log, handed to its own processor once the broker has
//! acknowledged them, so that a command of a partition this process owns is decided without
//! waiting for its consumer to fetch it back (on tansu a fetch costs its whole wait).
//!
//! The log stays the only order: a handed-off record is decided only when it is the next
//! record of its partition, the one after the last decided. The consumer still delivers every
//! record, and a copy already decided is skipped by its offset; what the hand-off loses (a
//! full queue, a partition not owned or not yet placed) the consumer brings.
//!
//! The same link answers the bus's waiting requests once their outcomes are stored, without
//! the round through Redis's pub/sub that other processes' requests take.

use std::collections::{BTreeMap, HashMap};

use event_schemas::commands::CommandOutcome;
use rdkafka::message::OwnedMessage;
use tokio::sync::mpsc;

use crate::outcomes::OutcomeWaiters;

/// Most records handed off and not yet decided; past it, a record is left to the consumer.
const CAPACITY: usize = 1024;

/// Largest record handed off. A command may carry a manifest of up to a megabyte; the hand-off
/// leaves those few to the consumer, so that what it holds stays within `2 × CAPACITY` records
/// of this size (128 MiB) however slow the processor.
const LARGEST_RECORD: usize = 64 * 1024;

/// The sending side, held by the command bus.
#[derive(Clone)]
pub struct LocalCommands {
    sender: mpsc::Sender<OwnedMessage>,
}

/// The processor's end of its link with this process's bus.
pub struct LocalBus {
    receiver: mpsc::Receiver<OwnedMessage>,
    /// The bus's requests waiting for their outcomes.
    waiters: OutcomeWaiters,
}

/// A link between this process's command bus, whose requests wait with `waiters`, and its
/// processor.
pub fn channel(waiters: OutcomeWaiters) -> (LocalCommands, LocalBus) {
    let (sender, receiver) = mpsc::channel(CAPACITY);
    (LocalCommands { sender }, LocalBus { receiver, waiters })
}

impl LocalCommands {
    /// Hands `record`, as the broker acknowledged it (its partition and offset), to the
    /// processor.
    pub fn hand_off(&self, record: OwnedMessage) {
        use rdkafka::message::Message;
        // Too large, the queue full, or the processor stopped: the consumer delivers it all
        // the same.
        let size = record.payload().map_or(0, <[u8]>::len) + record.key().map_or(0, <[u8]>::len);
        if size > LARGEST_RECORD || self.sender.try_send(record).is_err() {
            metrics::counter!("plexica_command_handoffs_total", "taken" => "false").increment(1);
        }
    }
}

impl LocalBus {
    /// The next record handed off; pending forever once every bus is gone, as a consumer
    /// with no records would be.
    pub async fn recv(&mut self) -> OwnedMessage {
        match self.receiver.recv().await {
            Some(record) => record,
            None => std::future::pending().await,
        }
    }

    /// A record handed off already, if any.
    pub fn try_recv(&mut self) -> Option<OwnedMessage> {
        self.receiver.try_recv().ok()
    }

    /// Answers the requests of this process waiting for `outcomes`, which are stored.
    pub fn answer(&self, outcomes: &[&CommandOutcome]) {
        for outcome in outcomes {
            self.waiters.deliver(outcome);
        }
    }
}

/// Per partition, the offset of the next record to decide, whichever way it comes: the
/// consumer delivers every record in log order; the hand-off only this process's, out of
/// order across the tasks that sent them.
#[derive(Default)]
pub(super) struct Sequence {
    /// Known for a partition once its consumer position is: from the offset it resumed at,
    /// or the last record it delivered.
    next: HashMap<i32, i64>,
    /// Records handed off ahead of their turn, by partition and offset.
    early: BTreeMap<(i32, i64), OwnedMessage>,
}

impl Sequence {
    /// Forgets everything: the partitions may belong to another processor now.
    pub fn reset(&mut self) {
        self.next.clear();
        self.early.clear();
    }

    /// `partition` is read again by the consumer from an earlier offset: what it delivers
    /// says where the partition stands.
    pub fn forget(&mut self, partition: i32) {
        self.next.remove(&partition);
    }

    /// Whether `partition`'s next record is known (under the current assignment).
    pub fn is_placed(&self, partition: i32) -> bool {
        self.next.contains_key(&partition)
    }

    /// `partition` resumes at `offset`: every record before it was decided.
    pub fn resumes_at(&mut self, partition: i32, offset: i64) {
        self.next.entry(partition).or_insert(offset);
    }

    /// Whether a record the consumer delivered is still to be decided; it is, from then on,
    /// the last one taken.
    pub fn consumed(&mut self, partition: i32, offset: i64) -> bool {
        if self.next.get(&partition).is_some_and(|next| offset < *next) {
            return false;
        }
        self.next.insert(partition, offset + 1);
        true
    }

    /// Keeps a handed-off record until its turn; drops it when its partition's place is not
    /// known (the consumer delivers it) or it was decided already.
    pub fn handed_off(&mut self, record: OwnedMessage) {
        use rdkafka::message::Message;
        let (partition, offset) = (record.partition(), record.offset());
        let taken = self.early.len() < CAPACITY
            && self
                .next
                .get(&partition)
                .is_some_and(|next| offset >= *next);
        metrics::counter!("plexica_command_handoffs_total", "taken" => taken.to_string())
            .increment(1);
        if taken {
            self.early.insert((partition, offset), record);
        }
    }

    /// The handed-off records whose turn has come, in log order, each taken.
    pub fn ready(&mut self) -> Vec<OwnedMessage> {
        let mut ready = Vec::new();
        let partitions: Vec<i32> = self.next.keys().copied().collect();
        for partition in partitions {
            let next = self.next.entry(partition).or_default();
            // Decided meanwhile by way of the consumer.
            let stale: Vec<(i32, i64)> = self
                .early
                .range((partition, i64::MIN)..(partition, *next))
                .map(|(key, _)| *key)
                .collect();
            for key in stale {
                self.early.remove(&key);
            }
            while let Some(record) = self.early.remove(&(partition, *next)) {
                ready.push(record);
                *next += 1;
            }
        }
        ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::Timestamp;
    use rdkafka::message::Message;

    fn record(partition: i32, offset: i64) -> OwnedMessage {
        OwnedMessage::new(
            None,
            None,
            "plexica.commands".to_owned(),
            Timestamp::NotAvailable,
            partition,
            offset,
            None,
        )
    }

    fn offsets(records: &[OwnedMessage]) -> Vec<(i32, i64)> {
        records
            .iter()
            .map(|r| (r.partition(), r.offset()))
            .collect()
    }

    #[test]
    fn a_handed_off_record_waits_for_the_records_before_it() {
        let mut sequence = Sequence::default();
        sequence.resumes_at(0, 10);
        sequence.handed_off(record(0, 12));
        sequence.handed_off(record(0, 11));
        assert!(sequence.ready().is_empty(), "10 is not decided yet");
        assert!(
            sequence.consumed(0, 10),
            "another process's command, by the consumer"
        );
        assert_eq!(offsets(&sequence.ready()), [(0, 11), (0, 12)]);
        assert!(!sequence.consumed(0, 11), "decided by the hand-off");
        assert!(!sequence.consumed(0, 12), "decided by the hand-off");
        assert!(sequence.consumed(0, 13));
    }

    #[test]
    fn a_record_the_consumer_delivered_first_is_not_decided_again_when_handed_off() {
        let mut sequence = Sequence::default();
        sequence.resumes_at(1, 0);
        assert!(sequence.consumed(1, 0));
        assert!(sequence.consumed(1, 1));
        sequence.handed_off(record(1, 1));
        sequence.handed_off(record(1, 0));
        assert!(sequence.ready().is_empty());
    }

    #[test]
    fn a_partition_whose_place_is_unknown_leaves_its_records_to_the_consumer() {
        let mut sequence = Sequence::default();
        sequence.handed_off(record(2, 5));
        assert!(sequence.ready().is_empty(), "not placed");
        sequence.resumes_at(2, 4);
        sequence.handed_off(record(2, 4));
        sequence.forget(2);
        assert!(sequence.ready().is_empty(), "read again by the consumer");
        assert!(sequence.consumed(2, 3), "the consumer reads from before");
        assert_eq!(offsets(&sequence.ready()), [(2, 4)], "its turn again");
        assert!(!sequence.consumed(2, 4));
    }

    #[test]
    fn a_new_assignment_forgets_every_partitions_place() {
        let mut sequence = Sequence::default();
        sequence.resumes_at(0, 3);
        sequence.handed_off(record(0, 4));
        sequence.reset();
        sequence.handed_off(record(0, 3));
        assert!(sequence.ready().is_empty());
        assert!(
            sequence.consumed(0, 0),
            "resumed at the group's committed offset"
        );
    }

    #[tokio::test]
    async fn a_record_past_the_largest_is_left_to_the_consumer() {
        let (bus, mut processor) = channel(OutcomeWaiters::default());
        let sized = |bytes: usize| {
            OwnedMessage::new(
                Some(vec![0; bytes]),
                Some(b"plugin:crm".to_vec()),
                "plexica.commands".to_owned(),
                Timestamp::NotAvailable,
                0,
                1,
                None,
            )
        };
        bus.hand_off(sized(LARGEST_RECORD + 1));
        assert!(processor.try_recv().is_none(), "a manifest of a megabyte");
        bus.hand_off(sized(1024));
        assert!(processor.try_recv().is_some());
    }

    #[test]
    fn a_resume_point_does_not_move_a_partition_already_placed() {
        let mut sequence = Sequence::default();
        assert!(sequence.consumed(0, 7));
        sequence.resumes_at(0, 3);
        assert!(!sequence.consumed(0, 7));
        assert!(sequence.consumed(0, 8));
    }
}
