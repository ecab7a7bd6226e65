//! `cargo xtask up`: the whole platform on this machine, in the foreground.
//!
//! tansu (sqlite storage in the data directory), Postgres and Redis (the machine's, or private
//! ones), then `plexica all`; demo data on the first start; Ctrl-C stops everything in reverse
//! order.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::process::Command;

use crate::procs::{Output, Services, Stop, run_checked};
use crate::services::{self, Tansu, answers, done, step};
use crate::settings::{Endpoint, Settings, cargo, jwt_secret, resolve_data_dir, workspace_root};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Build and run the optimised platform (slower first build; target/release)
    #[arg(long)]
    release: bool,
    /// Where tansu's log, private Postgres/Redis data and logs live (relative to the
    /// workspace root)
    #[arg(long, value_name = "DIR", default_value = ".plexica")]
    data_dir: PathBuf,
}

pub async fn run(args: Args) -> Result<()> {
    let data_dir = resolve_data_dir(&args.data_dir)?;
    let settings = Settings::from_env();
    let stop = Stop::install()?;
    let mut services = Services::new(stop.clone());
    let result = bring_up(&mut services, &stop, &settings, &data_dir, args.release).await;
    if result.is_err() && !stop.requested() {
        eprintln!("stopping what was started…");
    }
    services.stop_all().await;
    result
}

async fn bring_up(
    services: &mut Services,
    stop: &Stop,
    settings: &Settings,
    data_dir: &Path,
    release: bool,
) -> Result<()> {
    let logs = data_dir.join("logs");
    let tansu = services::ensure_tansu(stop).await?;
    refuse_busy_ports(settings).await?;

    services::ensure_postgres(services, data_dir, &settings.database_url).await?;
    services::ensure_redis(services, data_dir, &settings.redis_url).await?;

    let broker = Endpoint::parse_host_port(&settings.kafka_brokers).context("KAFKA_BROKERS")?;
    // One machine's tansu: one partition per topic (below); a broker of yours: the platform's 3.
    let mut new_log_partitions = 3;
    if answers(&broker).await {
        done(format!("Kafka: using the broker at {broker}"));
    } else if broker.is_local() {
        new_log_partitions = 1;
        start_afresh_for_a_new_log(data_dir, &settings.database_url).await?;
        services::start_tansu(
            services,
            Tansu {
                binary: &tansu,
                endpoint: &broker,
                // Relative to the working directory: the log lives in <data-dir>/tansu.
                storage_engine: "sqlite://tansu.db",
                cwd: &data_dir.join("tansu"),
                log: logs.join("tansu.log"),
            },
        )
        .await?;
    } else {
        bail!("no Kafka broker answers at {broker} (KAFKA_BROKERS) and it is not this machine");
    }

    let binaries = build_platform(stop, release).await?;
    crate::example_plugins::assemble(data_dir, &binaries)?;
    let binary = binaries.join("plexica");
    let partitions = partitions(settings, new_log_partitions).await?;
    start_platform(
        services,
        settings,
        &binary,
        partitions,
        &logs.join("plexica.log"),
    )?;
    wait_until_ready(services, settings).await?;

    let base = settings.http_base()?;
    let (secret, default_secret) = jwt_secret();
    let demo = crate::demo::Demo::new(stop, &base, &secret, data_dir)?;
    let sent = if demo_needed(data_dir) {
        crate::demo::seed(&demo, data_dir).await
    } else {
        crate::example_plugins::update(&demo, data_dir).await
    };
    if let Err(error) = sent {
        if error.is::<crate::procs::Interrupted>() {
            return Err(error);
        }
        eprintln!(
            "warning: the demo data was not fully sent: {error:#}\n\
             The platform keeps running; the next `cargo xtask up` sends it again."
        );
    }
    print_banner(settings, default_secret)?;
    services.wait_until_stopped().await
}

/// The read models, checkpoints and leases in Postgres, and the demo data, belong to one log.
/// When the log is new (no tansu file yet) a database left from an earlier log would skip the
/// new log's first records, so it starts over too, and the demo data is sent again.
async fn start_afresh_for_a_new_log(data_dir: &Path, database_url: &str) -> Result<()> {
    if data_dir.join("tansu").join("tansu.db").exists() {
        return Ok(());
    }
    crate::demo::forget(data_dir)?;
    if infra::postgres::drop_database(database_url)
        .await
        .context("resetting the database of a new log")?
    {
        done("new log: the database of an earlier log was dropped; it is rebuilt from the new log");
    }
    Ok(())
}

