//! What a running plugin must answer (FR-009), and the health the supervisor keeps of it.

use std::time::Duration;

use chrono::{DateTime, Utc};
pub use domain::plugin_health::HealthStatus;

/// The endpoints every plugin serves; an install fails naming those that do not answer 2xx.
pub const STANDARD_ENDPOINTS: [&str; 4] = ["/health", "/ready", "/openapi.json", "/metrics"];

/// How long one probe may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// A plugin's health as last observed.
#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    pub status: HealthStatus,
    pub since: DateTime<Utc>,
    pub last_error: Option<String>,
    /// How many times the supervisor restarted it.
    pub restarts: u64,
}

impl Health {
    pub fn new(status: HealthStatus) -> Self {
        Self {
            status,
            since: Utc::now(),
            last_error: None,
            restarts: 0,
        }
    }

    /// Moves to `status`; `since` changes only when the status does.
    pub fn observe(&mut self, status: HealthStatus, error: Option<String>) -> bool {
        let changed = self.status != status;
        if changed {
            self.status = status;
            self.since = Utc::now();
        }
        if error.is_some() {
            self.last_error = error;
        }
        changed
    }
}

/// Probes `path` on the plugin at `port`; `Err` says what answered instead of 2xx.
pub async fn probe(client: &reqwest::Client, port: u16, path: &str) -> Result<(), String> {
    let url = format!("http://127.0.0.1:{port}{path}");
    match client.get(&url).timeout(PROBE_TIMEOUT).send().await {
        Ok(response) if response.status().is_success() => Ok(()),
        Ok(response) => Err(format!("{path} answered {}", response.status().as_u16())),
        Err(error) if error.is_timeout() => Err(format!("{path} did not answer within 1 s")),
        Err(_) => Err(format!("{path} refused the connection")),
    }
}

/// Whether the plugin at `port` says it is not ready yet: `/ready` answers 503.
pub async fn not_ready_yet(client: &reqwest::Client, port: u16) -> bool {
    let url = format!("http://127.0.0.1:{port}/ready");
    client
        .get(&url)
        .timeout(PROBE_TIMEOUT)
        .send()
        .await
        .is_ok_and(|response| response.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE)
}

/// Probes every standard endpoint; the error names each one missing.
pub async fn check_standard_endpoints(client: &reqwest::Client, port: u16) -> Result<(), String> {
    let results =
        futures_join(STANDARD_ENDPOINTS.map(|path| async move { probe(client, port, path).await }))
            .await;
    let missing: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the plugin does not serve every standard endpoint: {}",
            missing.join("; ")
        ))
    }
}

async fn futures_join<F: std::future::Future>(futures: [F; 4]) -> [F::Output; 4] {
    let [a, b, c, d] = futures;
    let (a, b, c, d) = tokio::join!(a, b, c, d);
    [a, b, c, d]
}
