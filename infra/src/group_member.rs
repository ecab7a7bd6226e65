//! A consumer that is a member of its group, and its leaving, bounded and off the async
//! workers.
//!
//! librdkafka's close waits for the group's coordinator, and rdkafka's `Drop` polls until it
//! ends: for a LeaveGroup up to its 5 s request timeout, for a JoinGroup under way up to
//! `max.poll.interval.ms` + 3 s (303 s), which a coordinator that holds the join while it
//! waits for the group's other members uses up. Dropped on an async worker, a consumer held
//! that worker for as long; dropped while its runtime shut down (a test whose platform was
//! never stopped, a task aborted) it held the runtime's shutdown: 8 s for a platform whose
//! broker was frozen, and test processes of `cargo xtask test` hung past their 300 s limit
//! after their test had passed. A member closes on a thread of its own instead:
//! [`GroupMember::leave`] waits for that for at most a limit, a plain drop not at all. A
//! member that could not leave in time is expired by the broker after its session timeout,
//! as one killed would be.

use std::ops::Deref;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};

use crate::kafka::RebalanceContext;

/// A group consumer (it subscribes; the group assigns its partitions) that closes off the
/// async workers. It reads as the consumer it holds.
pub struct GroupMember {
    /// `None` once handed to the thread that closes it.
    consumer: Option<StreamConsumer<RebalanceContext>>,
}

impl GroupMember {
    pub fn new(consumer: StreamConsumer<RebalanceContext>) -> Self {
        Self {
            consumer: Some(consumer),
        }
    }

    /// Leaves the group: lets a first join under way finish, so that the close can leave (see
    /// [`finish_first_join`]), then closes on a thread of its own; waits at most `limit` for
    /// each. Past the limit the close goes on by itself.
    pub async fn leave(mut self, limit: Duration) {
        let Some(consumer) = self.consumer.take() else {
            return;
        };
        finish_first_join(&consumer, limit).await;
        if tokio::time::timeout(limit, close_off_workers(consumer))
            .await
            .is_err()
        {
            tracing::warn!(
                limit_ms = limit.as_millis(),
                "the consumer did not leave its group in time; the broker expires it after its session timeout"
            );
        }
    }
}

impl Deref for GroupMember {
    type Target = StreamConsumer<RebalanceContext>;

    fn deref(&self) -> &StreamConsumer<RebalanceContext> {
        self.consumer
            .as_ref()
            .expect("a member is handed to its closing thread only as it is consumed or dropped")
    }
}

impl Drop for GroupMember {
    fn drop(&mut self) {
        if let Some(consumer) = self.consumer.take() {
            // Nobody waits: the runtime may be shutting down, and the close must not hold it.
            drop(close_off_workers(consumer));
        }
    }
}

/// Drops `consumer` (librdkafka's close) on a thread of its own; the returned receiver
/// resolves when it has closed.
fn close_off_workers(
    consumer: StreamConsumer<RebalanceContext>,
) -> tokio::sync::oneshot::Receiver<()> {
    let (closed, on_closed) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("kafka-close".to_owned())
        .spawn(move || {
            drop(consumer);
            let _ = closed.send(());
        });
    if let Err(error) = spawned {
        // The closure, and the consumer in it, were dropped here: it closed on this thread.
        tracing::warn!(%error, "no thread to close a consumer on; it closed on the caller's");
    }
    on_closed
}

/// Lets a consumer stopped during its first join finish it (for at most `limit`), so that its
/// close leaves the group. One closed while its JoinGroup is under way never learns its
/// member id and cannot leave: the group keeps it as a member, and the next instance is
/// assigned only its share of the partitions until the broker expires it (on tansu 0.6 a
/// plugin's health-check instance, stopped within milliseconds of its start, left a member
/// that held a partition of `plugin.crm` for as long as billing ran).
async fn finish_first_join(consumer: &StreamConsumer<RebalanceContext>, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    while consumer.context().generation() == 0 {
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!("the consumer's first join did not end before it stopped");
            return;
        }
        // Polled only for the group's callbacks, which run inside the poll: a record it
        // reads is not applied, and the next owner reads it again.
        let _ = tokio::time::timeout(Duration::from_millis(20), consumer.recv()).await;
    }
}
