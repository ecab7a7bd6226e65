//! The process manager of the plugin lifecycle sagas (spec 004 US-001, US-002): it reads
//! `core.plugins` and drives the install, update and uninstall sagas that the domain models,
//! one step at a time. For each step it asks the [`PluginRuntime`] to do the work, then puts
//! the step's outcome on `plexica.commands` as a command of the system actor
//! `system:plugin-sagas`; the command processor decides it like any other, and the event it
//! appends is what moves the saga on.
//!
//! | event                                    | runtime call                 | command on success        | on failure                   |
//! |------------------------------------------|------------------------------|---------------------------|------------------------------|
//! | `install-requested`                      | the first install step       | `complete-install-step`   | `fail-install` (→ REGISTERED) |
//! | `install-step-completed`, not the last   | the next install step        | `complete-install-step`   | `fail-install` (→ REGISTERED) |
//! | `update-requested`                       | `update` to the new manifest | `complete-update`         | `fail-update` (old version stays) |
//! | `uninstall-requested`                    | `uninstall`                  | `complete-uninstall`      | nothing (see below)          |
//!
//! Two steps also go through other aggregates, and wait for their outcome:
//! - `DEPENDENCIES_CHECKED` is decided by the processor against its global view; a refusal
//!   (a dependency went since the install was accepted) fails the install with the list.
//! - `PERMISSIONS_RESERVED` reserves the manifest's permission keys on the reservation
//!   aggregate `reservation:permission-keys` first; a key held by another plugin fails the
//!   install with a conflict naming both (spec 004 edge case 6).
//!
//! And the runner applies two policies, by sending commands without waiting:
//! - `install-failed` and `uninstalled` release the plugin's permission keys.
//! - `disabled` and `uninstall-requested` disable every ACTIVE plugin that depends on the
//!   plugin, with the reason, which the catalog shows the super admin (edge case 5).
//!
//! The steps follow the domain's [`InstallStep`] order. The runner keeps, in its schema
//! `sagas`, the manifest of the version in service of every plugin (from `registered` and
//! `updated`), which the runtime needs, and the id of the command that started the saga under
//! way, which every command of the saga carries as its `correlation-id`.
//!
//! **A failed uninstall issues nothing**: the lifecycle has no way back from UNINSTALLING, so
//! the plugin stays UNINSTALLING, the failure is logged and counted
//! (`plexica_saga_steps_total{outcome="failed"}`), and an admin has to act. Once the cause is
//! fixed, replaying the runner (dropping its schema) runs the uninstall again, since the
//! request is still the plugin's last event (see below).
//!
//! # Effectively once
//!
//! The runner is a consumer of the shared runner ([`infra::consumer`]): its checkpoint and its
//! table move in one Postgres transaction, but the runtime call and the produced command do
//! not. So an event may be acted on again after a crash, a failed batch or a replay:
//!
//! - **The command id is derived from the event** that triggered the step (UUID v5 of its
//!   `ce_id`), whatever the step's outcome. The processor answers a command id it has applied
//!   with its first outcome and decides nothing again, so one event leads to at most one
//!   decision, even when a repeated runtime call has another outcome than the first.
//! - **The runner acts only on an event that is still the plugin's last** in the log: before a
//!   step it reads ahead in the event's partition ([`look_ahead`]). While a saga runs, the
//!   lifecycle accepts only that saga's own commands, so any later event of the plugin is the
//!   outcome of the step the event asked for. A replay from offset 0 (a new or dropped
//!   `sagas` schema) therefore calls the runtime only for the sagas still under way, and
//!   never for those that finished. The read-ahead remembers what it read, so a replay reads
//!   the log about twice and asks for a partition's high watermark once a batch, and a
//!   runner that is caught up asks only for a high watermark, or nothing at all for an event
//!   its own process's processor wrote with nothing of the plugin after it
//!   ([`infra::own_writes`]).
//! - A step is run before its command is produced. A produce that fails is a retryable error
//!   for the runner's in-line retry; the step's outcome is kept in memory for the event, so
//!   the retry produces it without calling the runtime again.
//!
//! A step runs inside the runner's batch transaction; the simulated runtime answers at once,
//! a container runtime with slow steps will want them run outside it.

