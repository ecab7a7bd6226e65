//! A consumer with nothing to read rests: it pauses its partitions, so that it costs the
//! broker no fetch, and looks again now and then, or at once when its own process wrote to
//! the log ([`crate::doorbell`]).
//!
//! Why: tansu answers every fetch after its whole wait, with or without data, and plans its
//! queries again for each; twenty consumers polling an idle platform kept its one core more
//! than half busy, and what they took was missing when work came. A consumer that reads
//! stays awake: it rests only after [`KafkaConfig::rest_after_ms`] without a record, and a
//! record seen while it looks wakes it. A record written by another process waits at most
//! [`KafkaConfig::resting_look_every_ms`] plus a fetch.

use std::time::Duration;

use rdkafka::TopicPartitionList;
use rdkafka::consumer::{Consumer, StreamConsumer};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::KafkaConfig;
use crate::kafka::{Pace, RebalanceContext};

/// What the consumer does with its partitions at a change of state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Partitions {
    Pause,
    Resume,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Fetching; rests once nothing came for `after` since `since`.
    Awake { since: Instant },
    /// Paused; looks at `look_at`.
    Resting { look_at: Instant },
    /// Fetching for one look; rests again at `until` if nothing came.
    Looking { until: Instant },
}

/// When a consumer rests and how it looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Rhythm {
    /// Without a record this long, the consumer rests; `None`: it never does.
    after: Option<Duration>,
    /// How often a resting consumer looks.
    look_every: Duration,
    /// How long a look lasts: a fetch's whole wait, twice, and its round trip.
    look_for: Duration,
}

impl Rhythm {
    pub(super) fn of(config: &KafkaConfig, pace: Pace) -> Self {
        let fetch_wait = Duration::from_millis(u64::from(pace.fetch_wait_max_ms(config)));
        Self {
            after: (config.rest_after_ms > 0)
                .then(|| Duration::from_millis(u64::from(config.rest_after_ms))),
            look_every: Duration::from_millis(u64::from(config.resting_look_every_ms.max(1))),
            look_for: 2 * fetch_wait + Duration::from_millis(20),
        }
    }
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
            State::Awake { .. } | State::Looking { .. } => None,
            State::Resting { .. } => Some(Partitions::Resume),
        }
    }

    /// When the state changes next, if nothing comes; `None`: never.
    pub(super) fn due(&self) -> Option<Instant> {
        match self.state {
            State::Awake { since } => self.rhythm.after.map(|after| since + after),
            State::Resting { look_at } => Some(look_at),
            State::Looking { until } => Some(until),
        }
    }

    /// The moment [`Rest::due`] named has come.
    pub(super) fn elapsed(&mut self, now: Instant) -> Option<Partitions> {
        let rest = State::Resting {
            look_at: now + self.rhythm.look_every,
        };
        match self.state {
            State::Awake { .. } if self.rhythm.after.is_none() => None,
            State::Awake { .. } | State::Looking { .. } => {
                self.state = rest;
                Some(Partitions::Pause)
            }
            State::Resting { .. } => {
                self.state = State::Looking {
                    until: now + self.rhythm.look_for,
                };
                Some(Partitions::Resume)
            }
        }
    }

    /// A look's fetches start only once the fetcher is awake: the look lasts from `now`.
    pub(super) fn looking_from(&mut self, now: Instant) {
        if let State::Looking { .. } = self.state {
            self.state = State::Looking {
                until: now + self.rhythm.look_for,
            };
        }
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
    pub(super) fn new(config: &KafkaConfig, pace: Pace, consumer_name: &str) -> Self {
        Self {
            rest: Rest::new(Rhythm::of(config, pace), Instant::now()),
            doorbell: crate::doorbell::listen(),
            consumer_name: consumer_name.to_owned(),
        }
    }

    /// Ready when the rest changes state or the doorbell rings; never otherwise.
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
        let now = Instant::now();
        let (change, cause) = match wake {
            Wake::Due => (self.rest.elapsed(now), "look"),
            Wake::Doorbell => (self.rest.woken(now), "doorbell"),
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
        // pause, and one still paused from an earlier assignment is resumed at the next look.
        let assignment = match consumer.assignment() {
            Ok(assignment) => assignment,
            Err(error) => {
                tracing::debug!(consumer = %self.consumer_name, %error, "reading the assignment to rest failed");
                return;
            }
        };
        tracing::debug!(consumer = %self.consumer_name, ?change, cause, partitions = assignment.count(), "rest");
        if assignment.count() == 0 {
            return;
        }
        let result = match change {
            Partitions::Pause => consumer.pause(&assignment),
            Partitions::Resume => consumer.resume(&assignment),
        };
        if let Err(error) = result {
            tracing::debug!(consumer = %self.consumer_name, %error, ?change, "pausing or resuming partitions failed");
            return;
        }
        if change == Partitions::Resume {
            nudge(consumer, &assignment);
            self.rest.looking_from(Instant::now());
        }
    }
}

