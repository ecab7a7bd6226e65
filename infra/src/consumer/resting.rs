//! A partition with nothing to read rests: its consumer pauses it, so that it costs the
//! broker nothing in the consumer's fetches, and looks at it again now and then, or wakes it
//! at once when its own process wrote to it ([`crate::doorbell`]). A consumer whose every
//! partition rests fetches nothing.
//!
//! Why: tansu answers every fetch after its whole wait, with or without data, and plans its
//! queries again for each partition of it; twenty consumers polling an idle platform kept its
//! one core more than half busy, and what they took was missing when work came. Under load
//! the same held for the partitions nobody writes: at 20 commands/s the broker spent a third
//! of its time on the watermarks of partitions that had brought nothing for minutes (`perf`,
//! `docs/performance-history.md`). A partition that brings records stays awake: it rests only
//! after [`KafkaConfig::rest_after_ms`] without a record, and only if the broker says that
//! nothing is left to read in it. A record written by another process waits at most
//! [`KafkaConfig::resting_look_every_ms`] plus a fetch.
//!
//! A look asks the broker where each partition ends (one request), not for records: a look
//! that fetched for a while and paused again dropped whatever the fetch brought after it, so
//! a consumer behind a broker slower than a look never read again (a rebuild stalled so).

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::time::Instant;

use crate::config::KafkaConfig;
use crate::doorbell;
use crate::kafka::RebalanceContext;

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
pub(super) use crate::doorbell::Partition;

/// The rest of each partition of the consumer's assignment: a partition rests on its own, so
/// that a consumer busy on some partitions does not fetch the others (its retry topic, a
/// topic nobody writes) as often. On tansu each partition of a fetch costs a query planned
/// again, whether or not it brings anything.
#[derive(Debug)]
pub(super) struct Rests {
    rhythm: Rhythm,
    partitions: BTreeMap<Partition, Rest>,
    /// When the assignment was last read: a partition assigned since rests too, in time.
    assignment_read: Instant,
}

