//! Keeps a [`Directory`], the global read-only view of plugins and tenants, up to date by
//! tailing every partition of the event topics (DESIGN.md §4.4). Each process that needs it
//! (the command processor, the plugin sagas) keeps its own: it joins no consumer group and
//! commits nothing, since it always reads the log from the start.
//!
//! The reader rule applies here as everywhere: once a fence has been read in a partition,
//! records of a lower writer epoch are void.
//!
//! The processor of its process folds its events into the view ahead of the log, and hands
//! them over once acknowledged ([`infra::local_log`]); the tail folds those handed records as
//! its fetch would have brought them (the fences and the commands' parts are the reader
//! rule's), and its partitions rest while they are so fed (`infra::consumer::Resting`): on
//! tansu its fetches of every event again, and its polls of an idle log, were most of what
//! an idle platform cost the broker.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Duration;

use domain::Directory;
use event_schemas::{Codec, CoreEvent, Envelope, Topics};
use infra::config::KafkaConfig;
use infra::consumer::Resting;
use infra::kafka::{self, Admission};
use infra::local_log::{Run, Stage};
use infra::whole_commands::WholeCommands;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{Notify, broadcast, watch};
use tokio_util::sync::CancellationToken;

const WATERMARK_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the view waits for the registry to decode one event before it skips it.
const DECODE_PATIENCE: Duration = Duration::from_secs(600);

/// A directory shared by the tail that feeds it and the code that reads it.
#[derive(Clone)]
pub struct SharedDirectory {
    view: Arc<RwLock<Directory>>,
    caught_up: Arc<watch::Sender<bool>>,
    reload: Arc<Notify>,
}

impl SharedDirectory {
    /// The view as it is now. Hold it briefly: the tail waits while it is held.
    pub fn read(&self) -> RwLockReadGuard<'_, Directory> {
        self.view
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Folds an event this process has just written, ahead of the tail, so that its next
    /// decision sees it; the aggregate version makes the tail's copy a no-op.
    pub fn apply(&self, version: Option<u64>, event: &CoreEvent) {
        self.view
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .apply(version, event);
    }

    /// Waits until the view holds the whole log as it was when the tail started (or last
    /// reloaded): a decision taken on a half-read log would refuse what it should accept.
    pub async fn caught_up(&self) {
        let mut caught_up = self.caught_up.subscribe();
        // The sender lives as long as this view: waiting cannot fail.
        let _ = caught_up.wait_for(|done| *done).await;
    }

    /// Reads the log again from the start into a new view, swapped in once it has caught up.
    /// For a processor whose writes were folded ahead of their acknowledgement and then
    /// failed or were fenced: what they folded may never be in the log, and the version
    /// guard would keep the log's own event for that version out. [`Self::caught_up`] waits
    /// from now until the new view is in.
    pub fn reload(&self) {
        self.caught_up.send_replace(false);
        self.reload.notify_one();
    }
}

/// Starts the tail; the returned directory fills as it reads.
pub async fn spawn(
    kafka_config: &KafkaConfig,
    topics: &Topics,
    codec: Arc<Codec>,
    reader: &str,
    shutdown: CancellationToken,
) -> Result<SharedDirectory, KafkaError> {
    let consumer: StreamConsumer =
        // A process's own writes reach its view at once; the tail brings other processes'.
        kafka::paced_consumer_config(kafka_config, &topics.group(reader), kafka::Pace::Background)
            .create()?;
    let mut assignment = TopicPartitionList::new();
    for topic in topics.event_topics() {
        for partition in 0..topics.partitions() {
            assignment.add_partition_offset(&topic, partition, Offset::Beginning)?;
        }
    }
    consumer.assign(&assignment)?;
    // Before the first look at the log's ends: nothing handed over after it is missed.
    let handed = Stage::Appended.listen();
    let consumer = Arc::new(consumer);
    let ends = high_watermarks(&consumer, &assignment).await?;

    let view = Arc::new(RwLock::new(Directory::default()));
    let (caught_up, _) = watch::channel(ends.values().all(|end| *end <= 0));
    let directory = SharedDirectory {
        view,
        caught_up: Arc::new(caught_up),
        reload: Arc::new(Notify::new()),
    };
    let tail = Tail {
        consumer,
        assignment,
        codec,
        directory: directory.clone(),
        fences: HashMap::new(),
        commands: HashMap::new(),
        remaining: ends.into_iter().filter(|(_, end)| *end > 0).collect(),
        reloading: None,
        next: HashMap::new(),
        handed,
        resting: Resting::new(
            kafka_config,
            reader,
            Some((Stage::Appended, topics.event_topics().into_iter().collect())),
        )?,
    };
    tokio::spawn(tail.run(shutdown));
    Ok(directory)
}