/// Wakes librdkafka's broker thread after a resume. With every partition paused it sleeps up
/// to a second between looks at its partitions, and a resume does not wake it (it took up to
/// that long to fetch again); a request to the partition's broker does, as its reply comes
/// in. The wait is long on purpose: librdkafka drops the connection, and every fetch and join
/// on it, when a request times out, and a busy tansu took over a second to answer.
fn nudge(consumer: &StreamConsumer<RebalanceContext>, assignment: &TopicPartitionList) {
    let Some(partition) = assignment.elements().into_iter().next() else {
        return;
    };
    let (topic, partition) = (partition.topic().to_owned(), partition.partition());
    if let Err(error) =
        crate::kafka::blocking(|| consumer.fetch_watermarks(&topic, partition, NUDGE_TIMEOUT))
    {
        tracing::debug!(%error, %topic, partition, "waking the fetcher after a rest failed; it wakes within a second");
    }
}

/// Longer than any answer of a broker that still works, short enough that a broker gone
/// holds a stopping consumer back only this long.
const NUDGE_TIMEOUT: Duration = Duration::from_secs(10);

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
            look_for: Duration::from_millis(30),
        }
    }

    #[test]
    fn a_consumer_rests_after_a_while_without_records_and_looks_now_and_then() {
        let start = Instant::now();
        let mut rest = Rest::new(rhythm(), start);
        assert_eq!(rest.due(), Some(start + Duration::from_secs(2)));
        let rested = start + Duration::from_secs(2);
        assert_eq!(rest.elapsed(rested), Some(Partitions::Pause));
        assert_eq!(rest.due(), Some(rested + Duration::from_millis(500)));
        let look = rested + Duration::from_millis(500);
        assert_eq!(rest.elapsed(look), Some(Partitions::Resume));
        assert_eq!(rest.due(), Some(look + Duration::from_millis(30)));
        // Nothing came during the look: rest again.
        assert_eq!(
            rest.elapsed(look + Duration::from_millis(30)),
            Some(Partitions::Pause)
        );
        assert!(rest.is_resting());
    }

    #[test]
    fn records_seen_during_a_look_keep_the_consumer_awake() {
        let start = Instant::now();
        let mut rest = Rest::new(rhythm(), start);
        rest.elapsed(start + Duration::from_secs(2));
        let look = start + Duration::from_millis(2500);
        rest.elapsed(look);
        let read = look + Duration::from_millis(10);
        assert_eq!(rest.woken(read), None, "already fetching");
        assert_eq!(rest.due(), Some(read + Duration::from_secs(2)));
        assert!(!rest.is_resting());
    }

    #[test]
    fn the_doorbell_wakes_a_resting_consumer_at_once() {
        let start = Instant::now();
        let mut rest = Rest::new(rhythm(), start);
        rest.elapsed(start + Duration::from_secs(2));
        assert_eq!(
            rest.woken(start + Duration::from_millis(2100)),
            Some(Partitions::Resume)
        );
        assert!(!rest.is_resting());
    }

    #[test]
    fn reading_postpones_the_rest() {
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
        assert_eq!(rest.elapsed(start + Duration::from_secs(60)), None);
        assert!(!rest.is_resting());
    }
}
