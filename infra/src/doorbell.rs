//! This process's appends to the log, announced to its own consumers: a consumer that rests
//! (see [`crate::consumer`]) wakes at once when its process wrote, instead of at its next look.
//!
//! On tansu every fetch costs the broker a query whether or not there is data, and a fetch
//! does not wake on new data, so an idle platform of twenty consumers kept the broker's one
//! core more than half busy. A consumer with nothing to read for a while pauses its
//! partitions and looks again only now and then; the doorbell tells it when a record it may
//! read was written by its own process (the command processor's events, the DLQ worker's
//! retries, dead letters). A record written by another process is seen at the next look.

use std::sync::LazyLock;

use tokio::sync::watch;

static DOORBELL: LazyLock<watch::Sender<u64>> = LazyLock::new(|| watch::Sender::new(0));

/// Announces that this process's records were acknowledged by the broker.
pub fn ring() {
    DOORBELL.send_modify(|rings| *rings = rings.wrapping_add(1));
}

/// What a consumer waits on to hear [`ring`]: rings before this call count as heard.
pub fn listen() -> watch::Receiver<u64> {
    DOORBELL.subscribe()
}