/// The end of every assigned partition now.
async fn high_watermarks(
    consumer: &Arc<StreamConsumer>,
    assignment: &TopicPartitionList,
) -> Result<HashMap<(String, i32), i64>, KafkaError> {
    let partitions: Vec<(String, i32)> = assignment
        .elements()
        .iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
        .collect();
    let consumer = consumer.clone();
    // Metadata requests block: off the runtime's worker threads.
    tokio::task::spawn_blocking(move || {
        partitions
            .into_iter()
            .map(|(topic, partition)| {
                let (_, high) = consumer.fetch_watermarks(&topic, partition, WATERMARK_TIMEOUT)?;
                Ok(((topic, partition), high))
            })
            .collect()
    })
    .await
    .unwrap_or(Err(KafkaError::Canceled))
}

struct Tail {
    consumer: Arc<StreamConsumer>,
    /// Every partition of the event topics, from the beginning.
    assignment: TopicPartitionList,
    codec: Arc<Codec>,
    directory: SharedDirectory,
    fences: HashMap<(String, i32), i64>,
    /// The command being read in each partition.
    commands: HashMap<(String, i32), WholeCommands<Held>>,
    /// Partitions not yet read up to their end at start, with that end.
    remaining: HashMap<(String, i32), i64>,
    /// The new view a reload folds into until it has caught up.
    reloading: Option<Directory>,
    /// Per partition, the offset after the last record folded, fetched or handed over;
    /// unknown until one was.
    next: HashMap<(String, i32), i64>,
    /// The records its process appends, as the broker acknowledged them.
    handed: broadcast::Receiver<Run>,
    resting: Resting,
}

