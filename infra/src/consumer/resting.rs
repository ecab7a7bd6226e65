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
//!
//! A partition its own process keeps fed ([`crate::local_log`]) rests too, however busy: the
//! records come handed over, and a fetch would bring copies of them. Under load the catalog of
//! `plexica all` fetched every record of the processor's twice over, once handed and once
//! fetched and dropped; on tansu each fetched record costs a query for its headers. A look
//! counts a fed partition read as far as it was fed, and the doorbell does not wake it (the
//! records themselves come, [`Stage::hands`]); a handed run it cannot take (another process's record before it,
//! a record too large to hand over) wakes it at once. When it wakes, its fetch starts where
//! the feed left it, not at the copies.

use std::collections::HashSet;
use std::time::Duration;

use futures::future::BoxFuture;
use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::{Offset, TopicPartitionList};
use tokio::time::Instant;

pub use super::rests::Partition;
use super::rests::{Look, Rests, Rhythm};
use crate::config::KafkaConfig;
use crate::doorbell;
use crate::kafka::LogEnds;
use crate::local_log::Stage;

/// Where the consumer's own process has fed a partition to: the offset of the next record it
/// takes, when it knows.
pub type FedTo<'a> = &'a dyn Fn(&Partition) -> Option<i64>;

/// A runner's rests with what they act on: its consumer's partitions and the doorbell.
pub struct Resting {
    rests: Rests,
    doorbell: doorbell::Listener,
    /// The topics it takes handed over, and at which stage.
    fed: Option<(Stage, HashSet<String>)>,
    consumer_name: String,
    /// Asks where partitions end on a connection of its own (see [`Resting::wake`]).
    log_ends: LogEnds,
    /// The look under way: the partitions it looks at, and the broker's answer to come.
    looking: Option<(
        Vec<Partition>,
        BoxFuture<'static, Option<TopicPartitionList>>,
    )>,
}

impl Resting {
    /// The rests of the consumer named `consumer_name`, which takes the records of `fed`'s
    /// topics its process hands over at its stage.
    pub fn new(
        config: &KafkaConfig,
        consumer_name: &str,
        fed: Option<(Stage, HashSet<String>)>,
    ) -> KafkaResult<Self> {
        Ok(Self {
            rests: Rests::new(Rhythm::of(config), Instant::now()),
            doorbell: doorbell::listen(),
            fed,
            consumer_name: consumer_name.to_owned(),
            log_ends: LogEnds::new(config)?,
            looking: None,
        })
    }

    /// Whether its process hands the consumer `partition`'s records as it writes them: the
    /// doorbell's rings for it come with the records.
    fn is_fed(&self, (topic, _): &Partition) -> bool {
        self.fed
            .as_ref()
            .is_some_and(|(stage, topics)| topics.contains(topic) && stage.hands(topic))
    }

    /// Ready when a look is due or answered, or the doorbell rings; never otherwise.
    pub async fn changed(&mut self) -> Wake {
        // The next look waits for the answer to the one under way.
        let due = match self.looking {
            Some(_) => None,
            None => self.rests.due(),
        };
        let (looking, doorbell) = (&mut self.looking, &mut self.doorbell);
        let answered = tokio::select! {
            () = async {
                match due {
                    Some(due) => tokio::time::sleep_until(due).await,
                    None => std::future::pending().await,
                }
            } => return Wake::Due,
            rung = doorbell.rung() => return Wake::Doorbell(rung),
            ends = async {
                match looking {
                    Some((_, answer)) => answer.await,
                    None => std::future::pending().await,
                }
            } => ends,
        };
        let due = self.looking.take().map(|(due, _)| due).unwrap_or_default();
        Wake::Looked {
            due,
            ends: answered,
        }
    }

