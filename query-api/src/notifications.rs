//! One Postgres listener per query API for what the projections announce after commit: their
//! progress (for consistency tokens) and the plugins and operations they changed (for
//! subscriptions).

use std::time::Duration;

use infra::consumer::PROGRESS_CHANNEL;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::{broadcast, watch};

use infra::postgres::channels::{self, OPERATION_PROGRESSED, PLUGIN_CHANGED};

/// Something a projection changed, as announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Plugin(String),
    Operation(String),
}

pub struct Notifications {
    /// Bumped at every progress notification.
    pub progress: watch::Receiver<u64>,
    changes: broadcast::Sender<Change>,
}

impl Notifications {
    /// Starts the listener; it stops once the returned value and every receiver are dropped.
    pub fn start(pool: PgPool) -> Self {
        let (progress_sender, progress) = watch::channel(0);
        // Subscribers that fall this far behind skip ahead and re-read the read model.
        let (changes, _) = broadcast::channel(1024);
        tokio::spawn(listen(pool, progress_sender, changes.clone()));
        Self { progress, changes }
    }

    pub fn changes(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }
}

async fn listen(pool: PgPool, progress: watch::Sender<u64>, changes: broadcast::Sender<Change>) {
    loop {
        let listener = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener
                .listen_all([PROGRESS_CHANNEL, PLUGIN_CHANGED, OPERATION_PROGRESSED])
                .await?;
            loop {
                let notification = listener.recv().await?;
                let payload = notification.payload();
                match notification.channel() {
                    PLUGIN_CHANGED => {
                        for id in channels::ids(payload) {
                            let _ = changes.send(Change::Plugin(id));
                        }
                    }
                    OPERATION_PROGRESSED => {
                        for id in channels::ids(payload) {
                            let _ = changes.send(Change::Operation(id));
                        }
                    }
                    _ => progress.send_modify(|count| *count = count.wrapping_add(1)),
                }
            }
        };
        let result: Result<(), sqlx::Error> = tokio::select! {
            _ = progress.closed() => return,
            result = listener => result,
        };
        if let Err(error) = result {
            tracing::warn!(%error, "listening for the projections' notifications failed; reconnecting");
        }
        tokio::select! {
            _ = progress.closed() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}