impl Rests {
    pub(super) fn new(rhythm: Rhythm, now: Instant) -> Self {
        Self {
            rhythm,
            partitions: BTreeMap::new(),
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
        self.partitions = partitions;
        self.assignment_read = now;
        new
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

    /// `partitions` were written by this process: those of the assignment stay awake, and
    /// those resting wake. The others are another consumer's.
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

/// A runner's rests with what they act on: its consumer's partitions and the doorbell.
pub(super) struct Resting {
    rests: Rests,
    doorbell: doorbell::Listener,
    consumer_name: String,
}

impl Resting {
    pub(super) fn new(config: &KafkaConfig, consumer_name: &str) -> Self {
        Self {
            rests: Rests::new(Rhythm::of(config), Instant::now()),
            doorbell: doorbell::listen(),
            consumer_name: consumer_name.to_owned(),
        }
    }

    /// Ready when a look is due or the doorbell rings; never otherwise.
    pub(super) async fn changed(&mut self) -> Wake {
        let due = self.rests.due();
        tokio::select! {
            () = async {
                match due {
                    Some(due) => tokio::time::sleep_until(due).await,
                    None => std::future::pending().await,
                }
            } => Wake::Due,
            rung = self.doorbell.rung() => Wake::Doorbell(rung),
        }
    }

    /// Records of `partitions` were read: they stay awake.
    pub(super) fn read(
        &mut self,
        consumer: &StreamConsumer<RebalanceContext>,
        partitions: &[Partition],
    ) {
        let resumed = self.rests.woken(Instant::now(), partitions);
        self.apply(consumer, Vec::new(), resumed, "records");
    }

    /// Acts on what [`Resting::changed`] said.
    pub(super) fn wake(&mut self, consumer: &StreamConsumer<RebalanceContext>, wake: Wake) {
        let now = Instant::now();
        match wake {
            Wake::Due => {
                let assignment = assignment(consumer, &self.consumer_name)
                    .map(|assignment| partitions_of(&assignment))
                    .unwrap_or_default();
                let new = self.rests.assigned(now, assignment);
                self.apply(consumer, Vec::new(), new, "assignment");
                let due = self.rests.due_at(now);
                if due.is_empty() {
                    return;
                }
                let looks = look(consumer, &due);
                let (paused, resumed) = self.rests.looked(now, looks);
                self.apply(consumer, paused, resumed, "look");
            }
            Wake::Doorbell(written) => {
                let resumed = self.rests.rung(now, &written);
                self.apply(consumer, Vec::new(), resumed, "doorbell");
            }
        }
    }

    fn apply(
        &mut self,
        consumer: &StreamConsumer<RebalanceContext>,
        paused: Vec<Partition>,
        resumed: Vec<Partition>,
        cause: &'static str,
    ) {
        if paused.is_empty() && resumed.is_empty() {
            return;
        }
        let (resting, of) = self.rests.resting();
        metrics::gauge!("plexica_consumer_resting", "consumer" => self.consumer_name.clone())
            .set(if of > 0 && resting == of { 1.0 } else { 0.0 });
        metrics::gauge!("plexica_consumer_resting_partitions", "consumer" => self.consumer_name.clone())
            .set(resting as f64);
        if !resumed.is_empty() {
            metrics::counter!("plexica_consumer_wakeups_total", "consumer" => self.consumer_name.clone(), "cause" => cause)
                .increment(1);
        }
        tracing::debug!(consumer = %self.consumer_name, ?paused, ?resumed, cause, "rest");
        for (change, partitions) in [(Partitions::Pause, paused), (Partitions::Resume, resumed)] {
            if partitions.is_empty() {
                continue;
            }
            let list = list_of(&partitions);
            let result = match change {
                Partitions::Pause => consumer.pause(&list),
                Partitions::Resume => consumer.resume(&list),
            };
            if let Err(error) = result {
                tracing::debug!(consumer = %self.consumer_name, %error, ?change, "pausing or resuming partitions failed");
                continue;
            }
            if change == Partitions::Resume {
                // The ends are not needed: the request wakes the fetcher (see [`ends`]).
                let _ = ends(consumer, &list);
            }
        }
    }
}

fn partitions_of(list: &TopicPartitionList) -> Vec<Partition> {
    list.elements()
        .iter()
        .map(|p| (p.topic().to_owned(), p.partition()))
        .collect()
}

fn list_of(partitions: &[Partition]) -> TopicPartitionList {
    let mut list = TopicPartitionList::new();
    for (topic, partition) in partitions {
        list.add_partition(topic, *partition);
    }
    list
}

/// The consumer's assigned partitions; none when it has none or cannot tell.
fn assignment(
    consumer: &StreamConsumer<RebalanceContext>,
    consumer_name: &str,
) -> Option<TopicPartitionList> {
    match consumer.assignment() {
        Ok(assignment) if assignment.count() > 0 => Some(assignment),
        Ok(_) => None,
        Err(error) => {
            tracing::debug!(consumer = %consumer_name, %error, "reading the assignment to rest failed");
            None
        }
    }
}

/// Whether the consumer has read each of `due` to where the broker says it ends. A
/// partition the consumer has read nothing of since it was assigned or sought (librdkafka
/// then knows no position) is read to the end only when it is empty; not knowing is
/// [`Look::RecordsWait`], so a partition the consumer cannot tell of stays awake.
fn look(consumer: &StreamConsumer<RebalanceContext>, due: &[Partition]) -> Vec<(Partition, Look)> {
    let all_wait = || {
        due.iter()
            .map(|partition| (partition.clone(), Look::RecordsWait))
            .collect()
    };
    let (Some(ends), Ok(positions)) = (ends(consumer, &list_of(due)), consumer.position()) else {
        return all_wait();
    };
    due.iter()
        .map(|(topic, partition)| {
            let end = ends
                .find_partition(topic, *partition)
                .map(|end| end.offset());
            let position = positions
                .find_partition(topic, *partition)
                .map(|p| p.offset());
            let behind = match (end, position) {
                (Some(Offset::Offset(end)), Some(Offset::Offset(read_to))) => end > read_to,
                (Some(Offset::Offset(end)), _) => end > 0,
                _ => true,
            };
            let look = if behind {
                Look::RecordsWait
            } else {
                Look::ReadToTheEnd
            };
            ((topic.clone(), *partition), look)
        })
        .collect()
}

/// Where each of `assignment`'s partitions ends, in one request to its broker. The request
/// also wakes librdkafka's broker thread after a resume: with every partition paused it
/// sleeps up to a second between looks at its partitions, and a resume does not wake it (it
/// took up to that long to fetch again), while a reply does. The wait is long on purpose:
/// librdkafka drops the connection, and every fetch and join on it, when a request times out,
/// and a busy tansu took over a second to answer.
fn ends(
    consumer: &StreamConsumer<RebalanceContext>,
    assignment: &TopicPartitionList,
) -> Option<TopicPartitionList> {
    let mut latest = TopicPartitionList::new();
    for partition in assignment.elements() {
        latest
            .add_partition_offset(partition.topic(), partition.partition(), Offset::End)
            .ok()?;
    }
    crate::kafka::blocking(|| consumer.offsets_for_times(latest, LOOK_TIMEOUT))
        .inspect_err(|error| tracing::debug!(%error, "asking where the partitions end failed"))
        .ok()
}

/// Longer than any answer of a broker that still works, short enough that a broker gone
/// holds a stopping consumer back only this long.
const LOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// Why [`Resting::changed`] returned.
#[derive(Debug, Clone)]
pub(super) enum Wake {
    Due,
    /// These partitions were written by this process.
    Doorbell(Vec<Partition>),
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
}