pub mod look_ahead;
pub mod runtime;
mod steps;
mod table;

use std::collections::VecDeque;
use std::sync::Arc;

use domain::Command;
use domain::plugin::PluginCommand;
use domain::reservation::{ReservationCommand, ReservationScope};
use event_schemas::status::PluginStatus;
use event_schemas::{Codec, CoreEvent, Envelope, Topics};
use futures::future::BoxFuture;
use infra::config::KafkaConfig;
use infra::consumer::{
    BatchWrites, ConsumerSpec, Fencing, HandlerError, Record, RecordHandler, RunnerError,
};
use infra::http::Readiness;
use rdkafka::Message;
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::bus::CommandBus;
use crate::bus::system_actor;
use crate::directory::SharedDirectory;
use look_ahead::LookAhead;
pub use runtime::{InstallStep, PluginId, PluginRuntime, PluginSpec, SimulatedRuntime, StepError};
pub use steps::command_id;
use steps::{
    Policy, SagaStep, asked_by, derived_command_id, permission_keys, policy_commands, reason,
    refusal,
};
use table::table_ddl;

/// The runner's name in logs, metrics, dead letters and readiness.
pub const NAME: &str = event_schemas::topics::SAGAS_CONSUMER;
/// The Postgres schema of the runner's table and checkpoints.
pub const SCHEMA: &str = "sagas";
/// Who the saga's commands are from.
pub const ACTOR: &str = "system:plugin-sagas";

/// Outcomes remembered per triggering event, for the runner's retries of a record.
const REMEMBERED_OUTCOMES: usize = 256;

pub fn spec(topics: &Topics) -> ConsumerSpec {
    ConsumerSpec {
        name: NAME.to_owned(),
        group: topics.group("plexica.plugin-sagas"),
        schema: SCHEMA.to_owned(),
        topics: vec![topics.plugins()],
        fenced: Fencing::Every,
        dlq_topic: topics.dlq(),
        // A step that cannot be taken holds back its plugin's later events, which depend on it.
        retry_topic: Some(topics.retry(NAME)),
        park_keys: true,
        pace: infra::kafka::Pace::Background,
        serving: None,
        hands_on: false,
    }
}

/// What the sagas act with: the runtime whose plugins they drive, the bus they send their
/// commands on, the codec that reads events, and the global view of plugins and tenants.
pub struct SagaTools<R> {
    pub runtime: R,
    pub bus: CommandBus,
    pub codec: Arc<Codec>,
    pub directory: SharedDirectory,
}

