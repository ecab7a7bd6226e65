//! Which tenant has which plugin enabled, as the gateway asks on every request. The answer is
//! the catalog's, kept in memory until the catalog commits again: every projection commit
//! announces itself on [`PROGRESS_CHANNEL`] (delivered at commit), and each announcement
//! forgets every kept answer. While that announcement cannot be heard (the listener is
//! connecting again), nothing is kept and every request asks Postgres.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use infra::consumer::PROGRESS_CHANNEL;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use uuid::Uuid;

/// At most this many answers are kept; one more forgets them all, so no caller naming
/// plugin ids that do not exist makes the gateway hold unbounded memory.
const KEPT_ANSWERS: usize = 65_536;

#[derive(Clone)]
pub struct Enablements {
    pool: PgPool,
    kept: Arc<Mutex<Kept>>,
}

#[derive(Default)]
struct Kept {
    /// Whether the catalog's commits are heard; answers are kept only while they are.
    listening: bool,
    /// Bumped whenever what is kept is forgotten, so that an answer read from Postgres before
    /// a commit is not kept after it.
    generation: u64,
    answers: HashMap<(Uuid, String), bool>,
}

impl Kept {
    fn forget(&mut self) {
        self.generation = self.generation.wrapping_add(1);
        self.answers.clear();
    }
}

impl Enablements {
    /// Starts listening for the catalog's commits; the listener ends with the last clone.
    pub fn start(pool: PgPool) -> Self {
        let kept = Arc::new(Mutex::new(Kept::default()));
        tokio::spawn(listen(pool.clone(), Arc::downgrade(&kept)));
        Self { pool, kept }
    }

    /// Whether `tenant` (active) has `plugin` enabled.
    pub async fn enabled(&self, tenant: Uuid, plugin: &str) -> Result<bool, sqlx::Error> {
        let key = (tenant, plugin.to_owned());
        let generation = {
            let kept = self.lock();
            if let Some(enabled) = kept.answers.get(&key) {
                return Ok(*enabled);
            }
            kept.listening.then_some(kept.generation)
        };
        let enabled = read(&self.pool, tenant, plugin).await?;
        if let Some(generation) = generation {
            let mut kept = self.lock();
            if kept.listening && kept.generation == generation {
                if kept.answers.len() >= KEPT_ANSWERS {
                    kept.forget();
                }
                kept.answers.insert(key, enabled);
            }
        }
        Ok(enabled)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        // A panic while holding the lock leaves only a map of answers: still usable.
        self.kept
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

async fn read(pool: &PgPool, tenant: Uuid, plugin: &str) -> Result<bool, sqlx::Error> {
    // A suspended or deleted tenant reaches no plugin.
    let enabled: Option<bool> = sqlx::query_scalar(
        "SELECT tp.enabled FROM catalog.tenant_plugins tp
         JOIN catalog.tenants t ON t.id = tp.tenant_id AND t.status = 'ACTIVE'
         WHERE tp.tenant_id = $1 AND tp.plugin_id = $2",
    )
    .bind(tenant)
    .bind(plugin)
    .fetch_optional(pool)
    .await?;
    Ok(enabled == Some(true))
}

fn with_kept(kept: &Weak<Mutex<Kept>>, change: impl FnOnce(&mut Kept)) -> bool {
    let Some(kept) = kept.upgrade() else {
        return false;
    };
    let mut kept = kept.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    change(&mut kept);
    true
}

/// Why the listener stopped hearing the catalog.
enum Deafness {
    /// Nobody asks any more: the gateway is gone.
    Unwanted,
    ConnectionLost,
    Failed(sqlx::Error),
}

impl From<sqlx::Error> for Deafness {
    fn from(error: sqlx::Error) -> Self {
        Self::Failed(error)
    }
}

async fn listen(pool: PgPool, kept: Weak<Mutex<Kept>>) {
    loop {
        let deafness = hear(&pool, &kept).await;
        let still_wanted = with_kept(&kept, |kept| {
            kept.listening = false;
            kept.forget();
        });
        match deafness {
            Deafness::Unwanted => return,
            _ if !still_wanted => return,
            Deafness::ConnectionLost => tracing::warn!(
                "the gateway's enablement cache lost its Postgres listener; asking Postgres until it hears again"
            ),
            Deafness::Failed(error) => tracing::warn!(
                %error,
                "the gateway's enablement cache cannot listen to the catalog; asking Postgres until it can"
            ),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Forgets every kept answer at each commit, until the connection is lost.
async fn hear(pool: &PgPool, kept: &Weak<Mutex<Kept>>) -> Deafness {
    let mut listener = match PgListener::connect_with(pool).await {
        Ok(listener) => listener,
        Err(error) => return error.into(),
    };
    if let Err(error) = listener.listen(PROGRESS_CHANNEL).await {
        return error.into();
    }
    // What was read while nothing was heard may be old: start afresh.
    if !with_kept(kept, |kept| {
        kept.forget();
        kept.listening = true;
    }) {
        return Deafness::Unwanted;
    }
    loop {
        // `try_recv` reports a lost connection instead of reconnecting silently, when
        // commits could have gone unheard.
        match listener.try_recv().await {
            Ok(Some(_)) => {}
            Ok(None) => return Deafness::ConnectionLost,
            Err(error) => return error.into(),
        }
        if !with_kept(kept, Kept::forget) {
            return Deafness::Unwanted;
        }
    }
}
