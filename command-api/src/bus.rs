//! Puts commands on the log and waits, bounded, for their outcome.

use std::sync::Arc;
use std::time::Duration;

use domain::Command;
use event_schemas::commands::{CommandOutcome, CommandRecord};
use event_schemas::{Codec, Envelope, Topics};
use infra::auth::Claims;
use rdkafka::message::OwnedMessage;
use rdkafka::producer::{FutureProducer, FutureRecord};
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::outcomes::{OUTCOME_TTL_SECONDS, OutcomeStore, OutcomeWaiters};
use crate::processor::handoff::LocalCommands;

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("the Idempotency-Key was used before with a different request")]
    IdempotencyMismatch,
    #[error("the command could not be written to the log: {0}")]
    Log(String),
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// A command once it is in the log.
#[derive(Debug)]
pub enum Submission {
    Decided(CommandOutcome),
    /// Durable in the log but not decided within the wait: the client polls for it.
    Pending {
        command_id: Uuid,
    },
}

/// The actor of the commands the platform sends itself (`subject` names the part): a super
/// admin, as every lifecycle command needs.
pub fn system_actor(subject: &str) -> Claims {
    let now = chrono::Utc::now().timestamp();
    Claims {
        sub: subject.to_owned(),
        roles: vec![infra::auth::Role::SuperAdmin],
        tenant_id: None,
        iat: now,
        exp: now + 300,
    }
}

#[derive(Clone)]
pub struct CommandBus {
    producer: FutureProducer,
    codec: Arc<Codec>,
    topics: Topics,
    redis: ConnectionManager,
    outcomes: OutcomeStore,
    waiters: OutcomeWaiters,
    reply_timeout: Duration,
    /// This process's processor, given each command once the broker acknowledged it.
    local: Option<LocalCommands>,
}

impl CommandBus {
    pub fn new(
        producer: FutureProducer,
        codec: Arc<Codec>,
        topics: Topics,
        redis: ConnectionManager,
        waiters: OutcomeWaiters,
        reply_timeout: Duration,
    ) -> Self {
        Self {
            producer,
            codec,
            topics,
            outcomes: OutcomeStore::new(redis.clone()),
            redis,
            waiters,
            reply_timeout,
            local: None,
        }
    }

    /// Hands every command this bus puts on the log to `local`, the processor of this
    /// process, as well.
    pub fn handing_off_to(mut self, local: LocalCommands) -> Self {
        self.local = Some(local);
        self
    }

    pub fn outcomes(&self) -> &OutcomeStore {
        &self.outcomes
    }

    /// Writes the command to `plexica.commands` and waits for its outcome. Returns only once
    /// the broker has acknowledged the record: an accepted request is never lost.
    pub async fn submit(
        &self,
        actor: &Claims,
        command: &Command,
        idempotency_key: Option<&str>,
        traceparent: String,
    ) -> Result<Submission, SubmitError> {
        let command_id = match idempotency_key {
            Some(key) => match self.claim_idempotency_key(actor, key, command).await? {
                Claim::New(id) => id,
                Claim::Repeat(id) => {
                    if let Some(outcome) = self.outcomes.get(id).await? {
                        return Ok(Submission::Decided(outcome));
                    }
                    // Not decided yet, or the first attempt never reached the log: sending the
                    // same command id again is safe, the processor answers a known id with its
                    // first outcome.
                    id
                }
            },
            None => Uuid::now_v7(),
        };
        let waiter = self.waiters.register(command_id);
        let record = command_record(actor, command, command_id, &traceparent);
        if let Err(error) = self
            .produce(&record, command_id, command_id, traceparent)
            .await
        {
            drop(waiter);
            self.waiters.forget(command_id);
            return Err(error);
        }
        let outcome = tokio::time::timeout(self.reply_timeout, waiter).await;
        match outcome {
            Ok(Ok(outcome)) => Ok(Submission::Decided(outcome)),
            _ => {
                self.waiters.forget(command_id);
                // The notification may have been missed while the subscription reconnected.
                match self.outcomes.get(command_id).await? {
                    Some(outcome) => Ok(Submission::Decided(outcome)),
                    None => Ok(Submission::Pending { command_id }),
                }
            }
        }
    }

    /// Writes the command to `plexica.commands` and returns once the broker has acknowledged
    /// it, without waiting for the outcome: for the platform's own processes, which learn it
    /// from the events. The caller chooses `command_id`, so that sending the same command again
    /// is recognised by the processor and decided once; `correlation_id` ties it to what it
    /// belongs to (a saga), and defaults to the command id.
    pub async fn send(
        &self,
        actor: &Claims,
        command: &Command,
        command_id: Uuid,
        correlation_id: Option<Uuid>,
        traceparent: String,
    ) -> Result<(), SubmitError> {
        let record = command_record(actor, command, command_id, &traceparent);
        self.produce(
            &record,
            command_id,
            correlation_id.unwrap_or(command_id),
            traceparent,
        )
        .await
    }

