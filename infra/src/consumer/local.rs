//! What a runner takes of the records its own process appended ([`crate::local_log`]), and
//! which of its fetched records it has applied already.
//!
//! A runner knows where each partition it applied in the current group generation goes on:
//! the next offset after its last batch, moved on by each record the batch being gathered
//! takes. A handed record is taken only at that offset, so what a batch holds of a partition
//! is consecutive whichever way it came; a fetched record below it was handed and is dropped.
//! A rebalance forgets it all, and a partition a replay moved back is left to the fetch: the
//! batch's checkpoints, read under their locks, stay the judge of what is applied.

use std::collections::{BTreeSet, HashMap, HashSet};

use rdkafka::message::Message;
use tokio::sync::broadcast;

use super::admission::{Checkpoint, TopicPartition};
use super::delivered::Delivered;
use super::resting::Partition;
use crate::kafka::RebalanceContext;
use crate::local_log::{Run, Stage};

pub(super) struct LocalFeed {
    receiver: broadcast::Receiver<Run>,
    topics: HashSet<String>,
    positions: Positions,
    /// Partitions of runs not taken since [`LocalFeed::missed`] was last asked.
    missed: BTreeSet<Partition>,
    /// Fetched records dropped as copies of handed ones: what the fetch cost for nothing.
    copies: metrics::Counter,
}

impl LocalFeed {
    /// Takes the records of `topics` (exact names) its process hands over at `stage` from now
    /// on, for the consumer named `consumer`.
    pub(super) fn new<'a>(
        consumer: &str,
        stage: Stage,
        topics: impl IntoIterator<Item = &'a String>,
    ) -> Self {
        Self {
            copies: metrics::counter!("plexica_consumer_fetched_copies_total", "consumer" => consumer.to_owned()),
            receiver: stage.listen(),
            topics: topics.into_iter().cloned().collect(),
            positions: Positions::default(),
            missed: BTreeSet::new(),
        }
    }

    /// The next handed records this consumer takes, or none once it missed a run (see
    /// [`LocalFeed::missed`]); never ready otherwise.
    pub(super) async fn recv(&mut self, context: &RebalanceContext) -> Vec<Delivered<'static>> {
        loop {
            match self.receiver.recv().await {
                Ok(run) => {
                    let taken = self.take(run, context);
                    if !taken.is_empty() || !self.missed.is_empty() {
                        return taken;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    self.lagged();
                    return Vec::new();
                }
                // The sender is a static: never.
                Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
            }
        }
    }

    /// The partitions this process appended runs to that the consumer did not take (another
    /// process's record before them, a replay, runs it fell too far behind to receive): its
    /// fetch must bring them.
    pub(super) fn missed(&mut self) -> Vec<Partition> {
        std::mem::take(&mut self.missed).into_iter().collect()
    }

    /// Where the consumer's batches have reached in `partition`, handed records included, in
    /// `generation`; `None` when it does not know.
    pub(super) fn fed_to(&self, partition: &Partition, generation: u64) -> Option<i64> {
        let (topic, number) = partition;
        self.positions
            .next_of(&TopicPartition::new(topic.as_str(), *number), generation)
    }

    /// The handed records this consumer takes of those already appended, up to `room`.
    pub(super) fn more(
        &mut self,
        context: &RebalanceContext,
        room: usize,
    ) -> Vec<Delivered<'static>> {
        let mut taken = Vec::new();
        while taken.len() < room {
            match self.receiver.try_recv() {
                Ok(run) => taken.extend(self.take(run, context)),
                Err(broadcast::error::TryRecvError::Lagged(_)) => self.lagged(),
                Err(_) => break,
            }
        }
        taken
    }

    fn take(&mut self, run: Run, context: &RebalanceContext) -> Vec<Delivered<'static>> {
        let Some(first) = run.first() else {
            return Vec::new();
        };
        if !self.topics.contains(first.topic()) {
            return Vec::new();
        }
        let partition = TopicPartition::new(first.topic(), first.partition());
        let offsets: Vec<i64> = run.iter().map(Message::offset).collect();
        // Where the consumer resumed the partition at its assignment, until a batch of it
        // commits: a restarted consumer takes records from its first batch on.
        let resumed = || context.resume_point(first.topic(), first.partition());
        let taken = self
            .positions
            .take(&partition, &offsets, context.generation(), resumed);
        if taken.is_empty() && !self.positions.has_read(&partition, &offsets) {
            self.missed
                .insert((first.topic().to_owned(), first.partition()));
        }
        taken
            .map(|index| Delivered::Handed(run.clone(), index))
            .collect()
    }

    /// Runs went by unreceived: every partition it takes may have missed one.
    fn lagged(&mut self) {
        let known = self.positions.next.keys();
        self.missed.extend(
            known
                .filter(|partition| self.topics.contains(&partition.topic))
                .map(|partition| (partition.topic.clone(), partition.partition)),
        );
    }

    /// Whether a fetched record joins the batch being gathered: not when it was handed.
    pub(super) fn admit_fetched(&mut self, message: &impl Message, generation: u64) -> bool {
        let partition = TopicPartition::new(message.topic(), message.partition());
        let admitted = self
            .positions
            .admit(&partition, message.offset(), generation);
        if !admitted {
            self.copies.increment(1);
        }
        admitted
    }

    /// A batch gathered in `gathered_in` committed these positions; the group is now in
    /// `generation`.
    pub(super) fn committed(
        &mut self,
        positions: &HashMap<TopicPartition, Checkpoint>,
        gathered_in: u64,
        generation: u64,
    ) {
        self.positions.committed(
            positions.iter().map(|(partition, checkpoint)| {
                let settled = !checkpoint.rewound && checkpoint.replay.is_none();
                (partition, settled.then_some(checkpoint.next_offset))
            }),
            gathered_in,
            generation,
        );
    }
}