impl Tail {
    async fn run(mut self, shutdown: CancellationToken) {
        let reload = self.directory.reload.clone();
        loop {
            let message = tokio::select! {
                _ = shutdown.cancelled() => break,
                () = reload.notified() => {
                    self.start_reload().await;
                    continue;
                }
                wake = self.resting.changed() => {
                    let next = &self.next;
                    self.resting.wake(&self.consumer, wake, &|partition| next.get(partition).copied());
                    continue;
                }
                run = self.handed.recv() => {
                    self.take(run).await;
                    continue;
                }
                message = self.consumer.recv() => message,
            };
            let message = match message {
                Ok(message) => message.detach(),
                Err(error) => {
                    tracing::warn!(%error, "the directory tail could not read");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let position = (message.topic().to_owned(), message.partition());
            // A copy of a record handed over and folded already.
            if self
                .next
                .get(&position)
                .is_some_and(|next| message.offset() < *next)
            {
                continue;
            }
            self.fold(&message, &position).await;
            self.folded(&position, message.offset());
            self.resting
                .read(&self.consumer, std::slice::from_ref(&position), &[]);
        }
    }

    /// `offset` of `position` is folded: the tail goes on after it.
    fn folded(&mut self, position: &(String, i32), offset: i64) {
        self.next.insert(position.clone(), offset + 1);
        if let Some(end) = self.remaining.get(position)
            && offset + 1 >= *end
        {
            self.remaining.remove(position);
            if self.remaining.is_empty() {
                self.finish_catching_up();
            }
        }
    }

    /// Folds what `run` holds from where its partition goes on. A run that starts past it
    /// (another process's record before it), of a partition whose place is not known yet, or
    /// missed (the tail fell too far behind) is left to the fetch, which it wakes.
    async fn take(&mut self, run: Result<Run, broadcast::error::RecvError>) {
        let run = match run {
            Ok(run) => run,
            Err(broadcast::error::RecvError::Lagged(_)) => {
                self.fetch(&partitions_of(&self.assignment));
                return;
            }
            // The sender is a static: never.
            Err(broadcast::error::RecvError::Closed) => return std::future::pending().await,
        };
        let Some(first) = run.first() else {
            return;
        };
        let position = (first.topic().to_owned(), first.partition());
        let Some(mut next) = self.next.get(&position).copied() else {
            self.fetch(std::slice::from_ref(&position));
            return;
        };
        let Some(start) = run.iter().position(|record| record.offset() == next) else {
            if run.last().is_some_and(|last| last.offset() >= next) {
                self.fetch(std::slice::from_ref(&position));
            }
            return;
        };
        for record in &run[start..] {
            if record.offset() != next {
                break;
            }
            self.fold(record, &position).await;
            self.folded(&position, record.offset());
            next += 1;
        }
        self.resting
            .read(&self.consumer, &[], std::slice::from_ref(&position));
    }

    /// This process appended records to `partitions` that the tail did not take as handed
    /// over: their fetch brings them.
    fn fetch(&mut self, partitions: &[(String, i32)]) {
        let next = &self.next;
        self.resting
            .missed(&self.consumer, partitions, &|partition| {
                next.get(partition).copied()
            });
    }

    async fn start_reload(&mut self) {
        tracing::info!("directory reloading from the log");
        loop {
            let started = match self.consumer.assign(&self.assignment) {
                Ok(()) => high_watermarks(&self.consumer, &self.assignment).await,
                Err(error) => Err(error),
            };
            match started {
                Ok(ends) => {
                    self.remaining = ends.into_iter().filter(|(_, end)| *end > 0).collect();
                    break;
                }
                Err(error) => {
                    tracing::warn!(%error, "the directory cannot start its reload; trying again");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        self.fences.clear();
        self.commands.clear();
        self.next.clear();
        self.reloading = Some(Directory::default());
        if self.remaining.is_empty() {
            self.finish_catching_up();
        }
    }

    fn finish_catching_up(&mut self) {
        if let Some(view) = self.reloading.take() {
            *self
                .directory
                .view
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = view;
        }
        tracing::info!("directory caught up with the log");
        self.directory.caught_up.send_replace(true);
    }

    async fn fold(&mut self, message: &rdkafka::message::OwnedMessage, position: &(String, i32)) {
        let Some(Ok(envelope)) = message.headers().map(Envelope::from_headers) else {
            return;
        };
        let fence_epoch = self.fences.entry(position.clone()).or_default();
        let whole = self.commands.entry(position.clone()).or_default();
        match kafka::admit(fence_epoch, &envelope) {
            Admission::Apply => {}
            Admission::Fence { .. } => {
                whole.interrupt();
                return;
            }
            Admission::Void { .. } | Admission::Unfenced => return,
        }
        let held = Held {
            offset: message.offset(),
            version: envelope.aggregate_version,
            payload: message.payload().map(<[u8]>::to_vec),
        };
        for held in whole.admit(&envelope, held).apply {
            // A registry outage delays the view; skipping would leave it wrong.
            match kafka::decode_event_within(&self.codec, held.payload.as_deref(), DECODE_PATIENCE)
                .await
            {
                Ok(event) => match &mut self.reloading {
                    Some(view) => view.apply(held.version, &event),
                    None => self.directory.apply(held.version, &event),
                },
                // The projections dead-letter what they cannot read; the view only skips it.
                Err(error) => tracing::warn!(%error, topic = %position.0, partition = position.1,
                    offset = held.offset, "the directory skipped an event it cannot read"),
            }
        }
    }
}

fn partitions_of(assignment: &TopicPartitionList) -> Vec<(String, i32)> {
    assignment
        .elements()
        .iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
        .collect()
}

/// An event held until the last event of its command is read.
struct Held {
    offset: i64,
    version: Option<u64>,
    payload: Option<Vec<u8>>,
}
