//! When each partition of a consumer rests, as state machines over the moments they are told
//! of (records read, records handed over, rings, looks); [`super::resting`] does what they
//! say to the consumer. Why partitions rest, and what it costs, is said there.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::time::Instant;

use crate::config::KafkaConfig;

/// What the consumer does with its partitions at a change of state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Partitions {
    Pause,
    Resume,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Fetching; looks once nothing came for `after` since `since`.
    Awake { since: Instant },
    /// Paused; looks at `look_at`.
    Resting { look_at: Instant },
}

/// When a consumer rests and how often it looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Rhythm {
    /// Without a record this long, the consumer looks and rests if nothing is left to read;
    /// `None`: it never does.
    after: Option<Duration>,
    /// How often a resting consumer looks.
    look_every: Duration,
}

impl Rhythm {
    pub(super) fn of(config: &KafkaConfig) -> Self {
        Self {
            after: (config.rest_after_ms > 0)
                .then(|| Duration::from_millis(u64::from(config.rest_after_ms))),
            look_every: Duration::from_millis(u64::from(config.resting_look_every_ms.max(1))),
        }
    }
}

/// What a look found on the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Look {
    /// Every partition ends where the consumer has read to.
    ReadToTheEnd,
    /// Records wait, or the broker could not tell.
    RecordsWait,
}

/// The consumer's rest, as a state machine over the moments it is told of.
#[derive(Debug)]
pub(super) struct Rest {
    rhythm: Rhythm,
    state: State,
}

impl Rest {
    pub(super) fn new(rhythm: Rhythm, now: Instant) -> Self {
        Self {
            rhythm,
            state: State::Awake { since: now },
        }
    }

    /// Records came, or were written by this process: stay awake (wake up if resting).
    pub(super) fn woken(&mut self, now: Instant) -> Option<Partitions> {
        let was = std::mem::replace(&mut self.state, State::Awake { since: now });
        match was {
            State::Awake { .. } => None,
            State::Resting { .. } => Some(Partitions::Resume),
        }
    }

    /// When the consumer looks next, if nothing comes; `None`: never.
    pub(super) fn due(&self) -> Option<Instant> {
        match self.state {
            State::Awake { since } => self.rhythm.after.map(|after| since + after),
            State::Resting { look_at } => Some(look_at),
        }
    }

    /// The look [`Rest::due`] named found `look`. A consumer that records wait for stays
    /// awake, however slow they are to come: only one that has read everything rests.
    pub(super) fn looked(&mut self, now: Instant, look: Look) -> Option<Partitions> {
        let resting = State::Resting {
            look_at: now + self.rhythm.look_every,
        };
        let (state, change) = match (self.state, look) {
            (State::Awake { .. }, _) if self.rhythm.after.is_none() => return None,
            (State::Awake { .. }, Look::RecordsWait) => (State::Awake { since: now }, None),
            (State::Awake { .. }, Look::ReadToTheEnd) => (resting, Some(Partitions::Pause)),
            (State::Resting { .. }, Look::RecordsWait) => {
                (State::Awake { since: now }, Some(Partitions::Resume))
            }
            // Paused again: a partition assigned since the last pause would fetch meanwhile.
            (State::Resting { .. }, Look::ReadToTheEnd) => (resting, Some(Partitions::Pause)),
        };
        self.state = state;
        change
    }

    pub(super) fn is_resting(&self) -> bool {
        matches!(self.state, State::Resting { .. })
    }
}

/// A partition of the consumer's assignment, as the doorbell names it.
pub use crate::doorbell::Partition;

/// The rest of each partition of the consumer's assignment: a partition rests on its own, so
/// that a consumer busy on some partitions does not fetch the others (its retry topic, a
/// topic nobody writes) as often. On tansu each partition of a fetch costs a query planned
/// again, whether or not it brings anything.
#[derive(Debug)]
pub(super) struct Rests {
    rhythm: Rhythm,
    partitions: BTreeMap<Partition, Rest>,
    /// Partitions that records handed over by the consumer's own process moved on since their
    /// last look ([`Rests::fed`]).
    fed: BTreeSet<Partition>,
    /// Partitions its process has fed in this assignment.
    feeding: BTreeSet<Partition>,
    /// Partitions its process has fed, resting, that their last look found records waiting
    /// in with nothing fed since: the next look that finds the same wakes them.
    doubted: BTreeSet<Partition>,
    /// When the assignment was last read: a partition assigned since rests too, in time.
    assignment_read: Instant,
}

