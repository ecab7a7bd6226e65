//! The plugin's environment, as the process driver sets it, read once at start.

/// What the platform tells a plugin process. Parsed, not validated: the URLs are used as given.
#[derive(Debug, Clone)]
pub struct PluginConfig {
    pub port: u16,
    pub plugin_id: String,
    pub plugin_version: String,
    /// The plugin's own Postgres role. Not printed by `Debug` of the SDK's errors.
    pub database_url: String,
    pub kafka_brokers: String,
    pub schema_registry_url: String,
    pub gateway_url: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("the environment variable {0} is missing (the platform's process driver sets it)")]
    Missing(&'static str),
    #[error("the environment variable {name} is not valid: {value:?}")]
    Invalid { name: &'static str, value: String },
}

impl PluginConfig {
    /// Reads the process's environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the variables from `lookup` (the environment, or a test's map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &'static str| lookup(name).ok_or(ConfigError::Missing(name));
        let port = get("PORT")?;
        Ok(Self {
            port: port.parse().map_err(|_| ConfigError::Invalid {
                name: "PORT",
                value: port.clone(),
            })?,
            plugin_id: get("PLEXICA_PLUGIN_ID")?,
            plugin_version: get("PLEXICA_PLUGIN_VERSION")?,
            database_url: get("DATABASE_URL")?,
            kafka_brokers: get("KAFKA_BROKERS")?,
            schema_registry_url: get("SCHEMA_REGISTRY_URL")?,
            gateway_url: get("PLEXICA_GATEWAY_URL")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn environment() -> HashMap<&'static str, &'static str> {
        HashMap::from([
            ("PORT", "4100"),
            ("PLEXICA_PLUGIN_ID", "crm"),
            ("PLEXICA_PLUGIN_VERSION", "1.0.0"),
            ("DATABASE_URL", "postgres://crm@localhost/plexica"),
            ("KAFKA_BROKERS", "localhost:9092"),
            ("SCHEMA_REGISTRY_URL", "http://localhost:8081"),
            ("PLEXICA_GATEWAY_URL", "http://localhost:8080"),
        ])
    }

    #[test]
    fn a_complete_environment_is_read() {
        let env = environment();
        let config = PluginConfig::from_lookup(|n| env.get(n).map(|v| v.to_string())).unwrap();
        assert_eq!(config.port, 4100);
        assert_eq!(config.plugin_id, "crm");
        assert_eq!(config.gateway_url, "http://localhost:8080");
    }

    #[test]
    fn a_missing_variable_is_named() {
        let mut env = environment();
        env.remove("PLEXICA_GATEWAY_URL");
        let error = PluginConfig::from_lookup(|n| env.get(n).map(|v| v.to_string())).unwrap_err();
        assert_eq!(error, ConfigError::Missing("PLEXICA_GATEWAY_URL"));
        assert!(error.to_string().contains("PLEXICA_GATEWAY_URL"));
    }

    #[test]
    fn a_port_that_is_no_number_is_refused() {
        let mut env = environment();
        env.insert("PORT", "eighty");
        let error = PluginConfig::from_lookup(|n| env.get(n).map(|v| v.to_string())).unwrap_err();
        assert!(matches!(error, ConfigError::Invalid { name: "PORT", .. }));
    }
}
