//! The topic catalogue. Names are a contract with plugins; the prefix exists only to keep
//! environments (or tests) apart on one cluster and is empty in production.

/// What a topic is for, which decides how it is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    /// `None` keeps records forever: the event log is the source of truth.
    pub retention_ms: Option<i64>,
    /// `None` leaves the broker's default (`delete`). Topics kept forever name no policy:
    /// tansu 0.6 reads `retention.ms = -1` on a topic that names `delete` as "older than
    /// -1 ms" and deletes every record, while Kafka and Redpanda keep them with either.
    pub cleanup_policy: Option<&'static str>,
}

/// A consumer's retry topic: what the DLQ worker sends back, kept a week like the commands
/// (the DLQ itself is the lasting record).
pub fn retry_spec(name: &str) -> TopicSpec {
    TopicSpec {
        name: name.to_owned(),
        partitions: 1,
        retention_ms: Some(WEEK_MS),
        cleanup_policy: Some("delete"),
    }
}

/// The catalog projection, which the query API serves.
pub const CATALOG_CONSUMER: &str = "catalog";
/// The consumer that turns events into webhook deliveries.
pub const WEBHOOKS_CONSUMER: &str = "webhooks";
/// The consumer that runs the plugin lifecycle's steps.
pub const SAGAS_CONSUMER: &str = "plugin-sagas";
/// The consumer that creates and drops tenants' schemas.
pub const TENANT_SCHEMAS_CONSUMER: &str = "tenant-schemas";

/// The platform's consumers that take retries from `plexica.retry.{consumer}`: every one that
/// dead-letters except the DLQ worker, whose input is the DLQ itself.
pub const RETRYING_CONSUMERS: [&str; 4] = [
    CATALOG_CONSUMER,
    WEBHOOKS_CONSUMER,
    SAGAS_CONSUMER,
    TENANT_SCHEMAS_CONSUMER,
];

/// What every plugin's consumer is called: `plugin.{pluginId}`.
pub const PLUGIN_CONSUMER_PREFIX: &str = "plugin.";

/// The name of plugin `plugin_id`'s consumer, in dead letters, metrics and the admin API.
pub fn plugin_consumer(plugin_id: &str) -> String {
    format!("{PLUGIN_CONSUMER_PREFIX}{plugin_id}")
}

/// Whether `consumer` reads its retry topic `plexica.retry.{consumer}`: the platform's
/// [`RETRYING_CONSUMERS`] and every plugin's consumer.
pub fn takes_retries(consumer: &str) -> bool {
    RETRYING_CONSUMERS.contains(&consumer) || consumer.starts_with(PLUGIN_CONSUMER_PREFIX)
}

/// [`takes_retries`] in SQL, of the column `consumer`, with `$param` bound to
/// [`RETRYING_CONSUMERS`].
pub fn takes_retries_sql(param: u8) -> String {
    format!("(consumer = ANY(${param}) OR starts_with(consumer, '{PLUGIN_CONSUMER_PREFIX}'))")
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    prefix: String,
    partitions: i32,
}

const WEEK_MS: i64 = 7 * 24 * 3600 * 1000;

impl Topics {
    /// `partitions` applies to the command topic and every event topic alike, so that a
    /// command's partition and its events' partition line up.
    pub fn new(prefix: impl Into<String>, partitions: i32) -> Self {
        Self {
            prefix: prefix.into(),
            partitions,
        }
    }

    pub fn partitions(&self) -> i32 {
        self.partitions
    }

    fn name(&self, base: &str) -> String {
        format!("{}{}", self.prefix, base)
    }

    pub fn commands(&self) -> String {
        self.name("plexica.commands")
    }
    pub fn command_results(&self) -> String {
        self.name("plexica.command-results")
    }
    pub fn plugins(&self) -> String {
        self.name("core.plugins")
    }
    pub fn tenants(&self) -> String {
        self.name("core.tenants")
    }
    pub fn registry(&self) -> String {
        self.name("core.registry")
    }
    pub fn dlq(&self) -> String {
        self.name("plexica.dlq")
    }
    /// The embedded schema registry's journal: every schema, version and level it holds, so
    /// that the log stays readable when the database is lost.
    pub fn schemas(&self) -> String {
        self.name("plexica.schemas")
    }
    /// Where the DLQ worker sends a consumer's dead letters back for another attempt.
    pub fn retry(&self, consumer: &str) -> String {
        self.name(&format!("plexica.retry.{consumer}"))
    }
    /// Events a plugin publishes.
    pub fn plugin(&self, plugin_id: &str) -> String {
        self.name(&format!("plugin.{plugin_id}"))
    }

