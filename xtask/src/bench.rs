//! `cargo xtask bench`: the benchmarks (`tests/benches/platform`) against a broker of their
//! own on tansu's durable sqlite storage, or against `--broker` (Redpanda, Kafka), with the
//! machine's (or `--database-url`'s) Postgres and Redis.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Result, bail};

use crate::procs::{Services, Stop, run_foreground};
use crate::services::{self, Tansu, free_port, step};
use crate::settings::{Endpoint, Settings, cargo, resolve_data_dir, workspace_root};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Tiny sizes and one run, in the test build: checks the harness in under a minute of
    /// measuring; its figures mean little
    #[arg(long)]
    pub quick: bool,
    /// Runs of each scenario; the table shows their median, min and max
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Measure against this Kafka-API broker (e.g. Redpanda) instead of a tansu of its own
    #[arg(long, value_name = "HOST:PORT")]
    pub broker: Option<String>,
    /// Only these groups of scenarios: commands, rebuild, list, dlq (comma-separated)
    #[arg(long, value_name = "GROUPS")]
    pub only: Option<String>,
    /// Postgres server for the bench's databases (default: DATABASE_URL's server)
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// Where private Postgres/Redis data and logs live, when they have to be started
    #[arg(long, value_name = "DIR", default_value = ".plexica")]
    pub data_dir: PathBuf,
}

pub async fn run(args: Args) -> Result<ExitCode> {
    let data_dir = resolve_data_dir(&args.data_dir)?;
    let mut settings = Settings::from_env();
    if let Some(url) = &args.database_url {
        settings.database_url = url.clone();
    }
    let stop = Stop::install()?;
    let mut services = Services::new(stop.clone());
    let result = bench_with_services(&mut services, &settings, &data_dir, &args).await;
    services.stop_all().await;
    result
}

async fn bench_with_services(
    services: &mut Services,
    settings: &Settings,
    data_dir: &Path,
    args: &Args,
) -> Result<ExitCode> {
    services::ensure_postgres(services, data_dir, &settings.database_url).await?;
    services::ensure_redis(services, data_dir, &settings.redis_url).await?;
    // As `cargo xtask up` runs it: one partition a topic on its own tansu.
    let mut partitions = None;
    let broker = match &args.broker {
        Some(broker) => broker.clone(),
        None => {
            partitions = Some(1);
            let tansu = services::ensure_tansu(services.stop_signal()).await?;
            // A fresh durable log: the scenarios measure tansu as `cargo xtask up` runs it.
            let scratch = workspace_root().join("target").join("bench").join("tansu");
            let _ = std::fs::remove_dir_all(&scratch);
            let endpoint = Endpoint {
                host: "127.0.0.1".to_owned(),
                port: free_port()?,
            };
            services::start_tansu(
                services,
                Tansu {
                    binary: &tansu,
                    endpoint: &endpoint,
                    storage_engine: "sqlite://tansu.db",
                    cwd: &scratch,
                    log: data_dir.join("logs").join("tansu-bench.log"),
                },
            )
            .await?;
            endpoint.client_address()
        }
    };
    let plan = Plan {
        quick: args.quick,
        runs: args.runs,
        only: args.only.clone(),
        partitions,
    };
    run_benchmarks(services.stop_signal(), &broker, settings, &plan).await
}

/// What to measure.
pub struct Plan {
    pub quick: bool,
    pub runs: usize,
    pub only: Option<String>,
    /// Partitions of the topics, unless `KAFKA_PARTITIONS` says; the tests' 3 when `None`.
    pub partitions: Option<usize>,
}

impl Plan {
    /// The smoke run of `cargo xtask test`.
    pub fn quick() -> Self {
        Self {
            quick: true,
            runs: 1,
            only: None,
            partitions: None,
        }
    }
}

/// Builds and runs the bench binary against `broker`; used by `cargo xtask test` as well.
pub async fn run_benchmarks(
    stop: &Stop,
    broker: &str,
    settings: &Settings,
    plan: &Plan,
) -> Result<ExitCode> {
    let quick = plan.quick;
    let output = workspace_root()
        .join("target")
        .join("bench")
        .join("results.json");
    let run = format!("b{}", std::process::id());
    let mut bench = cargo();
    // `--workspace` resolves features as the test build does, so the quick run in the test
    // profile reuses the tests' compiled dependencies instead of building them again.
    bench.args(["bench", "--workspace", "--bench", "platform"]);
    if quick {
        bench.args(["--profile", "test"]);
        step(
            "cargo bench --bench platform --profile test -- --quick (builds the bench binary first)",
        );
    } else {
        step(
            "cargo bench --bench platform (a release build first: ~10 min the first time on 2 cores)",
        );
    }
    bench
        .arg("--")
        .current_dir(workspace_root())
        .env("PLEXICA_TEST_KAFKA_BROKERS", broker)
        .env(
            "PLEXICA_TEST_DATABASE_URL",
            crate::test::server_url(&settings.database_url)?,
        )
        .env("PLEXICA_TEST_REDIS_URL", &settings.redis_url)
        .env(infra::testing::TEST_RUN_VAR, &run)
        .env("BENCH_OUTPUT", &output)
        .env("BENCH_RUNS", plan.runs.to_string())
        .env("BENCH_REVISION", revision().await);
    if quick {
        bench.env("BENCH_QUICK", "true");
    }
    if let Some(only) = &plan.only {
        bench.env("BENCH_ONLY", only);
    }
    if let Some(partitions) = plan.partitions
        && std::env::var_os("KAFKA_PARTITIONS").is_none()
    {
        bench.env("KAFKA_PARTITIONS", partitions.to_string());
    }
    let status = run_foreground(stop, &mut bench, "cargo bench").await?;
    match infra::testing::drop_test_databases(
        &crate::test::server_url(&settings.database_url)?,
        &run,
    )
    .await
    {
        Ok(_) => {}
        Err(error) => eprintln!("warning: the bench's databases were not dropped: {error}"),
    }
    if !status.success() {
        bail!("the benchmarks failed ({status}); the platform's logs are in target/bench/logs");
    }
    Ok(ExitCode::SUCCESS)
}

/// The commit measured, with `+dirty` when the work tree has changes.
async fn revision() -> String {
    let git = |args: &'static [&'static str]| async move {
        tokio::process::Command::new("git")
            .args(args)
            .current_dir(workspace_root())
            .output()
            .await
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let head = git(&["rev-parse", "--short", "HEAD"])
        .await
        .unwrap_or_else(|| "unknown".to_owned());
    let dirty = git(&["status", "--porcelain"])
        .await
        .is_some_and(|s| !s.is_empty());
    if dirty { format!("{head}+dirty") } else { head }
}
