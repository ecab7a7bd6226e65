//! What the runtime observes of a plugin's running instance (DESIGN.md §8): its health, its
//! version and where it is served. The aggregate is `plugin-health:{id}`, apart from the
//! plugin's lifecycle: observations arrive at any time and must never come between two steps
//! of a lifecycle saga.
//!
//! ```text
//! command                accepted                 event
//! report(observation)    always                   health-changed, unless it is the last one
//! ```
//! The runtime reports an observation when it changed; one reported again (a lost
//! acknowledgement, a restarted platform) records nothing, so the log holds one event per
//! change.

use chrono::{DateTime, Utc};
use event_schemas::events::{PluginHealthChanged, PluginHealthEvent};
pub use event_schemas::status::HealthStatus;
use serde::{Deserialize, Serialize};

use crate::plugin::PluginId;

/// One observation of a plugin's instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    pub version: String,
    pub status: HealthStatus,
    pub since: DateTime<Utc>,
    pub last_error: Option<String>,
    pub restarts: u64,
    /// Where it is served (`http://host:port`); none when it is not.
    pub address: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case")]
pub enum PluginHealthCommand {
    Report(Observation),
}

impl PluginHealthCommand {
    pub fn command_type(&self) -> &'static str {
        match self {
            PluginHealthCommand::Report(_) => "plugin-health.report",
        }
    }
}

/// The last observation recorded of a plugin's instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PluginHealth {
    last: Option<PluginHealthChanged>,
}

impl PluginHealth {
    pub fn decide(&self, id: &PluginId, command: &PluginHealthCommand) -> Vec<PluginHealthEvent> {
        match command {
            PluginHealthCommand::Report(observation) => {
                let changed = PluginHealthChanged {
                    plugin_id: id.to_string(),
                    version: observation.version.clone(),
                    status: observation.status.as_str().to_owned(),
                    since: observation.since.timestamp_millis(),
                    last_error: observation.last_error.clone(),
                    restarts: i64::try_from(observation.restarts).unwrap_or(i64::MAX),
                    address: observation.address.clone(),
                };
                if self.last.as_ref() == Some(&changed) {
                    return vec![];
                }
                vec![PluginHealthEvent::Changed(changed)]
            }
        }
    }

    pub fn evolve(self, event: &PluginHealthEvent) -> Self {
        match event {
            PluginHealthEvent::Changed(e) => Self {
                last: Some(e.clone()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crm() -> PluginId {
        PluginId::parse("crm").unwrap()
    }

    fn observation(status: HealthStatus, address: Option<&str>) -> Observation {
        Observation {
            version: "1.0.0".into(),
            status,
            since: DateTime::from_timestamp_millis(1_764_900_000_000).unwrap(),
            last_error: None,
            restarts: 0,
            address: address.map(str::to_owned),
        }
    }

    fn observed(status: HealthStatus, address: Option<&str>) -> PluginHealthCommand {
        PluginHealthCommand::Report(observation(status, address))
    }

    fn given(commands: &[PluginHealthCommand]) -> PluginHealth {
        commands
            .iter()
            .fold(PluginHealth::default(), |state, command| {
                state
                    .decide(&crm(), command)
                    .iter()
                    .fold(state, |state, event| state.evolve(event))
            })
    }

    #[test]
    fn the_first_observation_is_recorded() {
        let events = given(&[]).decide(
            &crm(),
            &observed(HealthStatus::Healthy, Some("http://127.0.0.1:4000")),
        );
        let [PluginHealthEvent::Changed(e)] = events.as_slice() else {
            panic!("one event expected, got {events:?}")
        };
        assert_eq!((e.status.as_str(), e.since), ("HEALTHY", 1_764_900_000_000));
        assert_eq!(e.address.as_deref(), Some("http://127.0.0.1:4000"));
    }

    #[test]
    fn an_observation_that_changes_nothing_records_nothing() {
        let healthy = observed(HealthStatus::Healthy, Some("http://127.0.0.1:4000"));
        assert_eq!(
            given(std::slice::from_ref(&healthy)).decide(&crm(), &healthy),
            vec![]
        );
    }

    #[test]
    fn a_new_status_address_or_restart_is_recorded() {
        let state = given(&[observed(
            HealthStatus::Healthy,
            Some("http://127.0.0.1:4000"),
        )]);
        for change in [
            observed(HealthStatus::Unhealthy, Some("http://127.0.0.1:4000")),
            observed(HealthStatus::Healthy, Some("http://127.0.0.1:4001")),
            observed(HealthStatus::Stopped, None),
            PluginHealthCommand::Report(Observation {
                restarts: 1,
                ..observation(HealthStatus::Healthy, Some("http://127.0.0.1:4000"))
            }),
        ] {
            assert_eq!(state.decide(&crm(), &change).len(), 1, "{change:?}");
        }
    }

    #[test]
    fn every_status_reads_back_from_its_name() {
        for status in HealthStatus::ALL {
            assert_eq!(HealthStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(HealthStatus::parse("healthy"), None);
    }
}
