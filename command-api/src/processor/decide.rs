//! Deciding one command on the batch's working copy of its aggregate, sending its events,
//! and writing the batch's decisions to `plexica.command-results`.

use domain::{AggregateKey, Command, Reason, Rejection};
use event_schemas::Envelope;
use event_schemas::commands::{CommandOutcome, CommandRecord};
use event_schemas::envelope::CommandPart;
use rdkafka::producer::FutureRecord;
use uuid::Uuid;

use super::batch::{Effect, PartitionBatch, PendingEvent, SentRecord};
use super::ownership::{self, Aggregate, OwnedPartition};
use super::{Processor, ProcessorError, outcome};

pub(super) enum Decision {
    Accepted {
        key: AggregateKey,
        /// Sent, not yet acknowledged.
        events: Vec<PendingEvent>,
    },
    /// Decided before: its first outcome.
    Repeated(CommandOutcome),
    Rejected(Rejection),
}

/// A command record's circumstances.
pub(super) struct Context {
    pub partition: i32,
    pub command_id: Uuid,
    pub correlation_id: Option<String>,
    /// When its record was produced, in milliseconds since the Unix epoch.
    pub sent_at: Option<i64>,
}

impl Processor {
    /// Decides the command on the batch's working copy of its aggregate and, when accepted,
    /// sends its events and folds them into the directory and the working copy.
    pub(super) async fn decide(
        &self,
        owned: &OwnedPartition,
        part: &mut PartitionBatch,
        context: &Context,
        record: &CommandRecord,
    ) -> Result<Decision, ProcessorError> {
        let command_id = context.command_id;
        if let Some(outcome) = owned.rejected.get(&command_id) {
            return Ok(Decision::Repeated(outcome.clone()));
        }
        let command = match Command::from_record(&record.aggregate_key, &record.payload) {
            Ok(command) => command,
            Err(rejection) => return Ok(Decision::Rejected(rejection)),
        };
        let key = command.aggregate_key();
        let fresh;
        let aggregate = match part
            .aggregates
            .get(&key)
            .or_else(|| owned.aggregates.get(&key))
        {
            Some(aggregate) => aggregate,
            None => {
                fresh = Aggregate::new(&key);
                &fresh
            }
        };
        if let Some(events) = aggregate.applied.get(&command_id) {
            return Ok(Decision::Repeated(outcome(
                record,
                true,
                events.clone(),
                None,
            )));
        }
        if context
            .sent_at
            .is_some_and(|sent| sent < ownership::remembered_since())
        {
            // Its first decision, if it had one, is no longer remembered: deciding it now
            // could contradict what its client was told.
            return Ok(Decision::Rejected(Rejection::new(
                Reason::CommandExpired,
                format!(
                    "the command was sent more than {} hours ago and is no longer decided; send it again",
                    ownership::DECISIONS_REMEMBERED.as_secs() / 3600
                ),
            )));
        }
        let decided = {
            let directory = self.directory.read();
            domain::decide(&aggregate.state, &command, &directory)
        };
        let events = match decided {
            Ok(events) => events,
            Err(rejection) => return Ok(Decision::Rejected(rejection)),
        };
        // Every event is encoded before the first is sent: a registry outage fails the
        // command before any of its events reaches the log.
        let mut encoded = Vec::with_capacity(events.len());
        for event in &events {
            let topic = event.stream().topic(&self.topics);
            let value = self.codec.encode_event(&topic, event).await?;
            encoded.push((topic, value));
        }
        let mut working = part
            .aggregates
            .remove(&key)
            .or_else(|| owned.aggregates.get(&key).cloned())
            .unwrap_or_else(|| Aggregate::new(&key));
        let key_text = key.to_string();
        let mut pending = Vec::with_capacity(events.len());
        let mut sent = Ok(());
        for (index, (event, (topic, value))) in events.iter().zip(encoded).enumerate() {
            working.version += 1;
            let mut envelope = Envelope::new(event.event_type(), "/plexica/command-processor");
            envelope.subject = Some(key_text.clone());
            envelope.tenant_id = event
                .tenant_id()
                .map(str::to_owned)
                .or_else(|| record.actor_tenant_id.clone());
            envelope.user_id = Some(record.actor_id.clone());
            envelope.traceparent = record.traceparent.clone();
            envelope.correlation_id = context
                .correlation_id
                .clone()
                .or_else(|| Some(command_id.to_string()));
            envelope.causation_id = Some(command_id);
            envelope.aggregate_version = u64::try_from(working.version).ok();
            envelope.writer_epoch = Some(owned.epoch);
            // Readers count the command only once its last part is in the log; a prefix left
            // by a failure here is voided by the fence the next owner writes.
            envelope.command_part = CommandPart::of(index, events.len());
            // Explicit partition: the command's partition and its events' partition line up
            // whatever partitioner a client used for the command.
            let headers = envelope.to_headers();
            let delivery = self.producer.send_result(
                FutureRecord::to(&topic)
                    .partition(context.partition)
                    .key(&key_text)
                    .payload(&value)
                    .headers(headers.clone()),
            );
            match delivery {
                Ok(delivery) => pending.push(PendingEvent {
                    topic,
                    event_type: event.event_type(),
                    version: working.version,
                    delivery,
                    record: infra::local_log::is_listened().then(|| SentRecord {
                        key: key_text.clone(),
                        value,
                        headers,
                    }),
                }),
                Err((error, _)) => {
                    sent = Err(ProcessorError::Kafka(error));
                    break;
                }
            }
            working.state = domain::evolve(working.state, event);
            // Ahead of the acknowledgement, so that the batch's next command sees it; a
            // batch that fails reloads the view.
            part.folded = true;
            if let Ok(version) = u64::try_from(working.version) {
                self.directory.apply(Some(version), event);
            }
        }
        part.aggregates.insert(key.clone(), working);
        sent?;
        Ok(Decision::Accepted {
            key,
            events: pending,
        })
    }