    /// The plugin whose topic `topic` is, if it is a plugin's.
    pub fn plugin_owner<'a>(&self, topic: &'a str) -> Option<&'a str> {
        topic
            .strip_prefix(&self.prefix)?
            .strip_prefix("plugin.")
            .filter(|owner| !owner.is_empty())
    }

    /// A regular expression (as Kafka clients subscribe with, `^` first) of every plugin's
    /// topic, those created later included.
    pub fn plugin_pattern(&self) -> String {
        let escaped: String = self
            .prefix
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_string()
                } else {
                    format!("\\{c}")
                }
            })
            .collect();
        format!("^{escaped}plugin\\.[a-z0-9-]+$")
    }

    /// A plugin's topic as it is created when the plugin is enabled: kept forever, like the
    /// core log, and partitioned like it.
    pub fn plugin_spec(&self, plugin_id: &str) -> TopicSpec {
        TopicSpec {
            name: self.plugin(plugin_id),
            partitions: self.partitions,
            retention_ms: None,
            cleanup_policy: None,
        }
    }

    /// What every topic name starts with: empty in production.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The topics only the command processor writes, each fenced per partition.
    pub fn event_topics(&self) -> [String; 3] {
        [self.plugins(), self.tenants(), self.registry()]
    }

    /// A consumer group name in this environment.
    pub fn group(&self, base: &str) -> String {
        self.name(base)
    }

    /// Every topic the platform itself needs, as it should be created.
    pub fn catalogue(&self) -> Vec<TopicSpec> {
        let log = |name: String| TopicSpec {
            name,
            partitions: self.partitions,
            retention_ms: None,
            cleanup_policy: None,
        };
        let week = |name: String, partitions: i32| TopicSpec {
            name,
            partitions,
            retention_ms: Some(WEEK_MS),
            cleanup_policy: Some("delete"),
        };
        vec![
            week(self.commands(), self.partitions),
            log(self.plugins()),
            log(self.tenants()),
            log(self.registry()),
            week(self.command_results(), self.partitions),
            // The DLQ is the record of what went wrong and what admins did about it.
            log(self.dlq()),
            // One partition: the registry replays it in order.
            TopicSpec {
                name: self.schemas(),
                partitions: 1,
                retention_ms: None,
                cleanup_policy: None,
            },
        ]
        .into_iter()
        .chain(
            RETRYING_CONSUMERS
                .iter()
                .map(|c| retry_spec(&self.retry(c))),
        )
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plugin_topic_names_its_plugin_and_matches_the_pattern() {
        let topics = Topics::new("t-1a.", 3);
        assert_eq!(topics.plugin_owner("t-1a.plugin.crm"), Some("crm"));
        assert_eq!(topics.plugin_owner("t-1a.plugin."), None);
        assert_eq!(topics.plugin_owner("t-1a.core.plugins"), None);
        assert_eq!(topics.plugin_owner("plugin.crm"), None);
        assert_eq!(topics.plugin_pattern(), r"^t\-1a\.plugin\.[a-z0-9-]+$");
        assert_eq!(Topics::new("", 3).plugin_pattern(), r"^plugin\.[a-z0-9-]+$");
    }

    #[test]
    fn command_and_event_topics_have_the_same_partition_count() {
        let topics = Topics::new("", 6);
        let catalogue = topics.catalogue();
        let count = |name: String| {
            catalogue
                .iter()
                .find(|t| t.name == name)
                .map(|t| t.partitions)
        };
        let commands = count(topics.commands());
        assert_eq!(commands, Some(6));
        for topic in topics.event_topics() {
            assert_eq!(count(topic), commands);
        }
    }

    #[test]
    fn the_event_log_is_kept_forever_and_names_carry_the_prefix() {
        let topics = Topics::new("test.", 3);
        let plugins = topics
            .catalogue()
            .into_iter()
            .find(|t| t.name == "test.core.plugins")
            .expect("core.plugins is in the catalogue");
        assert_eq!(plugins.retention_ms, None);
        assert_eq!(
            plugins.cleanup_policy, None,
            "see TopicSpec::cleanup_policy"
        );
        assert_eq!(topics.retry("catalog"), "test.plexica.retry.catalog");
    }
}