fn demo_needed(data_dir: &Path) -> bool {
    if crate::demo::already_seeded(data_dir) {
        done("demo data: sent on an earlier start");
        return false;
    }
    true
}

/// The platform's own ports must be free, or `plexica all` would fail to bind them.
async fn refuse_busy_ports(settings: &Settings) -> Result<()> {
    let mut ports = vec![("HTTP_LISTEN", settings.http_listen.as_str())];
    if settings.schema_registry_url.is_none() {
        ports.push((
            "SCHEMA_REGISTRY_LISTEN",
            settings.schema_registry_listen.as_str(),
        ));
    }
    for (variable, address) in ports {
        let endpoint =
            Endpoint::parse_host_port(address).with_context(|| format!("{variable}={address}"))?;
        if answers(&endpoint).await {
            bail!(
                "something already listens on {endpoint} ({variable}); is another \
                 `cargo xtask up` running? Stop it or set {variable} to a free address"
            );
        }
    }
    Ok(())
}

/// `cargo build` of the platform and the example plugins, returning the directory of their
/// binaries.
async fn build_platform(stop: &Stop, release: bool) -> Result<PathBuf> {
    let root = workspace_root();
    let mut packages = vec!["plexica".to_owned()];
    packages.extend(crate::example_plugins::packages());
    let shown = format!(
        "cargo build -p {}{}",
        packages.join(" -p "),
        if release { " --release" } else { "" }
    );
    step(format!(
        "compiling the platform and the example plugins ({shown}), ~3 min the first time, \
         seconds afterwards"
    ));
    let mut command = cargo();
    command.arg("build").current_dir(&root);
    for package in &packages {
        command.args(["-p", package]);
    }
    if release {
        command.arg("--release");
    }
    run_checked(stop, &mut command, &shown).await?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(|dir| root.join(dir))
        .unwrap_or_else(|| root.join("target"));
    let binaries = target.join(if release { "release" } else { "debug" });
    if !binaries.join("plexica").is_file() {
        bail!(
            "the build succeeded but {} does not exist",
            binaries.join("plexica").display()
        );
    }
    Ok(binaries)
}

/// The partitions of the log's topics: `KAFKA_PARTITIONS` when set, else those of a log that
/// exists (they cannot change), else `new_log`. On tansu every fetch costs a query per
/// partition, so one machine's new log gets one partition a topic: the commands bench
/// measured 160 commands/s at the knee against 40/s with three (README, "where the time goes").
async fn partitions(settings: &Settings, new_log: usize) -> Result<usize> {
    if let Ok(configured) = std::env::var("KAFKA_PARTITIONS") {
        return configured
            .parse()
            .with_context(|| format!("KAFKA_PARTITIONS `{configured}` is not a number"));
    }
    let prefix = std::env::var("PLEXICA_TOPIC_PREFIX").unwrap_or_default();
    let commands = event_schemas::Topics::new(prefix, 1).commands();
    let on_the_log = infra::kafka::partition_counts(&settings.kafka_brokers, vec![commands])
        .await
        .context("cannot read the log's topics from the broker")?;
    Ok(on_the_log.into_values().next().unwrap_or(new_log))
}

fn start_platform(
    services: &mut Services,
    settings: &Settings,
    binary: &Path,
    partitions: usize,
    log: &Path,
) -> Result<()> {
    step(format!(
        "starting `plexica all` (its output follows and goes to {})",
        log.display()
    ));
    let mut command = Command::new(binary);
    command
        .arg("all")
        .current_dir(workspace_root())
        // What xtask checked or started is what the platform uses.
        .env("KAFKA_BROKERS", &settings.kafka_brokers)
        .env("KAFKA_PARTITIONS", partitions.to_string())
        .env("DATABASE_URL", &settings.database_url)
        .env("REDIS_URL", &settings.redis_url)
        .env("HTTP_LISTEN", &settings.http_listen)
        .env("SCHEMA_REGISTRY_LISTEN", &settings.schema_registry_listen)
        // A developer's webhooks go to services on this machine, unless they say otherwise.
        .env(
            "PLEXICA_WEBHOOK_ALLOW_PRIVATE_NETWORKS",
            std::env::var("PLEXICA_WEBHOOK_ALLOW_PRIVATE_NETWORKS")
                .unwrap_or_else(|_| "true".into()),
        );
    services.spawn(
        "plexica",
        &mut command,
        Output::TerminalAndFile(log.to_path_buf()),
    )
}