/// Runs the sagas of `spec` with `tools` until `shutdown` is cancelled.
pub async fn run<R: PluginRuntime>(
    spec: ConsumerSpec,
    tools: SagaTools<R>,
    kafka_config: &KafkaConfig,
    pool: PgPool,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> Result<(), RunnerError> {
    let SagaTools {
        runtime,
        bus,
        codec,
        directory,
    } = tools;
    let look_ahead = LookAhead::new(kafka_config, &format!("{}.look-ahead", spec.group))?;
    resume(&runtime, &directory, &pool, &spec.schema).await?;
    let sagas = PluginSagas {
        runtime,
        bus,
        directory,
        codec,
        schema: spec.schema.clone(),
        look_ahead,
        outcomes: VecDeque::with_capacity(REMEMBERED_OUTCOMES),
    };
    infra::consumer::run(spec, sagas, kafka_config, pool, readiness, shutdown).await
}

/// Runs again every plugin the log says is ACTIVE (a restarted platform converges to the
/// log), before the runner reads on: the events after its checkpoint then start or stop them
/// from there. The directory, caught up with the log, says which: the runner's own table may
/// lag the plugin's last event when the platform died before the runner's batch committed.
async fn resume<R: PluginRuntime>(
    runtime: &R,
    directory: &SharedDirectory,
    pool: &PgPool,
    schema: &str,
) -> Result<(), RunnerError> {
    let ddl = format!(
        "CREATE SCHEMA IF NOT EXISTS {schema}; {}",
        table_ddl(schema)
    );
    sqlx::raw_sql(&ddl).execute(pool).await?;
    directory.caught_up().await;
    let active: Vec<PluginSpec> = directory
        .read()
        .plugins()
        .filter(|(_, listing)| listing.status == PluginStatus::Active)
        .filter_map(|(id, listing)| {
            Some(PluginSpec {
                id: id.clone(),
                version: listing.version.to_string(),
                manifest: listing.manifest.as_ref()?.document().clone(),
            })
        })
        .collect();
    for plugin in active {
        match runtime.start(&plugin).await {
            Ok(()) => {
                tracing::info!(plugin = %plugin.id, version = %plugin.version, "plugin running again")
            }
            Err(error) => {
                tracing::error!(plugin = %plugin.id, %error, "an ACTIVE plugin does not start")
            }
        }
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum SagaError {
    #[error("the event has no envelope")]
    NoEnvelope,
    #[error("{0}")]
    PluginId(String),
    #[error("the event has no aggregate version")]
    NoAggregateVersion,
    #[error("plugin `{0}` has no registration in the saga runner's table")]
    UnknownPlugin(PluginId),
    #[error("the manifest of plugin `{plugin}` is not JSON: {source}")]
    Manifest {
        plugin: String,
        source: serde_json::Error,
    },
    #[error("command {0} was not decided in time; the step will be tried again")]
    Undecided(Uuid),
}

pub struct PluginSagas<R> {
    runtime: R,
    bus: CommandBus,
    /// Who depends on whom, for the disable policy.
    directory: SharedDirectory,
    codec: Arc<Codec>,
    schema: String,
    look_ahead: LookAhead,
    /// The outcome of the latest steps, by triggering event: a record applied again does not
    /// call the runtime again.
    outcomes: VecDeque<(Uuid, Vec<(Uuid, Command)>)>,
}

impl<R: PluginRuntime> RecordHandler for PluginSagas<R> {
    fn ddl(&self, schema: &str) -> String {
        table_ddl(schema)
    }

    fn begin_batch(&mut self, _writes: BatchWrites) {
        self.look_ahead.next_batch();
    }

    type Decoded = CoreEvent;

    fn decode<'a>(
        &'a mut self,
        record: &'a Record<'a>,
    ) -> BoxFuture<'a, Result<CoreEvent, HandlerError>> {
        Box::pin(async move { Ok(self.codec.decode_event(record.message.payload()).await?) })
    }

    fn apply<'a>(
        &'a mut self,
        tx: &'a mut PgConnection,
        record: &'a Record<'a>,
        event: CoreEvent,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            let CoreEvent::Plugin(event) = event else {
                return Ok(());
            };
            let envelope = record
                .envelope
                .as_ref()
                .ok_or_else(|| HandlerError::permanent(SagaError::NoEnvelope))?;
            let id = PluginId::parse(event.plugin_id())
                .map_err(|e| HandlerError::permanent(SagaError::PluginId(e.message)))?;
            self.remember(tx, &id, &event, envelope).await?;
            let asked = asked_by(&id, &event).map_err(HandlerError::permanent)?;
            if self.is_followed(record, envelope).await? {
                tracing::debug!(plugin = %id, event = event.event_type(), "step already done; the log has moved on");
                return Ok(());
            }
            // The plugin's last event says whether it should run; make it so before the step.
            self.reconcile(tx, &id).await?;
            if asked.is_nothing() {
                return Ok(());
            }
            let correlation_id = self.saga_id(tx, &id).await?.or(envelope.causation_id);
            let traceparent = envelope
                .traceparent
                .clone()
                .filter(|t| infra::telemetry::trace_id(t).is_some())
                .unwrap_or_else(infra::telemetry::new_traceparent);
            let context = StepContext {
                event_id: envelope.id,
                correlation_id,
                traceparent,
            };
            let commands = match self.remembered(envelope.id) {
                Some(commands) => commands,
                None => {
                    let mut commands = Vec::new();
                    if let Some(policy) = asked.policy {
                        commands.extend(self.policy(&id, policy, &context));
                    }
                    if let Some(step) = asked.step {
                        commands.extend(self.run_step(tx, &id, step, &context).await?);
                    }
                    self.outcomes.push_back((envelope.id, commands.clone()));
                    if self.outcomes.len() > REMEMBERED_OUTCOMES {
                        self.outcomes.pop_front();
                    }
                    commands
                }
            };
            for (command_id, command) in commands {
                self.bus
                    .send(
                        &system_actor(ACTOR),
                        &command,
                        command_id,
                        context.correlation_id,
                        context.traceparent.clone(),
                    )
                    .await
                    .map_err(|e| HandlerError::Retryable(Box::new(e)))?;
            }
            Ok(())
        })
    }
}

