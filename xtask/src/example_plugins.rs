//! The example plugins of `examples/` (`crm`, `billing`) in `cargo xtask up`: each is
//! assembled into a bundle as a plugin author would ship it (its binary beside its
//! `migrations/`), then the demo registers, installs and enables it, and enables it for every
//! demo tenant, so that a tenant admin can call `/api/plugins/crm/contacts` right after `up`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::demo::Demo;
use crate::settings::workspace_root;

/// The example plugins in the order they are installed (a dependency before its dependents):
/// the plugin id, which is also the name of its binary and of its folder under `examples/`.
pub const EXAMPLES: [&str; 2] = ["crm", "billing"];

/// How long an install, an enable or an update may take (each runs the migrations in every
/// tenant's schema and starts the plugin: seconds).
const TIMEOUT: Duration = Duration::from_secs(120);

/// The `cargo build` packages of the examples.
pub fn packages() -> impl Iterator<Item = String> {
    EXAMPLES.iter().map(|id| format!("plexica-example-{id}"))
}

fn source(id: &str) -> PathBuf {
    workspace_root().join("examples").join(id)
}

pub fn bundles_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("bundles")
}

/// Lays out `<data-dir>/bundles/<id>/` for each example: the binary built in `binaries`, and
/// its migrations.
pub fn assemble(data_dir: &Path, binaries: &Path) -> Result<()> {
    for id in EXAMPLES {
        let bundle = bundles_dir(data_dir).join(id);
        if bundle.exists() {
            std::fs::remove_dir_all(&bundle)
                .with_context(|| format!("cannot remove {}", bundle.display()))?;
        }
        let migrations = bundle.join("migrations");
        std::fs::create_dir_all(&migrations)
            .with_context(|| format!("cannot create {}", migrations.display()))?;
        // A copy, not a link: the bundle holds the binary its version was built as.
        std::fs::copy(binaries.join(id), bundle.join(id))
            .with_context(|| format!("cannot copy the `{id}` binary into {}", bundle.display()))?;
        let from = source(id).join("migrations");
        for entry in
            std::fs::read_dir(&from).with_context(|| format!("cannot list {}", from.display()))?
        {
            let path = entry?.path();
            if let Some(name) = path.file_name() {
                std::fs::copy(&path, migrations.join(name))
                    .with_context(|| format!("cannot copy {}", path.display()))?;
            }
        }
    }
    Ok(())
}

/// The example's manifest, its bundle pointed at the assembled one.
fn manifest(data_dir: &Path, id: &str) -> Result<Value> {
    let path = source(id).join("manifest.json");
    let mut manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?,
    )
    .with_context(|| format!("{} is not valid JSON", path.display()))?;
    let bundle = std::path::absolute(bundles_dir(data_dir).join(id))
        .context("cannot make the bundle's path absolute")?;
    manifest["runtime"]["bundle"] = json!(format!("file://{}", bundle.display()));
    Ok(manifest)
}

/// Registers, installs and enables each example, then enables it for `tenants`. Each step
/// accepts "already done" (409), so that a demo interrupted half way is finished by the next
/// `up`.
pub async fn run(demo: &Demo<'_>, data_dir: &Path, tenants: &[String]) -> Result<()> {
    for id in EXAMPLES {
        let manifest = manifest(data_dir, id)?;
        demo.post(
            "/api/v1/plugins",
            &manifest,
            &format!("register-{id}"),
            None,
        )
        .await?;
        demo.post(
            &format!("/api/v1/plugins/{id}/install"),
            &json!({}),
            &format!("install-{id}"),
            None,
        )
        .await?;
        wait_for_status(demo, id, &["INSTALLED", "ACTIVE"]).await?;
        demo.post(
            &format!("/api/v1/plugins/{id}/enable"),
            &json!({}),
            &format!("enable-{id}"),
            None,
        )
        .await?;
        wait_for_status(demo, id, &["ACTIVE"]).await?;
        for tenant in tenants {
            demo.post(
                &format!("/api/v1/tenant/plugins/{id}/enable"),
                &json!({}),
                &format!("enable-{id}-for-{tenant}"),
                Some(tenant),
            )
            .await?;
        }
        println!("  {id}: running, enabled for {} tenants", tenants.len());
    }
    Ok(())
}

