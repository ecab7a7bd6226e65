//! Demo data for `cargo xtask up`: the JSON files under `xtask/demo/`, sent once per data
//! directory through the platform's own API, in file-name order (tenants first, then plugins,
//! dependencies before their dependents).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use reqwest::StatusCode;
use serde_json::Value;

use crate::procs::Stop;
use crate::services::done;

/// What is sent where: the folder under `xtask/demo/` and the endpoint its files go to.
const BATCHES: [(&str, &str); 2] = [
    ("tenants", "/api/v1/tenants"),
    ("plugins", "/api/v1/plugins"),
];

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

/// Sends every demo file, then writes the `seeded` marker.
pub async fn seed(stop: &Stop, base_url: &str, token: &str, data_dir: &Path) -> Result<()> {
    let installation = installation_id(data_dir)?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .context("cannot build the HTTP client")?;
    println!("▶ sending the demo data from {}", demo_dir().display());
    for (folder, endpoint) in BATCHES {
        let url = format!("{base_url}{endpoint}");
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
            // Stable for this data directory (a retry is recognised), fresh for a new one (a
            // key remembered by Redis from an older data directory does not swallow the call).
            let key = format!("demo-{folder}-{stem}-{installation}");
            let request = client
                .post(&url)
                .bearer_auth(token)
                .header("Idempotency-Key", key)
                .json(&body)
                .send();
            let response = stop
                .or_interrupted(request)
                .await?
                .with_context(|| format!("POST {url} ({folder}/{stem}.json) failed"))?;
            let status = response.status();
            let text = stop
                .or_interrupted(response.text())
                .await?
                .unwrap_or_default();
            match status {
                StatusCode::OK | StatusCode::CREATED | StatusCode::ACCEPTED => {
                    println!("  {folder}/{stem}.json → {status}");
                }
                StatusCode::CONFLICT => {
                    println!("  {folder}/{stem}.json → {status} (already there)");
                }
                _ => bail!(
                    "POST {url} with {folder}/{stem}.json answered {status}: {}",
                    text.trim()
                ),
            }
        }
    }
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
            assert!(files.len() >= 3, "{folder}: at least three demo files");
            for file in files {
                let text = std::fs::read_to_string(&file).expect("readable");
                let value: Value = serde_json::from_str(&text).expect("valid JSON");
                let required: &[&str] = if folder == "tenants" {
                    &["slug", "name"]
                } else {
                    &["id", "name", "version", "runtime", "api", "frontend"]
                };
                for field in required {
                    assert!(value.get(field).is_some(), "{}: `{field}`", file.display());
                }
            }
        }
    }
}