impl Rests {
    pub(super) fn new(rhythm: Rhythm, now: Instant) -> Self {
        Self {
            rhythm,
            partitions: BTreeMap::new(),
            fed: BTreeSet::new(),
            feeding: BTreeSet::new(),
            doubted: BTreeSet::new(),
            assignment_read: now,
        }
    }

    /// The assignment as it is now: a partition new to it is awake (and returned: one paused
    /// in an earlier assignment must be resumed), one gone is forgotten.
    pub(super) fn assigned(&mut self, now: Instant, assignment: Vec<Partition>) -> Vec<Partition> {
        let mut partitions = BTreeMap::new();
        let mut new = Vec::new();
        for partition in assignment {
            let rest = self.partitions.remove(&partition).unwrap_or_else(|| {
                new.push(partition.clone());
                Rest::new(self.rhythm, now)
            });
            partitions.insert(partition, rest);
        }
        for set in [&mut self.fed, &mut self.feeding, &mut self.doubted] {
            set.retain(|partition| partitions.contains_key(partition));
        }
        self.partitions = partitions;
        self.assignment_read = now;
        new
    }

    /// The consumer's own process handed it records of `partitions`, which moved them on
    /// without a fetch. They do not wake: a partition its process keeps fed needs no fetch,
    /// and its next look finds it read far enough ([`Rests::looked`]).
    pub(super) fn fed(&mut self, now: Instant, partitions: &[Partition]) {
        for partition in partitions {
            self.partitions
                .entry(partition.clone())
                .or_insert_with(|| Rest::new(self.rhythm, now));
            self.fed.insert(partition.clone());
            self.feeding.insert(partition.clone());
        }
    }

    /// `partitions` brought records: they are assigned, they stay awake, and those resting
    /// wake.
    pub(super) fn woken(&mut self, now: Instant, partitions: &[Partition]) -> Vec<Partition> {
        for partition in partitions {
            self.partitions
                .entry(partition.clone())
                .or_insert_with(|| Rest::new(self.rhythm, now));
        }
        self.rung(now, partitions)
    }

    /// `partitions` were written by this process, and not handed over to the consumer: those
    /// of the assignment stay awake, and those resting wake. The others are another
    /// consumer's.
    pub(super) fn rung(&mut self, now: Instant, partitions: &[Partition]) -> Vec<Partition> {
        let mut resumed = Vec::new();
        for partition in partitions {
            let Some(rest) = self.partitions.get_mut(partition) else {
                continue;
            };
            if rest.woken(now) == Some(Partitions::Resume) {
                resumed.push(partition.clone());
            }
        }
        resumed
    }

    /// When the consumer looks next, if nothing comes; `None`: never.
    pub(super) fn due(&self) -> Option<Instant> {
        let after = self.rhythm.after?;
        let looks = self.partitions.values().filter_map(Rest::due);
        Some(looks.fold(self.assignment_read + after, Instant::min))
    }

    /// The partitions whose look is due at `now`.
    pub(super) fn due_at(&self, now: Instant) -> Vec<Partition> {
        self.partitions
            .iter()
            .filter(|(_, rest)| rest.due().is_some_and(|due| due <= now))
            .map(|(partition, _)| partition.clone())
            .collect()
    }

    /// The looks [`Rests::due_at`] named found `looks`: the partitions to pause and to resume.
    pub(super) fn looked(
        &mut self,
        now: Instant,
        looks: Vec<(Partition, Look)>,
    ) -> (Vec<Partition>, Vec<Partition>) {
        let (mut paused, mut resumed) = (Vec::new(), Vec::new());
        for (partition, look) in looks {
            let Some(rest) = self.partitions.get_mut(&partition) else {
                continue;
            };
            // Fed since the last look, it is read as far as its process has written: what
            // the broker has beyond that was appended a moment ago and is being handed over.
            // Resting with records waiting and nothing fed since, it waits for one more look
            // that finds the same (records appended just before this look may still be on
            // their way over). Another process's record stops the feed, which takes only a
            // partition's next record: it wakes the partition two looks later at the latest.
            let look = if self.fed.remove(&partition) {
                self.doubted.remove(&partition);
                Look::ReadToTheEnd
            } else if look == Look::RecordsWait
                && rest.is_resting()
                && self.feeding.contains(&partition)
                && self.doubted.insert(partition.clone())
            {
                Look::ReadToTheEnd
            } else {
                self.doubted.remove(&partition);
                look
            };
            match rest.looked(now, look) {
                Some(Partitions::Pause) => paused.push(partition),
                Some(Partitions::Resume) => resumed.push(partition),
                None => {}
            }
        }
        (paused, resumed)
    }