/// What the commands of one step carry.
struct StepContext {
    /// The event that asked for the step: the commands' ids derive from it.
    event_id: Uuid,
    correlation_id: Option<Uuid>,
    traceparent: String,
}

impl<R: PluginRuntime> PluginSagas<R> {
    /// Whether the plugin's log went on after this event: then its step was done.
    async fn is_followed(
        &mut self,
        record: &Record<'_>,
        envelope: &Envelope,
    ) -> Result<bool, HandlerError> {
        // A retried record is judged where it was written, not on the retry topic.
        let origin = &record.origin;
        let key = record.message.key().unwrap_or_default();
        self.look_ahead
            .is_followed(
                &origin.topic,
                origin.partition,
                origin.offset,
                key,
                envelope.writer_epoch.unwrap_or_default(),
            )
            .await
            .map_err(|e| HandlerError::Retryable(Box::new(e)))
    }

    fn remembered(&self, event_id: Uuid) -> Option<Vec<(Uuid, Command)>> {
        self.outcomes
            .iter()
            .find(|(id, _)| *id == event_id)
            .map(|(_, command)| command.clone())
    }

    /// The commands of a policy: the dependents to disable are the directory's.
    fn policy(&self, id: &PluginId, policy: Policy, context: &StepContext) -> Vec<(Uuid, Command)> {
        let dependents: Vec<PluginId> = match &policy {
            Policy::ReleasePermissions => Vec::new(),
            Policy::DisableDependents { .. } => self
                .directory
                .read()
                .dependents_of(id)
                .into_iter()
                .filter(|(_, listing)| listing.status == PluginStatus::Active)
                .map(|(dependent, _)| dependent)
                .collect(),
        };
        policy_commands(id, policy, &dependents, context.event_id)
    }