/// Polls `GET /ready` until it answers 200, saying what it waits for every few seconds.
async fn wait_until_ready(services: &mut Services, settings: &Settings) -> Result<()> {
    const TIMEOUT: Duration = Duration::from_secs(180);
    let url = format!("{}/ready", settings.http_base()?);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .context("cannot build the HTTP client")?;
    let started = Instant::now();
    let mut next_report = Duration::from_secs(3);
    loop {
        let last = match client.get(&url).send().await {
            Ok(response) if response.status().is_success() => break,
            Ok(response) => {
                let status = response.status();
                let body = response.text().await.unwrap_or_default();
                format!("{status} {}", body.trim())
            }
            Err(error) if error.is_connect() => "not listening yet".to_owned(),
            Err(error) => error.to_string(),
        };
        services.ensure_alive()?;
        let waited = started.elapsed();
        if waited > TIMEOUT {
            bail!("the platform was not ready within {TIMEOUT:?}; last answer of {url}: {last}");
        }
        if waited > next_report {
            println!(
                "  … waiting for {url} to answer 200 (migrations, topics, consumers; {}s, last: {last})",
                waited.as_secs()
            );
            next_report += Duration::from_secs(5);
        }
        services
            .stop_signal()
            .sleep(Duration::from_millis(500))
            .await?;
    }
    done(format!(
        "the platform is ready ({}s)",
        started.elapsed().as_secs()
    ));
    Ok(())
}

fn print_banner(settings: &Settings, default_secret: bool) -> Result<()> {
    let base = settings.http_base()?;
    let registry = settings.schema_registry_display()?;
    println!(
        "\n\
         ════════════════════════════════════════════════════════════════════════\n\
         \x20Plexica is up.  Ctrl-C stops everything.\n\
         \n\
         \x20 GraphQL          {base}/graphql\n\
         \x20 REST API         {base}/api/v1\n\
         \x20 Metrics          {base}/metrics\n\
         \x20 Health / ready   {base}/health  {base}/ready\n\
         \x20 Schema registry  {registry}\n\
         \x20 Kafka (tansu)    {kafka}\n\
         \n\
         \x20A token (valid 12 h):  cargo xtask token --role super_admin\n\
         \x20                       cargo xtask token --role tenant_admin --tenant <TENANT_ID>\n\
         \n\
         \x20Try:\n\
         \x20 TOKEN=$(cargo xtask token --role super_admin 2>/dev/null)\n\
         \x20 curl -s -H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json' \\\n\
         \x20      -d '{{\"query\":\"{{ plugins(first: 10) {{ totalCount edges {{ node {{ id version status }} }} }} }}\"}}' {base}/graphql\n\
         \n\
         \x20The example plugins crm and billing run for the demo tenants (acme is {acme}):\n\
         \x20 ACME=$(cargo xtask token --role tenant_admin --tenant {acme} 2>/dev/null)\n\
         \x20 curl -s -H \"Authorization: Bearer $ACME\" -H 'Content-Type: application/json' \\\n\
         \x20      -d '{{\"name\":\"Ada Lovelace\",\"email\":\"ada@example.com\"}}' {base}/api/plugins/crm/contacts\n\
         \x20 curl -s -H \"Authorization: Bearer $ACME\" {base}/api/plugins/crm/contacts\n\
         ════════════════════════════════════════════════════════════════════════",
        kafka = settings.kafka_brokers,
        acme = crate::demo::ACME,
    );
    if default_secret {
        println!(
            "\n(PLEXICA_JWT_SECRET is not set: the platform and `cargo xtask token` use the \
             public development secret.)"
        );
    }
    Ok(())
}
