//! Command outcomes in Redis: the fast path between the processor that decides a command and
//! the API request waiting for it. The durable copy is on `plexica.command-results`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use event_schemas::commands::CommandOutcome;
use futures::StreamExt;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How long an outcome stays answerable by command id (and so an idempotency key).
pub const OUTCOME_TTL_SECONDS: u64 = 24 * 3600;

fn outcome_key(command_id: &str) -> String {
    format!("command-outcome:{command_id}")
}

fn result_channel(command_id: &str) -> String {
    format!("command-result:{command_id}")
}

#[derive(Clone)]
pub struct OutcomeStore {
    redis: ConnectionManager,
}

impl OutcomeStore {
    pub fn new(redis: ConnectionManager) -> Self {
        Self { redis }
    }

    /// Stores the outcome, then wakes whoever waits for it.
    /// Stores and announces `outcomes` in one round trip.
    pub async fn publish(&self, outcomes: &[&CommandOutcome]) -> redis::RedisResult<()> {
        if outcomes.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for outcome in outcomes {
            let json = serde_json::to_string(outcome).unwrap_or_default();
            pipe.set_ex(outcome_key(&outcome.command_id), &json, OUTCOME_TTL_SECONDS)
                .ignore()
                .publish(result_channel(&outcome.command_id), &json)
                .ignore();
        }
        let mut redis = self.redis.clone();
        pipe.query_async::<()>(&mut redis).await
    }

    pub async fn get(&self, command_id: Uuid) -> redis::RedisResult<Option<CommandOutcome>> {
        let mut redis = self.redis.clone();
        let json: Option<String> = redis.get(outcome_key(&command_id.to_string())).await?;
        Ok(json.and_then(|j| serde_json::from_str(&j).ok()))
    }
}

type Waiters = Arc<Mutex<HashMap<String, Vec<oneshot::Sender<CommandOutcome>>>>>;

/// Dispatches published outcomes to the requests waiting for them, over one Redis
/// subscription per process instead of one per request.
#[derive(Clone, Default)]
pub struct OutcomeWaiters {
    waiters: Waiters,
}

impl OutcomeWaiters {
    /// Registers interest before the command is produced, so no outcome can slip by.
    pub fn register(&self, command_id: Uuid) -> oneshot::Receiver<CommandOutcome> {
        let (sender, receiver) = oneshot::channel();
        if let Ok(mut waiters) = self.waiters.lock() {
            waiters
                .entry(command_id.to_string())
                .or_default()
                .push(sender);
        }
        receiver
    }

    /// Drops the interest of requests that stopped waiting (their receiver is gone), and
    /// only theirs: another request may wait for the same command (the same Idempotency-Key).
    pub fn forget(&self, command_id: Uuid) {
        if let Ok(mut waiters) = self.waiters.lock() {
            let key = command_id.to_string();
            if let Some(senders) = waiters.get_mut(&key) {
                senders.retain(|sender| !sender.is_closed());
                if senders.is_empty() {
                    waiters.remove(&key);
                }
            }
        }
    }

    /// Answers the requests waiting for `outcome`.
    pub fn deliver(&self, outcome: &CommandOutcome) {
        let senders = self
            .waiters
            .lock()
            .ok()
            .and_then(|mut w| w.remove(&outcome.command_id));
        for sender in senders.into_iter().flatten() {
            let _gone = sender.send(outcome.clone());
        }
    }

    /// Listens to `command-result:*` until shutdown, reconnecting after failures. Waiters
    /// also poll the stored outcome when their wait ends, so a gap here delays, never loses.
    pub async fn listen(self, client: redis::Client, shutdown: CancellationToken) {
        loop {
            let session = async {
                let mut pubsub = client.get_async_pubsub().await?;
                pubsub.psubscribe("command-result:*").await?;
                let mut messages = pubsub.on_message();
                while let Some(message) = messages.next().await {
                    let Ok(json) = message.get_payload::<String>() else {
                        continue;
                    };
                    if let Ok(outcome) = serde_json::from_str::<CommandOutcome>(&json) {
                        self.deliver(&outcome);
                    }
                }
                Ok::<(), redis::RedisError>(())
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                result = session => {
                    if let Err(error) = result {
                        tracing::warn!(%error, "outcome subscription lost; reconnecting");
                    }
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decided(command_id: Uuid) -> CommandOutcome {
        CommandOutcome {
            command_id: command_id.to_string(),
            aggregate_key: "plugin:crm".to_owned(),
            accepted: true,
            events: vec![],
            rejection: None,
            decided_at: 0,
        }
    }

    #[tokio::test]
    async fn a_request_that_stops_waiting_leaves_the_others_on_the_same_command() {
        let waiters = OutcomeWaiters::default();
        let command_id = Uuid::now_v7();
        let gave_up = waiters.register(command_id);
        let still_waiting = waiters.register(command_id);
        drop(gave_up);
        waiters.forget(command_id);
        waiters.deliver(&decided(command_id));
        let outcome = still_waiting
            .await
            .expect("the outcome reaches the waiting request");
        assert_eq!(outcome.command_id, command_id.to_string());
    }
}