/// A data directory seeded by an older checkout runs older versions of the examples: each is
/// updated to its manifest's version (its new migrations run in every tenant's schema).
pub async fn update(demo: &Demo<'_>, data_dir: &Path) -> Result<()> {
    for id in EXAMPLES {
        update_to(demo, id, &manifest(data_dir, id)?).await?;
    }
    Ok(())
}

async fn update_to(demo: &Demo<'_>, id: &str, manifest: &Value) -> Result<()> {
    let wanted = manifest["version"]
        .as_str()
        .context("the manifest names no version")?;
    let before = Shown::of(demo, id).await?;
    // The demo's examples are ACTIVE; one an admin uninstalled or disabled stays as it is.
    let (Some(running), Some("ACTIVE")) = (before.version.as_deref(), before.status.as_deref())
    else {
        return Ok(());
    };
    let newer = |a: &str, b: &str| match (semver::Version::parse(a), semver::Version::parse(b)) {
        (Ok(a), Ok(b)) => a > b,
        _ => false,
    };
    if !newer(wanted, running) {
        if running != wanted {
            println!(
                "  {id}: runs {running}, newer than this checkout's {wanted}; left as it is \
                 (a plugin is never downgraded)"
            );
        }
        return Ok(());
    }
    println!("▶ updating the example {id} from {running} to {wanted}");
    let status = demo
        .post(
            &format!("/api/v1/plugins/{id}/update"),
            manifest,
            &format!("update-{id}-{wanted}"),
            None,
        )
        .await?;
    if status == reqwest::StatusCode::CONFLICT && Shown::of(demo, id).await?.pending.is_none() {
        bail!("the platform refused to update {id} to {wanted} (409)");
    }
    let started = Instant::now();
    loop {
        let shown = Shown::of(demo, id).await?;
        if shown.version.as_deref() == Some(wanted) {
            println!("  {id}: updated to {wanted}");
            return Ok(());
        }
        if let Some(error) = shown.last_error.filter(|error| error.contains(wanted)) {
            bail!("plugin {id} was not updated to {wanted}: {error}");
        }
        if started.elapsed() > TIMEOUT {
            bail!(
                "plugin {id} runs {}, not {wanted}, {TIMEOUT:?} after its update (see \
                 `lastError` of the plugin in GraphQL and .plexica/plugins/logs/{id}.log)",
                shown.version.unwrap_or_else(|| "no version".to_owned())
            );
        }
        demo.pause(Duration::from_millis(300)).await?;
    }
}

/// What the catalog shows of a plugin.
struct Shown {
    version: Option<String>,
    status: Option<String>,
    /// The version an update is installing.
    pending: Option<String>,
    last_error: Option<String>,
}

impl Shown {
    async fn of(demo: &Demo<'_>, id: &str) -> Result<Self> {
        let query = json!({
            "query": format!(
                "{{ plugin(id: \"{id}\") {{ version status pendingVersion lastError }} }}"
            )
        });
        let answer = demo.graphql(&query).await?;
        let field = |name: &str| answer["data"]["plugin"][name].as_str().map(str::to_owned);
        Ok(Self {
            version: field("version"),
            status: field("status"),
            pending: field("pendingVersion"),
            last_error: field("lastError"),
        })
    }
}

/// Polls GraphQL until plugin `id` has one of `wanted` statuses (an install runs the
/// migrations in every tenant's schema and starts the plugin: seconds).
async fn wait_for_status(demo: &Demo<'_>, id: &str, wanted: &[&str]) -> Result<()> {
    let started = Instant::now();
    loop {
        let status = Shown::of(demo, id)
            .await?
            .status
            .unwrap_or_else(|| "unknown".to_owned());
        if wanted.contains(&status.as_str()) {
            return Ok(());
        }
        if started.elapsed() > TIMEOUT {
            bail!(
                "plugin {id} is {status}, not {} after {TIMEOUT:?} (see its log under \
                 .plexica/plugins/logs/{id}.log and `operation(id)` in GraphQL)",
                wanted.join(" or ")
            );
        }
        demo.pause(Duration::from_millis(300)).await?;
    }
}
