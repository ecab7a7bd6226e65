//! Demo data for `cargo xtask up`: the JSON files under `xtask/demo/`, sent once per data
//! directory through the platform's own API, in file-name order (tenants first, then plugins,
//! dependencies before their dependents), then the example plugins of `examples/`, run
//! for real ([`crate::example_plugins`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use reqwest::StatusCode;
use serde_json::Value;

use crate::example_plugins::EXAMPLES;
use crate::procs::Stop;
use crate::services::done;
use infra::auth::Role;

/// What is sent where: the folder under `xtask/demo/` and the endpoint its files go to.
const BATCHES: [(&str, &str); 2] = [
    ("tenants", "/api/v1/tenants"),
    ("plugins", "/api/v1/plugins"),
];

/// The demo tenant `acme` (`xtask/demo/tenants/01-acme.json`), named in the banner.
pub const ACME: &str = "019ae8a0-0000-7000-8000-00000000ac3e";

fn demo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("demo")
}

fn marker(data_dir: &Path) -> PathBuf {
    data_dir.join("seeded")
}

pub fn already_seeded(data_dir: &Path) -> bool {
    marker(data_dir).exists()
}

/// Forgets that the demo data was sent (and under which keys): for a new, empty log.
pub fn forget(data_dir: &Path) -> Result<()> {
    for path in [marker(data_dir), data_dir.join("installation-id")] {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                return Err(error).with_context(|| format!("cannot remove {}", path.display()));
            }
        }
    }
    Ok(())
}

/// Sends the demo's requests as a super admin (or a tenant's admin), each under an
/// Idempotency-Key that is stable for this data directory.
pub struct Demo<'a> {
    stop: &'a Stop,
    client: reqwest::Client,
    base_url: &'a str,
    secret: &'a str,
    installation: String,
}

impl Demo<'_> {
    fn token(&self, tenant: Option<&str>) -> Result<String> {
        match tenant {
            None => crate::token::issue(self.secret, "xtask-demo", Role::SuperAdmin, None, 1),
            Some(tenant) => crate::token::issue(
                self.secret,
                "xtask-demo",
                Role::TenantAdmin,
                Some(tenant.to_owned()),
                1,
            ),
        }
    }

    /// `POST path` with `body`; "already done" (409) is fine. `what` names the request in
    /// its key and in what is printed.
    pub async fn post(
        &self,
        path: &str,
        body: &Value,
        what: &str,
        tenant: Option<&str>,
    ) -> Result<StatusCode> {
        let url = format!("{}{path}", self.base_url);
        // Stable for this data directory (a retry is recognised), fresh for a new one (a
        // key remembered by Redis from an older data directory does not swallow the call).
        let key = format!("demo-{what}-{}", self.installation);
        let request = self
            .client
            .post(&url)
            .bearer_auth(self.token(tenant)?)
            .header("Idempotency-Key", key)
            .json(body)
            .send();
        let response = self
            .stop
            .or_interrupted(request)
            .await?
            .with_context(|| format!("POST {url} ({what}) failed"))?;
        let status = response.status();
        let text = self
            .stop
            .or_interrupted(response.text())
            .await?
            .unwrap_or_default();
        match status {
            StatusCode::OK | StatusCode::CREATED | StatusCode::ACCEPTED | StatusCode::CONFLICT => {
                Ok(status)
            }
            _ => bail!("POST {url} ({what}) answered {status}: {}", text.trim()),
        }
    }

    /// A GraphQL query as a super admin; the whole answer.
    pub async fn graphql(&self, query: &Value) -> Result<Value> {
        let url = format!("{}/graphql", self.base_url);
        let request = self
            .client
            .post(&url)
            .bearer_auth(self.token(None)?)
            .json(query)
            .send();
        let response = self
            .stop
            .or_interrupted(request)
            .await?
            .with_context(|| format!("POST {url} failed"))?;
        self.stop
            .or_interrupted(response.json::<Value>())
            .await?
            .with_context(|| format!("{url} did not answer JSON"))
    }

    pub async fn pause(&self, duration: Duration) -> Result<()> {
        self.stop.sleep(duration).await
    }
}

impl<'a> Demo<'a> {
    /// The demo's client of the platform at `base_url`, with tokens signed by `secret`.
    pub fn new(
        stop: &'a Stop,
        base_url: &'a str,
        secret: &'a str,
        data_dir: &Path,
    ) -> Result<Self> {
        Ok(Self {
            stop,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .context("cannot build the HTTP client")?,
            base_url,
            secret,
            installation: installation_id(data_dir)?,
        })
    }
}

/// Sends every demo file, then runs the example plugins, then writes the `seeded` marker.
pub async fn seed(demo: &Demo<'_>, data_dir: &Path) -> Result<()> {
    println!("▶ sending the demo data from {}", demo_dir().display());
    let mut tenants = Vec::new();
    for (folder, endpoint) in BATCHES {
        for file in json_files(&demo_dir().join(folder))? {
            let body: Value = serde_json::from_str(
                &std::fs::read_to_string(&file)
                    .with_context(|| format!("cannot read {}", file.display()))?,
            )
            .with_context(|| format!("{} is not valid JSON", file.display()))?;
            let stem = file
                .file_stem()
                .and_then(|stem| stem.to_str())
                .unwrap_or("demo");
            let status = demo
                .post(endpoint, &body, &format!("{folder}-{stem}"), None)
                .await?;
            let already = if status == StatusCode::CONFLICT {
                " (already there)"
            } else {
                ""
            };
            println!("  {folder}/{stem}.json → {status}{already}");
            if folder == "tenants" {
                tenants.extend(body["id"].as_str().map(str::to_owned));
            }
        }
    }
    println!("▶ running the example plugins ({})", EXAMPLES.join(", "));
    crate::example_plugins::run(demo, data_dir, &tenants).await?;
    std::fs::write(marker(data_dir), b"demo data sent by cargo xtask up\n")
        .with_context(|| format!("cannot write {}", marker(data_dir).display()))?;
    done(format!(
        "demo data sent (delete {} to send it again)",
        marker(data_dir).display()
    ));
    Ok(())
}

/// The `*.json` files of a folder, by name.
fn json_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    Ok(files)
}

/// A random id made once per data directory.
fn installation_id(data_dir: &Path) -> Result<String> {
    let path = data_dir.join("installation-id");
    if let Ok(id) = std::fs::read_to_string(&path) {
        let id = id.trim();
        if !id.is_empty() {
            return Ok(id.to_owned());
        }
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default();
    let id = format!("{:x}{:x}", nanos, std::process::id());
    std::fs::write(&path, &id).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_demo_file_is_json_with_the_fields_the_api_needs() {
        for (folder, _) in BATCHES {
            let files = json_files(&demo_dir().join(folder)).expect("the demo folder exists");
            assert!(files.len() >= 2, "{folder}: at least two demo files");
            for file in files {
                let text = std::fs::read_to_string(&file).expect("readable");
                let value: Value = serde_json::from_str(&text).expect("valid JSON");
                let required: &[&str] = if folder == "tenants" {
                    &["id", "slug", "name"]
                } else {
                    &["id", "name", "version", "runtime", "api", "frontend"]
                };
                for field in required {
                    assert!(value.get(field).is_some(), "{}: `{field}`", file.display());
                }
                if value["slug"] == "acme" {
                    assert_eq!(value["id"], ACME, "the banner names acme's id");
                }
            }
        }
    }
}
