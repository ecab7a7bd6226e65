//! This process's appends to the log, announced to its own consumers: a consumer that rests
//! (see [`crate::consumer`]) wakes at once the partitions its process wrote to, instead of at
//! its next look.
//!
//! On tansu every fetch costs the broker a query for each of its partitions whether or not
//! there is data, and a fetch does not wake on new data, so an idle platform of twenty
//! consumers kept the broker's one core more than half busy. A partition with nothing to read
//! for a while is paused and looked at only now and then; the doorbell tells its consumer
//! when a record it may read was written to it by its own process (the command processor's
//! events and outcomes, the DLQ worker's retries, dead letters). A record written by another
//! process is seen at the next look.
//!
//! The doorbell names partitions, not only that something was written: under load the
//! processor rings it for every batch, and a ring that woke every partition would keep a
//! consumer fetching its idle partitions (its retry topic, an event topic nobody writes)
//! as often as its busy ones.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use tokio::sync::watch;

/// A topic's partition.
pub type Partition = (String, i32);

/// How often each partition was rung; a listener compares with what it saw last.
static RUNG: LazyLock<Mutex<HashMap<Partition, u64>>> = LazyLock::new(Default::default);

static DOORBELL: LazyLock<watch::Sender<u64>> = LazyLock::new(|| watch::Sender::new(0));

/// Announces that this process's records were acknowledged by the broker on `written`.
pub fn ring<'a>(written: impl IntoIterator<Item = (&'a str, i32)>) {
    {
        let mut rung = RUNG
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (topic, partition) in written {
            *rung.entry((topic.to_owned(), partition)).or_default() += 1;
        }
    }
    DOORBELL.send_modify(|rings| *rings = rings.wrapping_add(1));
}

/// What a consumer waits on to hear [`ring`]: rings before this call count as heard.
pub fn listen() -> Listener {
    Listener {
        rings: DOORBELL.subscribe(),
        heard: rung(),
    }
}

/// One consumer's ear on the doorbell.
#[derive(Debug)]
pub struct Listener {
    rings: watch::Receiver<u64>,
    heard: HashMap<Partition, u64>,
}

impl Listener {
    /// The partitions rung since the last call (or since [`listen`]), once the doorbell rang.
    pub async fn rung(&mut self) -> Vec<Partition> {
        if self.rings.changed().await.is_err() {
            // The doorbell lives as long as the process: never.
            std::future::pending::<()>().await;
        }
        let now = rung();
        let written = now
            .iter()
            .filter(|(partition, count)| self.heard.get(*partition) != Some(*count))
            .map(|(partition, _)| partition.clone())
            .collect();
        self.heard = now;
        written
    }
}

fn rung() -> HashMap<Partition, u64> {
    RUNG.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_listener_hears_which_partitions_were_written_since_it_last_listened() {
        let mut listener = listen();
        ring([("doorbell-test.a", 0), ("doorbell-test.b", 2)]);
        ring([("doorbell-test.a", 0)]);
        let mut heard = listener.rung().await;
        heard.retain(|(topic, _)| topic.starts_with("doorbell-test."));
        heard.sort();
        assert_eq!(
            heard,
            vec![
                ("doorbell-test.a".to_owned(), 0),
                ("doorbell-test.b".to_owned(), 2)
            ]
        );
        ring([("doorbell-test.b", 2)]);
        let mut heard = listener.rung().await;
        heard.retain(|(topic, _)| topic.starts_with("doorbell-test."));
        assert_eq!(heard, vec![("doorbell-test.b".to_owned(), 2)]);
    }
}