    /// Like [`CommandBus::send`], then waits for the outcome; `None` when it was not decided
    /// within the reply timeout (sending the same id again is safe).
    pub async fn decide(
        &self,
        actor: &Claims,
        command: &Command,
        command_id: Uuid,
        correlation_id: Option<Uuid>,
        traceparent: String,
    ) -> Result<Option<CommandOutcome>, SubmitError> {
        if let Some(outcome) = self.outcomes.get(command_id).await? {
            return Ok(Some(outcome));
        }
        let waiter = self.waiters.register(command_id);
        if let Err(error) = self
            .send(actor, command, command_id, correlation_id, traceparent)
            .await
        {
            drop(waiter);
            self.waiters.forget(command_id);
            return Err(error);
        }
        match tokio::time::timeout(self.reply_timeout, waiter).await {
            Ok(Ok(outcome)) => Ok(Some(outcome)),
            _ => {
                self.waiters.forget(command_id);
                Ok(self.outcomes.get(command_id).await?)
            }
        }
    }

    async fn produce(
        &self,
        record: &CommandRecord,
        command_id: Uuid,
        correlation_id: Uuid,
        traceparent: String,
    ) -> Result<(), SubmitError> {
        let topic = self.topics.commands();
        let value = self
            .codec
            .encode(&topic, record)
            .await
            .map_err(|e| SubmitError::Log(e.to_string()))?;
        let mut envelope = Envelope::new(
            format!("plexica.command.{}", record.command_type),
            "/plexica/command-api",
        );
        envelope.id = command_id;
        envelope.subject = Some(record.aggregate_key.clone());
        envelope.user_id = Some(record.actor_id.clone());
        envelope.tenant_id = record.actor_tenant_id.clone();
        envelope.traceparent = Some(traceparent);
        envelope.correlation_id = Some(correlation_id.to_string());
        let started = std::time::Instant::now();
        let headers = envelope.to_headers();
        let delivery = self
            .producer
            .send(
                FutureRecord::to(&topic)
                    .key(&record.aggregate_key)
                    .payload(&value)
                    .headers(headers.clone()),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| SubmitError::Log(e.to_string()))?;
        metrics::histogram!("plexica_command_produce_seconds")
            .record(started.elapsed().as_secs_f64());
        if let Some(local) = &self.local {
            // The record as the consumer would read it back.
            local.hand_off(OwnedMessage::new(
                Some(value),
                Some(record.aggregate_key.clone().into_bytes()),
                topic,
                delivery.timestamp,
                delivery.partition,
                delivery.offset,
                Some(headers),
            ));
        }
        Ok(())
    }

    async fn claim_idempotency_key(
        &self,
        actor: &Claims,
        key: &str,
        command: &Command,
    ) -> Result<Claim, SubmitError> {
        let fingerprint = hex::encode(Sha256::digest(format!(
            "{}\n{}\n{}",
            command.command_type(),
            command.aggregate_key(),
            command.payload()
        )));
        // Scoped to the principal (its `sub` and tenant): two tenants' admins may share a
        // `sub`. The length prefix keeps a `sub` holding `:` from posing as another principal.
        let tenant = infra::policy::Principal::of(actor)
            .tenant()
            .map_or_else(|| "-".to_owned(), |t| t.to_string());
        let scope = format!("{}:{}:{tenant}:{key}", actor.sub.len(), actor.sub);
        let redis_key = format!("idempotency:{scope}");
        // The same request sent again gets the same command id even when Redis has forgotten
        // the key: the processor, which remembers its decisions, answers it with the first.
        let candidate = Uuid::new_v5(
            &IDEMPOTENT_COMMANDS,
            format!("{scope}\n{fingerprint}").as_bytes(),
        );
        let mut redis = self.redis.clone();
        let claimed: bool = redis::cmd("SET")
            .arg(&redis_key)
            .arg(format!("{candidate} {fingerprint}"))
            .arg("NX")
            .arg("EX")
            .arg(OUTCOME_TTL_SECONDS)
            .query_async::<Option<String>>(&mut redis)
            .await?
            .is_some();
        if claimed {
            return Ok(Claim::New(candidate));
        }
        let stored: Option<String> = redis.get(&redis_key).await?;
        let parsed = stored.as_deref().and_then(|s| s.split_once(' '));
        match parsed {
            Some((id, stored_fingerprint)) if stored_fingerprint == fingerprint => {
                Uuid::parse_str(id)
                    .map(Claim::Repeat)
                    .map_err(|_| SubmitError::IdempotencyMismatch)
            }
            _ => Err(SubmitError::IdempotencyMismatch),
        }
    }
}

/// The namespace of command ids derived from an Idempotency-Key (RFC 9562 name-based ids).
const IDEMPOTENT_COMMANDS: Uuid = Uuid::from_u128(0x6d1f_3c2e_8a4b_4f0e_9c7d_2b5a_1e3f_4c6d);

enum Claim {
    New(Uuid),
    Repeat(Uuid),
}

fn command_record(
    actor: &Claims,
    command: &Command,
    command_id: Uuid,
    traceparent: &str,
) -> CommandRecord {
    CommandRecord {
        command_id: command_id.to_string(),
        command_type: command.command_type().to_owned(),
        aggregate_key: command.aggregate_key().to_string(),
        payload: command.payload(),
        actor_id: actor.sub.clone(),
        actor_roles: actor
            .roles
            .iter()
            .map(|r| {
                serde_json::to_value(r)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            })
            .collect(),
        actor_tenant_id: actor.tenant_id.clone(),
        issued_at: chrono::Utc::now().timestamp_millis(),
        traceparent: Some(traceparent.to_owned()),
    }
}