    /// Records of `fetched` were read, by fetch: they stay awake; records of `fed` were
    /// handed over by this process.
    pub fn read<C: ConsumerContext + 'static>(
        &mut self,
        consumer: &StreamConsumer<C>,
        fetched: &[Partition],
        fed: &[Partition],
    ) {
        let now = Instant::now();
        self.rests.fed(now, fed);
        let resumed = self.rests.woken(now, fetched);
        // Resumed by their own fetch: librdkafka is reading them where they are.
        self.apply(consumer, Vec::new(), resumed, "records", &|_| None);
    }

    /// This process appended records to `partitions` that the consumer could not take as
    /// they were handed over: its fetch must bring them.
    pub fn missed<C: ConsumerContext + 'static>(
        &mut self,
        consumer: &StreamConsumer<C>,
        partitions: &[Partition],
        fed_to: FedTo<'_>,
    ) {
        let resumed = self.rests.rung(Instant::now(), partitions);
        self.apply(consumer, Vec::new(), resumed, "missed", fed_to);
    }

    /// Acts on what [`Resting::changed`] said.
    ///
    /// A look asks the broker where the due partitions end on a client of its own and goes
    /// on when the answer comes ([`Wake::Looked`]): a broker answers a connection's requests
    /// in order, so on the consumer's own the question waited behind a fetch under way, up to
    /// its whole wait (2 s in a test; 50 ms in `plexica all`), and the consumer's loop with
    /// it: the catalog took the records handed to it only after fetching their copies.
    pub fn wake<C: ConsumerContext + 'static>(
        &mut self,
        consumer: &StreamConsumer<C>,
        wake: Wake,
        fed_to: FedTo<'_>,
    ) {
        let now = Instant::now();
        match wake {
            Wake::Due => {
                let assignment = assignment(consumer, &self.consumer_name)
                    .map(|assignment| partitions_of(&assignment))
                    .unwrap_or_default();
                let new = self.rests.assigned(now, assignment);
                self.apply(consumer, Vec::new(), new, "assignment", fed_to);
                let due = self.rests.due_at(now);
                if due.is_empty() {
                    return;
                }
                let answer = self.log_ends.partition_ends(&list_of(&due), LOOK_TIMEOUT);
                self.looking = Some((due, Box::pin(answer)));
            }
            Wake::Looked { due, ends } => {
                let looks = look(consumer, &due, ends.as_ref(), fed_to);
                let (paused, resumed) = self.rests.looked(now, looks);
                self.apply(consumer, paused, resumed, "look", fed_to);
            }
            Wake::Doorbell(written) => {
                let written: Vec<Partition> = written
                    .into_iter()
                    .filter(|partition| !self.is_fed(partition))
                    .collect();
                let resumed = self.rests.rung(now, &written);
                self.apply(consumer, Vec::new(), resumed, "doorbell", fed_to);
            }
        }
    }

    fn apply<C: ConsumerContext + 'static>(
        &mut self,
        consumer: &StreamConsumer<C>,
        paused: Vec<Partition>,
        resumed: Vec<Partition>,
        cause: &'static str,
        fed_to: FedTo<'_>,
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
        if !paused.is_empty()
            && let Err(error) = consumer.pause(&list_of(&paused))
        {
            tracing::debug!(consumer = %self.consumer_name, %error, "pausing partitions failed");
        }
        if resumed.is_empty() {
            return;
        }
        self.skip_fed(consumer, &resumed, fed_to);
        let list = list_of(&resumed);
        if let Err(error) = consumer.resume(&list) {
            tracing::debug!(consumer = %self.consumer_name, %error, "resuming partitions failed");
            return;
        }
        // With another partition awake a fetch is under way, and the next one brings the
        // resumed partitions; a request of the consumer's would wait behind it.
        if of - resting == resumed.len() {
            wake_fetcher(consumer, &list);
        }
    }

    /// Moves the fetch of each of `resuming` (paused, so nothing is fetched ahead) past the
    /// records its process handed over since: a fetch from where librdkafka stopped would
    /// bring every one of them again, to be dropped, before the records it wakes for.
    fn skip_fed<C: ConsumerContext + 'static>(
        &self,
        consumer: &StreamConsumer<C>,
        resuming: &[Partition],
        fed_to: FedTo<'_>,
    ) {
        let positions = consumer.position().ok();
        for partition in resuming {
            let Some(fed_to) = fed_to(partition) else {
                continue;
            };
            let (topic, number) = partition;
            let fetched_to = positions
                .as_ref()
                .and_then(|positions| positions.find_partition(topic, *number))
                .map(|position| position.offset());
            if matches!(fetched_to, Some(Offset::Offset(at)) if at >= fed_to) {
                continue;
            }
            let sought = crate::kafka::blocking(|| {
                consumer.seek(topic, *number, Offset::Offset(fed_to), LOOK_TIMEOUT)
            });
            if let Err(error) = sought {
                // Its fetch brings the copies, which the runner drops.
                tracing::debug!(consumer = %self.consumer_name, %topic, partition = number, %error, "moving the fetch past the fed records failed");
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
fn assignment<C: ConsumerContext + 'static>(
    consumer: &StreamConsumer<C>,
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

/// Whether the consumer has read each of `due` to where the broker says it `ends`, by fetch
/// or as its process fed it (`fed_to`). A partition the consumer has read nothing of since it
/// was assigned or sought (librdkafka then knows no position) and was not fed is read to the
/// end only when it is empty; not knowing is [`Look::RecordsWait`], so a partition the
/// consumer cannot tell of stays awake.
fn look<C: ConsumerContext + 'static>(
    consumer: &StreamConsumer<C>,
    due: &[Partition],
    ends: Option<&TopicPartitionList>,
    fed_to: FedTo<'_>,
) -> Vec<(Partition, Look)> {
    let all_wait = || {
        due.iter()
            .map(|partition| (partition.clone(), Look::RecordsWait))
            .collect()
    };
    // The positions are read after the ends: a record read meanwhile counts as read.
    let (Some(ends), Ok(positions)) = (ends, consumer.position()) else {
        return all_wait();
    };
    due.iter()
        .map(|partition| {
            let (topic, number) = partition;
            let end = ends.find_partition(topic, *number).map(|end| end.offset());
            let fetched_to =
                positions
                    .find_partition(topic, *number)
                    .and_then(|p| match p.offset() {
                        Offset::Offset(at) => Some(at),
                        _ => None,
                    });
            let read_to = fetched_to.max(fed_to(partition));
            let behind = match (end, read_to) {
                (Some(Offset::Offset(end)), Some(read_to)) => end > read_to,
                (Some(Offset::Offset(end)), None) => end > 0,
                _ => true,
            };
            let look = if behind {
                Look::RecordsWait
            } else {
                Look::ReadToTheEnd
            };
            (partition.clone(), look)
        })
        .collect()
}

/// Wakes librdkafka's broker thread after `resumed` were resumed with every other partition
/// paused: it then sleeps up to a second between looks at its partitions, and a resume does
/// not wake it (it took up to that long to fetch again), while a reply to a request of the
/// consumer's does: where the partitions end, whose answer is not needed. The wait is long on
/// purpose: librdkafka drops the connection, and every fetch and join on it, when a request
/// times out, and a busy tansu took over a second to answer.
fn wake_fetcher<C: ConsumerContext + 'static>(
    consumer: &StreamConsumer<C>,
    resumed: &TopicPartitionList,
) {
    let Ok(latest) = crate::kafka::at_their_ends(resumed) else {
        return;
    };
    if let Err(error) = crate::kafka::blocking(|| consumer.offsets_for_times(latest, LOOK_TIMEOUT))
    {
        tracing::debug!(%error, "waking the fetch of resumed partitions failed");
    }
}

/// Longer than any answer of a broker that still works, short enough that a broker gone
/// holds a stopping consumer back only this long.
const LOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// Why [`Resting::changed`] returned.
#[derive(Debug, Clone)]
pub enum Wake {
    /// A look is due.
    Due,
    /// These partitions were written by this process.
    Doorbell(Vec<Partition>),
    /// The broker answered where `due` end (`None`: it could not say).
    Looked {
        due: Vec<Partition>,
        ends: Option<TopicPartitionList>,
    },
}
