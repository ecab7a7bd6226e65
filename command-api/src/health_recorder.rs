//! Records in the log what the runtime observes of the plugins it runs (DESIGN.md §8): each
//! change of a plugin's status, version or address becomes a `plugin-health.report` command,
//! decided on the plugin's `plugin-health:{id}` aggregate, so that GraphQL reads health from the
//! same projection as everything else and a restarted platform's log says what ran.
//!
//! The runtime's observations are coalesced: the recorder reads the latest of each plugin when
//! told of a change, so a plugin that flaps faster than the log is written costs one command
//! per pass, never a queue.

use std::collections::HashMap;
use std::time::Duration;

use domain::Command;
use domain::plugin::PluginId;
use domain::plugin_health::{Observation, PluginHealthCommand};
use plugin_runtime::ProcessRuntime;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::CommandBus;
use crate::bus::system_actor;

/// Who the recorder's commands are from.
pub const ACTOR: &str = "system:plugin-runtime";

/// How long a report that could not be written waits before it is sent again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Names the reports' command ids: one observation is one command, however often it is sent.
const REPORTS: Uuid = Uuid::from_u128(0x8c4f_0d2e_61a9_4b57_9e0c_5f3a_27d1_b6e4);

/// Sends the runtime's observations to the log until `shutdown`.
pub async fn run(runtime: ProcessRuntime, bus: CommandBus, shutdown: CancellationToken) {
    let mut changes = runtime.watch_observations();
    let mut recorded: HashMap<String, Observation> = HashMap::new();
    loop {
        changes.borrow_and_update();
        let mut unsent = false;
        for (id, observation) in runtime.observations() {
            if recorded.get(&id) == Some(&observation) {
                continue;
            }
            let Ok(plugin) = PluginId::parse(&id) else {
                continue;
            };
            match report(&bus, plugin, observation.clone()).await {
                Ok(()) => {
                    recorded.insert(id, observation);
                }
                Err(error) => {
                    tracing::warn!(plugin = %id, %error, "cannot record the plugin's health yet");
                    unsent = true;
                }
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            changed = changes.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(RETRY_AFTER), if unsent => {}
        }
    }
}

async fn report(
    bus: &CommandBus,
    plugin: PluginId,
    observation: Observation,
) -> Result<(), crate::bus::SubmitError> {
    let command = Command::PluginHealth {
        id: plugin,
        command: PluginHealthCommand::Report(observation),
    };
    let key = format!("{}\n{}", command.aggregate_key(), command.payload());
    bus.send(
        &system_actor(ACTOR),
        &command,
        Uuid::new_v5(&REPORTS, key.as_bytes()),
        None,
        infra::telemetry::new_traceparent(),
    )
    .await
}