    /// Runs the step; returns the commands, with their ids, that record its outcome.
    async fn run_step(
        &self,
        tx: &mut PgConnection,
        id: &PluginId,
        step: SagaStep,
        context: &StepContext,
    ) -> Result<Vec<(Uuid, Command)>, HandlerError> {
        let to_plugin = |command| Command::Plugin {
            id: id.clone(),
            command,
        };
        let outcome_id = command_id(context.event_id);
        let plugin = self.plugin(tx, id).await?;
        let saga = step.saga();
        let (name, command) = match step {
            SagaStep::Install(step) => {
                let command = match self.runtime.install_step(&plugin, step).await {
                    Err(error) => PluginCommand::FailInstall {
                        step,
                        reason: reason(error, step.as_str()),
                    },
                    Ok(()) => match self.cross_aggregate(&plugin, step, context).await? {
                        Some(refused) => PluginCommand::FailInstall {
                            step,
                            reason: refused,
                        },
                        None if step == InstallStep::DependenciesChecked => {
                            // Already sent and accepted while checking.
                            count_step(id, saga, step.as_str(), "done");
                            return Ok(vec![]);
                        }
                        None => PluginCommand::CompleteInstallStep { step },
                    },
                };
                (step.as_str(), Some(command))
            }
            SagaStep::Update { target } => {
                let command = match self.runtime.update(&plugin, &target).await {
                    Ok(()) => PluginCommand::CompleteUpdate,
                    Err(error) => PluginCommand::FailUpdate {
                        reason: reason(error, "the update"),
                    },
                };
                ("UPDATE", Some(command))
            }
            SagaStep::Uninstall { purge_data } => {
                match self.runtime.uninstall(&plugin, purge_data).await {
                    Ok(()) => ("UNINSTALL", Some(PluginCommand::CompleteUninstall)),
                    Err(error) => {
                        tracing::error!(plugin = %id, version = %plugin.version, %error,
                            "uninstall failed; the plugin stays UNINSTALLING until an admin acts");
                        ("UNINSTALL", None)
                    }
                }
            }
        };
        let outcome = match &command {
            Some(
                PluginCommand::FailInstall { reason, .. } | PluginCommand::FailUpdate { reason },
            ) => {
                tracing::warn!(plugin = %id, saga, step = name, %reason, "saga step failed; rolled back");
                "failed"
            }
            Some(_) => {
                tracing::info!(plugin = %id, saga, step = name, "saga step done");
                "done"
            }
            None => "failed",
        };
        count_step(id, saga, name, outcome);
        // A failure after a refused check gets an id of its own: the check's command used the
        // step's.
        let id_of = |command: &PluginCommand| match command {
            PluginCommand::FailInstall { step, .. }
                if *step == InstallStep::DependenciesChecked =>
            {
                derived_command_id(context.event_id, "fail")
            }
            _ => outcome_id,
        };
        Ok(command
            .map(|command| (id_of(&command), to_plugin(command)))
            .into_iter()
            .collect())
    }

    /// The part of an install step decided by another aggregate, sent and waited for;
    /// returns why it was refused, if it was.
    async fn cross_aggregate(
        &self,
        plugin: &PluginSpec,
        step: InstallStep,
        context: &StepContext,
    ) -> Result<Option<String>, HandlerError> {
        let (command_id, command) = match step {
            InstallStep::DependenciesChecked => (
                command_id(context.event_id),
                Command::Plugin {
                    id: plugin.id.clone(),
                    command: PluginCommand::CompleteInstallStep { step },
                },
            ),
            InstallStep::PermissionsReserved => (
                derived_command_id(context.event_id, "reserve"),
                Command::Reservation {
                    scope: ReservationScope::PermissionKeys,
                    command: ReservationCommand::Reserve {
                        owner: plugin.id.to_string(),
                        names: permission_keys(&plugin.manifest),
                    },
                },
            ),
            _ => return Ok(None),
        };
        let outcome = self
            .bus
            .decide(
                &system_actor(ACTOR),
                &command,
                command_id,
                context.correlation_id,
                context.traceparent.clone(),
            )
            .await
            .map_err(|e| HandlerError::Retryable(Box::new(e)))?
            .ok_or_else(|| HandlerError::Unavailable(Box::new(SagaError::Undecided(command_id))))?;
        Ok((!outcome.accepted).then(|| refusal(&outcome)))
    }
}

fn count_step(id: &PluginId, saga: &'static str, step: &'static str, outcome: &'static str) {
    tracing::trace!(plugin = %id, saga, step, outcome, "counted");
    metrics::counter!("plexica_saga_steps_total", "saga" => saga, "step" => step, "outcome" => outcome)
        .increment(1);
}
