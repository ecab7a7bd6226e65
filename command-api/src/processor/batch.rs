//! The commands the processor decides together: whatever has arrived when it is ready for
//! more. Per partition they are decided in order on working copies of their aggregates, their
//! events are sent without waiting for each acknowledgement, and nothing is installed or
//! answered until the batch's events and refusals are acknowledged and the lease still holds;
//! the offsets are committed once the accepted commands' records on
//! `plexica.command-results` are acknowledged too, after the answer. One round trip for the
//! events and one for the refusals, however many commands: the throughput grows with the load
//! instead of being one command per two round trips.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use domain::AggregateKey;
use event_schemas::commands::{CommandOutcome, EventPosition};
use rdkafka::message::{Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::DeliveryFuture;
use uuid::Uuid;

use super::ProcessorError;
use super::ownership::Aggregate;

/// Most commands decided together; more wait for the next batch.
pub(super) const MAX_COMMANDS: usize = 500;

#[derive(Default)]
pub(super) struct Batch {
    pub partitions: BTreeMap<i32, PartitionBatch>,
    /// Partitions that failed in this batch: the rest of their records wait to be read again.
    pub failed: HashSet<i32>,
    /// Commands decided in this batch: one delivered twice within it is answered from the
    /// first decision, which must be installed first.
    command_ids: HashSet<Uuid>,
}

impl Batch {
    pub fn holds(&self, command_id: Uuid) -> bool {
        self.command_ids.contains(&command_id)
    }

    pub fn partition(&mut self, partition: i32, offset: i64) -> &mut PartitionBatch {
        self.partitions
            .entry(partition)
            .or_insert_with(|| PartitionBatch::starting_at(offset))
    }

    pub fn stage(&mut self, partition: i32, offset: i64, decision: Staged) {
        self.command_ids.insert(decision.command_id);
        let batch = self.partition(partition, offset);
        batch.last_offset = offset;
        batch.decisions.push(decision);
    }

    /// Takes the partitions' work out, leaving an empty batch.
    pub fn take(&mut self) -> BTreeMap<i32, PartitionBatch> {
        self.command_ids.clear();
        std::mem::take(&mut self.partitions)
    }
}

/// One partition's share of a batch.
pub(super) struct PartitionBatch {
    /// Where the partition is read again from if the batch fails.
    pub first_offset: i64,
    /// The last record handled: committed when the batch succeeds.
    pub last_offset: i64,
    /// The lease under which its commands were decided; `None` while none was.
    pub epoch: Option<i64>,
    /// The aggregates as the batch's accepted commands leave them.
    pub aggregates: HashMap<AggregateKey, Aggregate>,
    pub decisions: Vec<Staged>,
    /// Whether its events were folded into the directory ahead of their acknowledgement, so
    /// that a later command of the batch sees them.
    pub folded: bool,
    /// The accepted commands' decisions on their way to `plexica.command-results`: the
    /// partition's offsets are committed once they are in the log.
    pub recording: Vec<DeliveryFuture>,
    /// Its acknowledged events, for this process's consumers ([`infra::local_log`]).
    pub appended: Vec<OwnedMessage>,
}

impl PartitionBatch {
    fn starting_at(offset: i64) -> Self {
        Self {
            first_offset: offset,
            last_offset: offset,
            epoch: None,
            aggregates: HashMap::new(),
            decisions: Vec::new(),
            folded: false,
            recording: Vec::new(),
            appended: Vec::new(),
        }
    }

    /// Waits for every event of the partition's accepted commands and writes down where each
    /// landed: in the outcome and in the aggregate's applied commands.
    pub async fn acknowledge_events(&mut self) -> Result<(), ProcessorError> {
        for staged in &mut self.decisions {
            let Effect::Accepted { key, events } = &mut staged.effect else {
                continue;
            };
            let mut positions = Vec::with_capacity(events.len());
            for event in events.drain(..) {
                let delivered = event
                    .delivery
                    .await
                    .map_err(|_| ProcessorError::Kafka(rdkafka::error::KafkaError::Canceled))?
                    .map_err(|(e, _)| ProcessorError::Kafka(e))?;
                if let Some(record) = event.record {
                    self.appended.push(OwnedMessage::new(
                        Some(record.value),
                        Some(record.key.into_bytes()),
                        event.topic.clone(),
                        delivered.timestamp,
                        delivered.partition,
                        delivered.offset,
                        Some(record.headers),
                    ));
                }
                infra::own_writes::wrote(
                    &event.topic,
                    delivered.partition,
                    delivered.offset,
                    key.to_string().as_bytes(),
                );
                positions.push(EventPosition {
                    topic: event.topic,
                    partition: delivered.partition,
                    offset: delivered.offset,
                    event_type: event.event_type.to_owned(),
                    aggregate_version: event.version,
                });
            }
            if let Some(aggregate) = self.aggregates.get_mut(key) {
                aggregate
                    .applied
                    .insert(staged.command_id, positions.clone());
            }
            staged.outcome.events = positions;
        }
        Ok(())
    }
}

/// A command decided in a batch, waiting for its writes.
pub(super) struct Staged {
    pub command_id: Uuid,
    pub command_type: String,
    /// When its record was taken up.
    pub started: Instant,
    /// The positions of an accepted command's events are filled in once acknowledged.
    pub outcome: CommandOutcome,
    pub effect: Effect,
}

pub(super) enum Effect {
    Accepted {
        key: AggregateKey,
        /// Sent, in order, not yet acknowledged; empty once they are.
        events: Vec<PendingEvent>,
    },
    Rejected,
    /// Decided before: answered with its first outcome, nothing written again.
    Repeated,
}

pub(super) struct PendingEvent {
    pub topic: String,
    pub event_type: &'static str,
    pub version: i64,
    pub delivery: DeliveryFuture,
    /// What was sent, when this process's consumers take its records.
    pub record: Option<SentRecord>,
}

pub(super) struct SentRecord {
    pub key: String,
    pub value: Vec<u8>,
    pub headers: OwnedHeaders,
}

impl PartitionBatch {
    /// The partitions its acknowledged events were written to.
    pub fn written(&self) -> impl Iterator<Item = (&str, i32)> {
        self.decisions
            .iter()
            .flat_map(|staged| &staged.outcome.events)
            .map(|event| (event.topic.as_str(), event.partition))
    }

    /// Hands its acknowledged events to this process's consumers, a run per topic.
    pub fn hand_over(&mut self) {
        let mut runs: BTreeMap<String, Vec<OwnedMessage>> = BTreeMap::new();
        for record in self.appended.drain(..) {
            runs.entry(record.topic().to_owned())
                .or_default()
                .push(record);
        }
        for run in runs.into_values() {
            infra::local_log::appended(run);
        }
    }
}
