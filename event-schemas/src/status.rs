//! Statuses that readers of the log see: the one list the domain decides with and the query
//! API serves (as a GraphQL enum with the `graphql` feature).

use serde::{Deserialize, Serialize};

/// Lifecycle states of a plugin (spec 004, FR-003).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "graphql", derive(async_graphql::Enum))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PluginStatus {
    Registered,
    Installing,
    Installed,
    Active,
    Disabled,
    Uninstalling,
    Uninstalled,
}

impl PluginStatus {
    pub const ALL: [PluginStatus; 7] = [
        PluginStatus::Registered,
        PluginStatus::Installing,
        PluginStatus::Installed,
        PluginStatus::Active,
        PluginStatus::Disabled,
        PluginStatus::Uninstalling,
        PluginStatus::Uninstalled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PluginStatus::Registered => "REGISTERED",
            PluginStatus::Installing => "INSTALLING",
            PluginStatus::Installed => "INSTALLED",
            PluginStatus::Active => "ACTIVE",
            PluginStatus::Disabled => "DISABLED",
            PluginStatus::Uninstalling => "UNINSTALLING",
            PluginStatus::Uninstalled => "UNINSTALLED",
        }
    }

    /// The status a read model stored as text.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }
}

/// How a plugin's running instance is, as the runtime last observed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "graphql", derive(async_graphql::Enum))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HealthStatus {
    /// Started, not yet answering `/health`.
    Starting,
    /// Answering `/health`: it gets traffic.
    Healthy,
    /// Not answering, or died and waiting for its restart: it gets no traffic.
    Unhealthy,
    /// Stopped on purpose (disabled, uninstalled, replaced by another version).
    Stopped,
}

impl HealthStatus {
    pub const ALL: [HealthStatus; 4] = [
        HealthStatus::Starting,
        HealthStatus::Healthy,
        HealthStatus::Unhealthy,
        HealthStatus::Stopped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Starting => "STARTING",
            HealthStatus::Healthy => "HEALTHY",
            HealthStatus::Unhealthy => "UNHEALTHY",
            HealthStatus::Stopped => "STOPPED",
        }
    }

    /// The status a record or read model carries as text.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }
}

/// Where an operation (a command, and the saga it started) stands after one of its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "graphql", derive(async_graphql::Enum))]
#[cfg_attr(feature = "graphql", graphql(rename_items = "SCREAMING_SNAKE_CASE"))]
pub enum OperationStatus {
    /// A saga whose last step is not its end.
    Running,
    Succeeded,
    Failed,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_reads_back_from_its_text_and_its_json() {
        for status in PluginStatus::ALL {
            assert_eq!(PluginStatus::parse(status.as_str()), Some(status));
            let json = serde_json::to_string(&status).expect("serialises");
            assert_eq!(json, format!("\"{}\"", status.as_str()));
        }
        assert_eq!(PluginStatus::parse("ACTIVATED"), None);
    }
}
