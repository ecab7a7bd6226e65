//! A consumer group that formed with nobody holding its partitions, and the rejoin that ends it.
//!
//! tansu 0.6 accepts a follower's SyncGroup as the leader's when the leader's session expires
//! between the follower's JoinGroup and its SyncGroup: the group forms with the follower alone
//! and no assignment at all, and stays so (every heartbeat is answered "fine") until another
//! member comes or goes. A `kill -9` of the whole platform followed by a restart within the
//! session timeout hits that window in every group: each consumer logs
//! `partitions assigned partitions=[]` and reads nothing. A member that holds nothing while it
//! is its group's only member is in that state on any broker (a sole member gets every
//! partition), so it leaves and joins again, which forms the group anew with it as leader.

use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};

use crate::kafka::RebalanceContext;

/// Watches one consumer for the stranded state; [`StrandedWatch::tick`] in the consumer's
/// loop, [`StrandedWatch::check`] when it fires.
pub struct StrandedWatch {
    group: String,
    topics: Vec<String>,
    ticks: tokio::time::Interval,
    /// How long an empty assignment is left alone: a rebalance in progress ends by itself.
    patience: Duration,
    /// The rebalance generation at which the assignment was first seen empty, and when.
    empty_since: Option<(u64, Instant)>,
}

impl StrandedWatch {
    /// Leaves an empty assignment alone for half the session timeout and looks four times as
    /// often. On tansu, whose group descriptions list no members, a member that rightly holds
    /// nothing (more members than partitions) rejoins at that pace: keep partitions at least
    /// as many as instances.
    pub fn new(group: &str, topics: &[&str], session_timeout: Duration) -> Self {
        let patience = session_timeout / 2;
        let mut ticks = tokio::time::interval((patience / 4).max(Duration::from_millis(250)));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self {
            group: group.to_owned(),
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            ticks,
            patience,
            empty_since: None,
        }
    }

    pub async fn tick(&mut self) {
        self.ticks.tick().await;
    }

    /// Makes `consumer` rejoin its group when it has held nothing since the same rebalance for
    /// longer than the patience and is the group's only member. Must run on a multi-threaded
    /// runtime: the group's description is a blocking call.
    pub fn check(&mut self, consumer: &StreamConsumer<RebalanceContext>) {
        let generation = consumer.context().generation();
        let holds_partitions = consumer
            .assignment()
            .map_or(true, |assignment| assignment.count() > 0);
        // Generation 0: no assignment yet, the first join is still under way.
        if generation == 0 || holds_partitions {
            self.empty_since = None;
            return;
        }
        match self.empty_since {
            Some((seen, since)) if seen == generation => {
                if since.elapsed() < self.patience {
                    return;
                }
            }
            _ => {
                self.empty_since = Some((generation, Instant::now()));
                return;
            }
        }
        let group = tokio::task::block_in_place(|| {
            consumer.fetch_group_list(Some(&self.group), Duration::from_secs(5))
        });
        let members = match &group {
            Ok(list) => list
                .groups()
                .iter()
                .find(|g| g.name() == self.group)
                .map_or(0, |g| g.members().len()),
            // tansu 0.6 on sqlite cannot read back the group state it stored (a JSON string
            // where it expects an object) and drops the connection: no description there, and
            // an unknown member count is treated as no other member.
            Err(error) => {
                tracing::debug!(group = %self.group, %error, "describing the group failed");
                0
            }
        };
        if members > 1 {
            // Others hold the partitions (more members than partitions): nothing to mend.
            self.empty_since = Some((generation, Instant::now()));
            return;
        }
        tracing::warn!(group = %self.group, members, "the group formed with no partition given to its only member; rejoining");
        self.empty_since = None;
        consumer.unsubscribe();
        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        if let Err(error) = consumer.subscribe(&topics) {
            tracing::error!(group = %self.group, %error, "subscribing again failed");
        }
    }
}