    /// Writes the partition's decisions to `plexica.command-results`, in the command's
    /// partition and under the lease's epoch, after their events, so that a fence voids a
    /// zombie's. Waits for the refusals: a refusal is in the log only there, and its next
    /// owner must read it back. An accepted command's events are its decision in the log,
    /// so its record is left in `part.recording`, to be acknowledged before its offset is
    /// committed, off the reply's path. A repeated acceptance is written again: its first
    /// record may have been lost with the processor that answered it.
    pub(super) async fn record_decisions(
        &self,
        partition: i32,
        part: &mut PartitionBatch,
    ) -> Result<(), ProcessorError> {
        let Some(epoch) = part.epoch else {
            return Ok(());
        };
        let topic = self.topics.command_results();
        let mut refusals = Vec::new();
        for staged in &part.decisions {
            let outcome = &staged.outcome;
            if matches!(staged.effect, Effect::Repeated) && !outcome.accepted {
                // Read back from the results by the rebuild: in the log already.
                continue;
            }
            let value = self.codec.encode(&topic, outcome).await?;
            let mut envelope = Envelope::new(ownership::OUTCOME_TYPE, "/plexica/command-processor");
            envelope.subject = Some(outcome.aggregate_key.clone());
            envelope.causation_id = Some(staged.command_id);
            envelope.writer_epoch = Some(epoch);
            let delivery = self
                .producer
                .send_result(
                    FutureRecord::to(&topic)
                        .partition(partition)
                        .key(&outcome.command_id)
                        .payload(&value)
                        .headers(envelope.to_headers()),
                )
                .map_err(|(e, _)| ProcessorError::Kafka(e))?;
            if outcome.accepted {
                part.recording.push(delivery);
            } else {
                refusals.push(delivery);
            }
        }
        for delivery in refusals {
            infra::dead_letter::acknowledged(&topic, delivery).await?;
        }
        Ok(())
    }
}