    /// How many partitions rest, of how many.
    pub(super) fn resting(&self) -> (usize, usize) {
        let resting = self.partitions.values().filter(|r| r.is_resting()).count();
        (resting, self.partitions.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rhythm() -> Rhythm {
        Rhythm {
            after: Some(Duration::from_secs(2)),
            look_every: Duration::from_millis(500),
        }
    }

    fn resting(start: Instant) -> Rest {
        let mut rest = Rest::new(rhythm(), start);
        rest.looked(start + Duration::from_secs(2), Look::ReadToTheEnd);
        rest
    }

    #[test]
    fn a_consumer_that_read_everything_rests_and_looks_now_and_then() {
        let start = Instant::now();
        let mut rest = Rest::new(rhythm(), start);
        assert_eq!(rest.due(), Some(start + Duration::from_secs(2)));
        let rested = start + Duration::from_secs(2);
        assert_eq!(
            rest.looked(rested, Look::ReadToTheEnd),
            Some(Partitions::Pause)
        );
        assert!(rest.is_resting());
        assert_eq!(rest.due(), Some(rested + Duration::from_millis(500)));
        // Still nothing: it stays paused (with any partition assigned since) and looks again.
        let look = rested + Duration::from_millis(500);
        assert_eq!(
            rest.looked(look, Look::ReadToTheEnd),
            Some(Partitions::Pause)
        );
        assert!(rest.is_resting());
        assert_eq!(rest.due(), Some(look + Duration::from_millis(500)));
    }

    #[test]
    fn a_consumer_that_records_wait_for_never_rests_however_slow_they_come() {
        // A broker slower than the rest's delay: nothing came for two seconds, but the log
        // goes on past what was read. Pausing would drop the fetch under way.
        let start = Instant::now();
        let mut rest = Rest::new(rhythm(), start);
        let waited = start + Duration::from_secs(2);
        assert_eq!(rest.looked(waited, Look::RecordsWait), None);
        assert!(!rest.is_resting());
        assert_eq!(rest.due(), Some(waited + Duration::from_secs(2)));
        let again = waited + Duration::from_secs(2);
        assert_eq!(rest.looked(again, Look::RecordsWait), None);
        assert!(!rest.is_resting());
    }

    #[test]
    fn a_look_that_finds_records_wakes_the_consumer_until_it_has_read_them() {
        let start = Instant::now();
        let mut rest = resting(start);
        let look = start + Duration::from_millis(2500);
        assert_eq!(
            rest.looked(look, Look::RecordsWait),
            Some(Partitions::Resume)
        );
        assert!(!rest.is_resting());
        // The fetch is slow: the next look still finds records waiting, and it stays awake.
        let later = look + Duration::from_secs(2);
        assert_eq!(rest.due(), Some(later));
        assert_eq!(rest.looked(later, Look::RecordsWait), None);
        assert!(!rest.is_resting());
    }

    #[test]
    fn the_doorbell_wakes_a_resting_consumer_at_once() {
        let start = Instant::now();
        let mut rest = resting(start);
        assert_eq!(
            rest.woken(start + Duration::from_millis(2100)),
            Some(Partitions::Resume)
        );
        assert!(!rest.is_resting());
    }

    #[test]
    fn reading_postpones_the_look() {
        let start = Instant::now();
        let mut rest = Rest::new(rhythm(), start);
        let read = start + Duration::from_millis(1900);
        assert_eq!(rest.woken(read), None);
        assert_eq!(rest.due(), Some(read + Duration::from_secs(2)));
    }

    #[test]
    fn a_consumer_told_never_to_rest_never_does() {
        let start = Instant::now();
        let mut rest = Rest::new(
            Rhythm {
                after: None,
                ..rhythm()
            },
            start,
        );
        assert_eq!(rest.due(), None);
        assert_eq!(
            rest.looked(start + Duration::from_secs(60), Look::ReadToTheEnd),
            None
        );
        assert!(!rest.is_resting());
    }

    fn partition(topic: &str) -> Partition {
        (topic.to_owned(), 0)
    }

    #[test]
    fn a_partition_nobody_writes_rests_while_its_consumer_reads_the_others() {
        let start = Instant::now();
        let (busy, idle) = (partition("busy"), partition("idle"));
        let mut rests = Rests::new(rhythm(), start);
        rests.assigned(start, vec![busy.clone(), idle.clone()]);
        // Records of the busy partition keep coming; the idle one brings none.
        let read = start + Duration::from_millis(1_900);
        assert!(rests.woken(read, std::slice::from_ref(&busy)).is_empty());
        let due = rests.due().expect("a look is due");
        assert_eq!(due, start + Duration::from_secs(2));
        assert_eq!(rests.due_at(due), vec![idle.clone()]);
        let (paused, resumed) = rests.looked(due, vec![(idle.clone(), Look::ReadToTheEnd)]);
        assert_eq!((paused, resumed), (vec![idle.clone()], vec![]));
        assert_eq!(rests.resting(), (1, 2));
        // Its process writes to it, and to a partition of another consumer: it wakes at
        // once, the busy one is left alone, the other's is none of its business.
        let written = due + Duration::from_millis(100);
        let elsewhere = partition("another-consumer-s");
        assert_eq!(rests.rung(written, &[idle.clone(), elsewhere]), vec![idle]);
        assert_eq!(rests.resting(), (0, 2));
    }

    #[test]
    fn a_resting_partition_that_another_process_wrote_to_wakes_at_its_look() {
        let start = Instant::now();
        let idle = partition("idle");
        let mut rests = Rests::new(rhythm(), start);
        rests.assigned(start, vec![idle.clone()]);
        // A look due reads the assignment again first, as `Resting::wake` does.
        let rested = start + Duration::from_secs(2);
        rests.assigned(rested, vec![idle.clone()]);
        rests.looked(rested, vec![(idle.clone(), Look::ReadToTheEnd)]);
        let look = rests.due().expect("it looks again");
        assert_eq!(look, rested + Duration::from_millis(500));
        assert_eq!(rests.due_at(look), vec![idle.clone()]);
        let (paused, resumed) = rests.looked(look, vec![(idle.clone(), Look::RecordsWait)]);
        assert_eq!((paused, resumed), (vec![], vec![idle]));
    }

    #[test]
    fn a_partition_assigned_later_rests_in_its_turn_and_one_revoked_is_forgotten() {
        let start = Instant::now();
        let (first, later) = (partition("first"), partition("later"));
        let mut rests = Rests::new(rhythm(), start);
        assert_eq!(rests.due(), Some(start + Duration::from_secs(2)));
        let rebalanced = start + Duration::from_secs(2);
        rests.assigned(rebalanced, vec![first.clone()]);
        let looked = rebalanced + Duration::from_secs(2);
        assert_eq!(rests.due_at(looked), vec![first.clone()]);
        rests.looked(looked, vec![(first.clone(), Look::ReadToTheEnd)]);
        assert_eq!(
            rests.assigned(looked, vec![later.clone()]),
            vec![later.clone()]
        );
        assert_eq!(rests.resting(), (0, 1));
        assert_eq!(rests.due_at(looked + Duration::from_secs(2)), vec![later]);
    }

    #[test]
    fn partitions_told_never_to_rest_never_do() {
        let start = Instant::now();
        let mut rests = Rests::new(
            Rhythm {
                after: None,
                ..rhythm()
            },
            start,
        );
        rests.assigned(start, vec![partition("any")]);
        assert_eq!(rests.due(), None);
    }

    #[test]
    fn a_partition_its_process_keeps_fed_rests_however_busy_and_wakes_when_the_feed_stops() {
        let start = Instant::now();
        let fed = partition("fed");
        let mut rests = Rests::new(rhythm(), start);
        rests.assigned(start, vec![fed.clone()]);
        // Handed records come all the time; none is fetched. At the look the broker has a
        // record more, appended a moment ago and not handed over yet.
        rests.fed(
            start + Duration::from_millis(1_900),
            std::slice::from_ref(&fed),
        );
        let due = rests.due().expect("a look is due");
        assert_eq!(due, start + Duration::from_secs(2));
        let (paused, resumed) = rests.looked(due, vec![(fed.clone(), Look::RecordsWait)]);
        assert_eq!((paused, resumed), (vec![fed.clone()], vec![]));
        // Still fed: it stays paused.
        rests.fed(due + Duration::from_millis(300), std::slice::from_ref(&fed));
        let look = rests.due().expect("it looks again");
        let (_, resumed) = rests.looked(look, vec![(fed.clone(), Look::RecordsWait)]);
        assert!(resumed.is_empty());
        assert_eq!(rests.resting(), (1, 1));
        // Nothing fed since, and records wait: they may be on their way over; it looks again.
        let look = rests.due().expect("it looks again");
        let (_, resumed) = rests.looked(look, vec![(fed.clone(), Look::RecordsWait)]);
        assert!(resumed.is_empty());
        // Still nothing fed, and the same: the feed stopped (another process's record came
        // first), and it fetches.
        let look = rests.due().expect("it looks again");
        let (_, resumed) = rests.looked(look, vec![(fed.clone(), Look::RecordsWait)]);
        assert_eq!(resumed, vec![fed]);
        assert_eq!(rests.resting(), (0, 1));
    }
}
