//! The command mix of the latency, knee and freshness scenarios: plugin registrations,
//! global enable and disable, tenant plugin enable and disable, and tenant configuration,
//! spread over plugins so that no plugin sees two commands in flight at the usual rates.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use end_to_end::manifest;
use infra::auth::Role;
use reqwest::Method;
use serde_json::{Value, json};

use end_to_end::process::Platform;

/// An HTTP client of one platform with the tokens it needs.
#[derive(Clone)]
pub struct Api {
    client: reqwest::Client,
    base: String,
    pub super_admin: String,
}

impl Api {
    pub fn new(platform: &Platform) -> Self {
        Self {
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(256)
                .build()
                .expect("an HTTP client"),
            base: platform.base.clone(),
            super_admin: platform.token(Role::SuperAdmin, None),
        }
    }

    /// Sends a command; whether it was accepted.
    pub async fn command(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<&Value>,
    ) -> bool {
        self.command_status(method, path, token, body)
            .await
            .is_some_and(|status| (200..300).contains(&status))
    }

    /// Sends a command; the status of its reply, if one came.
    pub async fn command_status(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<&Value>,
    ) -> Option<u16> {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token)
            .timeout(Duration::from_secs(30));
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.ok()?;
        Some(response.status().as_u16())
    }

    pub async fn graphql(&self, token: &str, query: &str) -> Value {
        let reply = self
            .client
            .post(format!("{}/graphql", self.base))
            .bearer_auth(token)
            .json(&json!({ "query": query }))
            .send()
            .await;
        match reply {
            Ok(reply) => reply.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        }
    }

    /// The command processor's time per stage so far: stage → (seconds in all, commands).
    pub async fn command_stages(&self) -> std::collections::BTreeMap<String, (f64, f64)> {
        let text = match self
            .client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
        {
            Ok(reply) => reply.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        let mut stages = std::collections::BTreeMap::<String, (f64, f64)>::new();
        for line in text.lines() {
            let (which, rest) = if let Some(rest) =
                line.strip_prefix("plexica_command_stage_seconds_sum{")
            {
                (0, rest)
            } else if let Some(rest) = line.strip_prefix("plexica_command_stage_seconds_count{") {
                (1, rest)
            } else {
                continue;
            };
            let Some((labels, value)) = rest.split_once("} ") else {
                continue;
            };
            let Some(stage) = labels
                .split(',')
                .find_map(|l| l.strip_prefix("stage=\"")?.strip_suffix('"'))
            else {
                continue;
            };
            let Ok(value) = value.trim().parse::<f64>() else {
                continue;
            };
            let entry = stages.entry(stage.to_owned()).or_default();
            if which == 0 {
                entry.0 = value
            } else {
                entry.1 = value
            }
        }
        stages
    }

    /// Polls GraphQL every millisecond until `seen` holds for the reply to `query`.
    pub async fn until_visible(&self, query: &str, seen: impl Fn(&Value) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !seen(&self.graphql(&self.super_admin, query).await) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "not visible in 30 s: {query}"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// What a command of the mix changed, to look for it in the read model.
pub enum Change {
    Registered {
        plugin: String,
    },
    PluginStatus {
        plugin: String,
        status: &'static str,
    },
    TenantPlugin {
        plugin: String,
        enabled: bool,
    },
    Configured {
        plugin: String,
        configuration: Value,
    },
}

/// Plugins the mix works on, in four groups: globally toggled, tenant-configured,
/// tenant-toggled, and the new registrations' names.
pub struct CommandMix {
    api: Api,
    tenant: uuid::Uuid,
    tenant_admin: String,
    run: String,
    /// Numbers every command of the mix across scenarios, so each registration is new.
    sent: AtomicU64,
    group: usize,
    toggled: Arc<Vec<(String, AtomicBool)>>,
    configured: Arc<Vec<String>>,
    tenant_toggled: Arc<Vec<(String, AtomicBool)>>,
}

impl CommandMix {
    /// Registers, installs and enables the plugins, and makes a tenant that enables them.
    /// `group` plugins per group: each is touched every `4 × group / rate` seconds.
    pub async fn prepare(platform: &Platform, api: &Api, group: usize) -> Self {
        let admin = api.super_admin.clone();
        let group = group.max(1);
        let names: Vec<String> = (0..3 * group).map(|i| format!("mix-{i}")).collect();
        for name in &names {
            assert!(
                api.command(
                    Method::POST,
                    "/api/v1/plugins",
                    &admin,
                    Some(&manifest(name, "1.0.0"))
                )
                .await,
                "{name} registers"
            );
            let install = format!("/api/v1/plugins/{name}/install");
            assert!(
                api.command(Method::POST, &install, &admin, None).await,
                "{name} installs"
            );
        }
        for name in &names {
            let query = format!(r#"{{ plugin(id: "{name}") {{ status }} }}"#);
            api.until_visible(&query, |r| r["data"]["plugin"]["status"] == "INSTALLED")
                .await;
            let enable = format!("/api/v1/plugins/{name}/enable");
            assert!(
                api.command(Method::POST, &enable, &admin, None).await,
                "{name} enables"
            );
        }
        let tenant = uuid::Uuid::now_v7();
        let created = api
            .command(
                Method::POST,
                "/api/v1/tenants",
                &admin,
                Some(&json!({"id": tenant, "slug": "bench", "name": "Bench"})),
            )
            .await;
        assert!(created, "the bench tenant is created");
        let tenant_admin = platform.token(Role::TenantAdmin, Some(&tenant.to_string()));
        for name in &names[group..] {
            let query = format!(r#"{{ plugin(id: "{name}") {{ status }} }}"#);
            api.until_visible(&query, |r| r["data"]["plugin"]["status"] == "ACTIVE")
                .await;
            let enable = format!("/api/v1/tenant/plugins/{name}/enable");
            assert!(
                api.command(Method::POST, &enable, &tenant_admin, None)
                    .await,
                "{name} is enabled for the tenant"
            );
        }
        let flags = |names: &[String]| {
            Arc::new(
                names
                    .iter()
                    .map(|n| (n.clone(), AtomicBool::new(true)))
                    .collect::<Vec<_>>(),
            )
        };
        Self {
            api: api.clone(),
            tenant,
            tenant_admin,
            run: uuid::Uuid::now_v7().simple().to_string()[20..].to_owned(),
            sent: AtomicU64::new(0),
            group,
            toggled: flags(&names[..group]),
            configured: Arc::new(names[group..2 * group].to_vec()),
            tenant_toggled: flags(&names[2 * group..]),
        }
    }

    /// The next command of the mix, ready to send: whether it was accepted, and its change.
    pub fn command(&self) -> (impl Future<Output = bool> + Send + 'static, Change) {
        let i = self.sent.fetch_add(1, Ordering::SeqCst);
        let api = self.api.clone();
        let slot = usize::try_from(i / 4).unwrap_or(0) % self.group;
        let (method, path, token, body, change) = match i % 4 {
            0 => {
                let plugin = format!("reg-{}-{i}", self.run);
                let body = manifest(&plugin, "1.0.0");
                (
                    Method::POST,
                    "/api/v1/plugins".to_owned(),
                    api.super_admin.clone(),
                    Some(body),
                    Change::Registered { plugin },
                )
            }
            1 => {
                let (plugin, active) = &self.toggled[slot];
                let was_active = active.fetch_xor(true, Ordering::SeqCst);
                let (verb, status) = if was_active {
                    ("disable", "DISABLED")
                } else {
                    ("enable", "ACTIVE")
                };
                let path = format!("/api/v1/plugins/{plugin}/{verb}");
                (
                    Method::POST,
                    path,
                    api.super_admin.clone(),
                    None,
                    Change::PluginStatus {
                        plugin: plugin.clone(),
                        status,
                    },
                )
            }
            2 => {
                let plugin = self.configured[slot].clone();
                let configuration = json!({"revision": i});
                let path = format!("/api/v1/tenant/plugins/{plugin}/config");
                let body = json!({"configuration": configuration});
                (
                    Method::PUT,
                    path,
                    self.tenant_admin.clone(),
                    Some(body),
                    Change::Configured {
                        plugin,
                        configuration,
                    },
                )
            }
            _ => {
                let (plugin, enabled) = &self.tenant_toggled[slot];
                let was_enabled = enabled.fetch_xor(true, Ordering::SeqCst);
                let verb = if was_enabled { "disable" } else { "enable" };
                let path = format!("/api/v1/tenant/plugins/{plugin}/{verb}");
                (
                    Method::POST,
                    path,
                    self.tenant_admin.clone(),
                    None,
                    Change::TenantPlugin {
                        plugin: plugin.clone(),
                        enabled: !was_enabled,
                    },
                )
            }
        };
        let sent = async move { api.command(method, &path, &token, body.as_ref()).await };
        (sent, change)
    }

    /// Waits until GraphQL shows `change`.
    pub async fn visible(&self, change: &Change) {
        match change {
            Change::Registered { plugin } => {
                let query = format!(r#"{{ plugin(id: "{plugin}") {{ id }} }}"#);
                self.api
                    .until_visible(&query, |r| !r["data"]["plugin"].is_null())
                    .await;
            }
            Change::PluginStatus { plugin, status } => {
                let query = format!(r#"{{ plugin(id: "{plugin}") {{ status }} }}"#);
                self.api
                    .until_visible(&query, |r| r["data"]["plugin"]["status"] == *status)
                    .await;
            }
            Change::TenantPlugin { plugin, enabled } => {
                let plugin = plugin.clone();
                self.until_tenant_plugin(move |p| {
                    p["pluginId"] == plugin.as_str() && p["enabled"] == *enabled
                })
                .await;
            }
            Change::Configured {
                plugin,
                configuration,
            } => {
                let plugin = plugin.clone();
                let configuration = configuration.clone();
                self.until_tenant_plugin(move |p| {
                    p["pluginId"] == plugin.as_str() && p["configuration"] == configuration
                })
                .await;
            }
        }
    }

    async fn until_tenant_plugin(&self, matches: impl Fn(&Value) -> bool) {
        let query = format!(
            r#"{{ tenant(id: "{}") {{ plugins {{ pluginId enabled configuration }} }} }}"#,
            self.tenant
        );
        self.api
            .until_visible(&query, |reply| {
                reply["data"]["tenant"]["plugins"]
                    .as_array()
                    .is_some_and(|plugins| plugins.iter().any(&matches))
            })
            .await;
    }
}
