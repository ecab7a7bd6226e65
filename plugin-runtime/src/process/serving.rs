//! What the runtime serves and observes: where each plugin is served, the requests under way
//! to it, and the observations the log records.

use std::collections::BTreeMap;
use std::sync::Arc;

use domain::plugin_health::Observation;
use tokio::sync::watch;

use super::{Instance, ProcessRuntime};
use crate::health::{Health, HealthStatus};

/// Where a plugin is served, and how it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub plugin: String,
    pub version: String,
    pub port: u16,
    pub health: Health,
    pub limits: &'static str,
    pub memory_bytes: Option<u64>,
    /// Requests the gateway has under way to it.
    pub in_flight: usize,
}

impl Endpoint {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The instance as the log records it.
    pub fn observation(&self) -> Observation {
        Observation {
            version: self.version.clone(),
            status: self.health.status,
            since: self.health.since,
            last_error: self.health.last_error.clone(),
            restarts: self.health.restarts,
            address: (self.health.status != HealthStatus::Stopped).then(|| self.url()),
        }
    }
}

impl ProcessRuntime {
    /// What the runtime last observed of each plugin it ran since it started: those serving
    /// as their instance is, the others stopped or failed to start.
    pub fn observations(&self) -> BTreeMap<String, Observation> {
        let mut all = self
            .inner
            .not_serving
            .lock()
            .map(|stopped| stopped.clone())
            .unwrap_or_default();
        for endpoint in self.endpoints() {
            all.insert(endpoint.plugin.clone(), endpoint.observation());
        }
        all
    }

    /// Changes each time [`Self::observations`] may have changed.
    pub fn watch_observations(&self) -> watch::Receiver<()> {
        self.inner.observed.subscribe()
    }

    /// Remembers what became of a plugin that no longer serves, and tells the watchers.
    pub(super) fn not_serving(&self, id: &str, observation: Option<Observation>) {
        if let Ok(mut stopped) = self.inner.not_serving.lock() {
            match observation {
                Some(observation) => stopped.insert(id.to_owned(), observation),
                None => stopped.remove(id),
            };
        }
        self.inner.observed.send_replace(());
    }
}

pub(super) fn endpoint(id: &str, instance: &Instance) -> Endpoint {
    let (health, limits, memory_bytes) = match instance.state.read() {
        Ok(state) => (
            state.health.clone(),
            state.limits.describe(),
            state.limits.memory_usage(),
        ),
        Err(_) => (Health::new(HealthStatus::Unhealthy), "unknown", None),
    };
    Endpoint {
        plugin: id.to_owned(),
        version: instance.version.clone(),
        port: instance.port,
        health,
        limits,
        memory_bytes,
        in_flight: instance
            .in_flight
            .count
            .load(std::sync::atomic::Ordering::Acquire),
    }
}

/// Counts the requests under way to one instance.
#[derive(Default)]
pub struct InFlight {
    pub(super) count: std::sync::atomic::AtomicUsize,
    pub(super) drained: tokio::sync::Notify,
}

/// One request under way to a plugin instance, as long as it lives.
pub struct Request {
    in_flight: Arc<InFlight>,
}

impl Drop for Request {
    fn drop(&mut self) {
        use std::sync::atomic::Ordering;
        if self.in_flight.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.in_flight.drained.notify_waiters();
        }
    }
}

impl ProcessRuntime {
    /// Where to send a request to plugin `id`, and the token that keeps its instance up until
    /// the request is done (edge case 10: a disable lets the requests under way finish).
    pub fn route(&self, id: &str) -> Option<(Endpoint, Request)> {
        let serving = self.inner.serving.read().ok()?;
        let instance = serving.get(id)?;
        instance
            .in_flight
            .count
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        let request = Request {
            in_flight: instance.in_flight.clone(),
        };
        Some((endpoint(id, instance), request))
    }
}