/// Where each partition goes on, as far as this consumer knows in its generation.
#[derive(Debug, Default)]
struct Positions {
    generation: u64,
    /// `None`: moved back by a replay, left to the fetch until a batch settles it.
    next: HashMap<TopicPartition, Option<i64>>,
}

impl Positions {
    /// Follows the group into `generation`; whether the positions known hold there (in
    /// another generation the partitions may be another consumer's, and all are forgotten).
    fn follow(&mut self, generation: u64) -> bool {
        if self.generation != generation {
            self.generation = generation;
            self.next.clear();
            return false;
        }
        true
    }

    /// The indexes of `offsets` (a run's, ascending) taken: from the partition's next offset
    /// on, while consecutive.
    fn take(
        &mut self,
        partition: &TopicPartition,
        offsets: &[i64],
        generation: u64,
        resumed: impl FnOnce() -> Option<i64>,
    ) -> std::ops::Range<usize> {
        self.follow(generation);
        let Some(next) = self.next.entry(partition.clone()).or_insert_with(resumed) else {
            return 0..0;
        };
        let Some(start) = offsets.iter().position(|offset| *offset == *next) else {
            return 0..0;
        };
        let mut end = start;
        while end < offsets.len() && offsets[end] == *next {
            *next += 1;
            end += 1;
        }
        start..end
    }

    /// Whether the consumer is known to have gone past every one of `offsets` already.
    fn has_read(&self, partition: &TopicPartition, offsets: &[i64]) -> bool {
        match (self.next.get(partition), offsets.last()) {
            (Some(Some(next)), Some(last)) => last < next,
            _ => false,
        }
    }

    fn next_of(&self, partition: &TopicPartition, generation: u64) -> Option<i64> {
        if self.generation != generation {
            return None;
        }
        self.next.get(partition).copied().flatten()
    }

    fn admit(&mut self, partition: &TopicPartition, offset: i64, generation: u64) -> bool {
        if !self.follow(generation) {
            return true;
        }
        match self.next.get_mut(partition) {
            Some(Some(next)) if offset < *next => false,
            Some(Some(next)) if offset == *next => {
                *next += 1;
                true
            }
            _ => true,
        }
    }

