//! A consumer with nothing to read rests: it pauses its partitions, so that it costs the
//! broker no fetch, and looks again now and then, or wakes at once when its own process wrote
//! to the log ([`crate::doorbell`]).
//!
//! Why: tansu answers every fetch after its whole wait, with or without data, and plans its
//! queries again for each; twenty consumers polling an idle platform kept its one core more
//! than half busy, and what they took was missing when work came. A consumer that reads
//! stays awake: it rests only after [`KafkaConfig::rest_after_ms`] without a record, and only
//! if the broker says that nothing is left to read. A record written by another process waits
//! at most [`KafkaConfig::resting_look_every_ms`] plus a fetch.
//!
//! A look asks the broker where each partition ends (one request), not for records: a look
//! that fetched for a while and paused again dropped whatever the fetch brought after it, so
//! a consumer behind a broker slower than a look never read again (a rebuild stalled so).

use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::KafkaConfig;
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

/// A runner's rest with what it acts on: its consumer's partitions and the doorbell.
pub(super) struct Resting {
    rest: Rest,
    doorbell: watch::Receiver<u64>,
    consumer_name: String,
}

impl Resting {
    pub(super) fn new(config: &KafkaConfig, consumer_name: &str) -> Self {
        Self {
            rest: Rest::new(Rhythm::of(config), Instant::now()),
            doorbell: crate::doorbell::listen(),
            consumer_name: consumer_name.to_owned(),
        }
    }

    /// Ready when a look is due or the doorbell rings; never otherwise.
    pub(super) async fn changed(&mut self) -> Wake {
        let due = self.rest.due();
        tokio::select! {
            () = async {
                match due {
                    Some(due) => tokio::time::sleep_until(due).await,
                    None => std::future::pending().await,
                }
            } => Wake::Due,
            rang = self.doorbell.changed() => match rang {
                Ok(()) => Wake::Doorbell,
                // The doorbell lives as long as the process: never.
                Err(_) => std::future::pending().await,
            },
        }
    }

    /// Records were read: stay awake.
    pub(super) fn read(&mut self, consumer: &StreamConsumer<RebalanceContext>) {
        let change = self.rest.woken(Instant::now());
        self.apply(consumer, change, "records");
    }

    /// Acts on what [`Resting::changed`] said.
    pub(super) fn wake(&mut self, consumer: &StreamConsumer<RebalanceContext>, wake: Wake) {
        let (change, cause) = match wake {
            Wake::Due => {
                let look = look(consumer, &self.consumer_name);
                (self.rest.looked(Instant::now(), look), "look")
            }
            Wake::Doorbell => (self.rest.woken(Instant::now()), "doorbell"),
        };
        self.apply(consumer, change, cause);
    }

    fn apply(
        &mut self,
        consumer: &StreamConsumer<RebalanceContext>,
        change: Option<Partitions>,
        cause: &'static str,
    ) {
        let Some(change) = change else { return };
        metrics::gauge!("plexica_consumer_resting", "consumer" => self.consumer_name.clone())
            .set(if self.rest.is_resting() { 1.0 } else { 0.0 });
        if change == Partitions::Resume {
            metrics::counter!("plexica_consumer_wakeups_total", "consumer" => self.consumer_name.clone(), "cause" => cause)
                .increment(1);
        }
        // What is assigned now: a partition assigned while resting fetches until the next
        // pause, and one still paused from an earlier assignment is resumed at the next wake.
        let Some(assignment) = assignment(consumer, &self.consumer_name) else {
            return;
        };
        tracing::debug!(consumer = %self.consumer_name, ?change, cause, partitions = assignment.count(), "rest");
        let result = match change {
            Partitions::Pause => consumer.pause(&assignment),
            Partitions::Resume => consumer.resume(&assignment),
        };
        if let Err(error) = result {
            tracing::debug!(consumer = %self.consumer_name, %error, ?change, "pausing or resuming partitions failed");
            return;
        }
        if change == Partitions::Resume {
            // The ends are not needed: the request wakes the fetcher (see [`ends`]).
            let _ = ends(consumer, &assignment);
        }
    }
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

/// Whether the consumer has read each of its partitions to where the broker says it ends.
/// A partition the consumer has read nothing of since it was assigned or sought (librdkafka
/// then knows no position) is read to the end only when it is empty; not knowing is
/// [`Look::RecordsWait`], so a consumer that cannot tell stays awake.
fn look(consumer: &StreamConsumer<RebalanceContext>, consumer_name: &str) -> Look {
    let Some(assignment) = assignment(consumer, consumer_name) else {
        return Look::ReadToTheEnd;
    };
    let (Some(ends), Ok(positions)) = (ends(consumer, &assignment), consumer.position()) else {
        return Look::RecordsWait;
    };
    let behind = ends.elements().iter().any(|end| {
        let Offset::Offset(end_offset) = end.offset() else {
            return true;
        };
        let position = positions
            .find_partition(end.topic(), end.partition())
            .map(|p| p.offset());
        match position {
            Some(Offset::Offset(read_to)) => end_offset > read_to,
            _ => end_offset > 0,
        }
    });
    if behind {
        Look::RecordsWait
    } else {
        Look::ReadToTheEnd
    }
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
#[derive(Debug, Clone, Copy)]
pub(super) enum Wake {
    Due,
    Doorbell,
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
}