    fn committed<'a>(
        &mut self,
        positions: impl Iterator<Item = (&'a TopicPartition, Option<i64>)>,
        gathered_in: u64,
        generation: u64,
    ) {
        self.follow(generation);
        // A rebalance while the batch was applied: what it committed may be another's now.
        if gathered_in != generation {
            self.next.clear();
            return;
        }
        for (partition, next) in positions {
            self.next.insert(partition.clone(), next);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plugins() -> TopicPartition {
        TopicPartition::new("core.plugins", 0)
    }

    /// A consumer that committed up to `next` in generation 1.
    fn at(next: i64) -> Positions {
        let mut positions = Positions {
            generation: 1,
            next: HashMap::new(),
        };
        positions.committed([(&plugins(), Some(next))].into_iter(), 1, 1);
        positions
    }

    #[test]
    fn a_run_that_goes_on_from_the_committed_position_is_taken_whole() {
        let mut positions = at(10);
        assert_eq!(positions.take(&plugins(), &[10, 11, 12], 1, || None), 0..3);
        // The next run goes on from there.
        assert_eq!(positions.take(&plugins(), &[13], 1, || None), 0..1);
    }

    #[test]
    fn what_was_applied_already_is_passed_over_and_a_gap_stops_the_run() {
        let mut positions = at(11);
        assert_eq!(
            positions.take(&plugins(), &[10, 11, 12, 14], 1, || None),
            1..3
        );
        // 13 was not handed: only the fetch brings it, and nothing after it is taken.
        assert_eq!(positions.take(&plugins(), &[14, 15], 1, || None), 0..0);
    }

    #[test]
    fn nothing_is_taken_of_a_partition_not_applied_in_this_generation() {
        let mut positions = at(10);
        assert_eq!(
            positions.take(&TopicPartition::new("core.tenants", 0), &[0], 1, || None),
            0..0
        );
        // A rebalance: the partition may be another consumer's.
        assert_eq!(positions.take(&plugins(), &[10], 2, || None), 0..0);
        assert_eq!(positions.take(&plugins(), &[10], 2, || None), 0..0);
    }

    #[test]
    fn a_fetched_copy_of_a_handed_record_is_dropped_and_the_rest_joins() {
        let mut positions = at(10);
        assert_eq!(positions.take(&plugins(), &[10, 11], 1, || None), 0..2);
        assert!(!positions.admit(&plugins(), 10, 1));
        assert!(!positions.admit(&plugins(), 11, 1));
        assert!(positions.admit(&plugins(), 12, 1));
        // Fetched first, then handed: the handed copy is not taken.
        assert_eq!(positions.take(&plugins(), &[12], 1, || None), 0..0);
        // After a rebalance every fetched record joins: the checkpoints judge.
        assert!(positions.admit(&plugins(), 5, 2));
    }

    #[test]
    fn a_batch_committed_across_a_rebalance_or_moved_back_by_a_replay_teaches_nothing() {
        let mut positions = at(10);
        positions.committed([(&plugins(), Some(20))].into_iter(), 1, 2);
        assert_eq!(positions.take(&plugins(), &[20], 2, || None), 0..0);
        let mut positions = at(10);
        positions.committed([(&plugins(), None)].into_iter(), 1, 1);
        // Not even where it resumed at its assignment.
        assert_eq!(positions.take(&plugins(), &[10], 1, || Some(10)), 0..0);
        assert!(positions.admit(&plugins(), 3, 1));
    }

    #[test]
    fn a_partition_no_batch_applied_yet_goes_on_from_where_it_resumed() {
        let mut positions = Positions::default();
        assert_eq!(positions.take(&plugins(), &[7, 8], 1, || Some(7)), 0..2);
        assert!(!positions.admit(&plugins(), 8, 1));
        // A partition never read: its first records are the fetch's.
        let tenants = TopicPartition::new("core.tenants", 0);
        assert_eq!(positions.take(&tenants, &[0], 1, || None), 0..0);
        assert!(positions.admit(&tenants, 0, 1));
    }

    #[test]
    fn a_run_past_a_record_not_taken_is_missed_and_a_copy_is_not() {
        let mut positions = at(10);
        // Another process's record at 10: the run from 11 cannot be taken, and the fetch
        // must bring both.
        assert_eq!(positions.take(&plugins(), &[11, 12], 1, || None), 0..0);
        assert!(!positions.has_read(&plugins(), &[11, 12]));
        // The fetch brought 10 to 12 first: the same run, handed late, is a copy.
        positions.committed([(&plugins(), Some(13))].into_iter(), 1, 1);
        assert_eq!(positions.take(&plugins(), &[11, 12], 1, || None), 0..0);
        assert!(positions.has_read(&plugins(), &[11, 12]));
        assert_eq!(positions.next_of(&plugins(), 1), Some(13));
        // In another generation the partition may be another consumer's.
        assert_eq!(positions.next_of(&plugins(), 2), None);
    }
}
