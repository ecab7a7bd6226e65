//! `cargo xtask test`: every test of the workspace against real services — a private tansu
//! (memory storage, a free port), the machine's (or private) Postgres and Redis.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use reqwest::Url;

use crate::procs::{Services, Stop, run_checked, run_foreground};
use crate::services::{self, Tansu, done, free_port, step};
use crate::settings::{Endpoint, Settings, cargo, resolve_data_dir, workspace_root};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where private Postgres/Redis data and logs live, when they have to be started
    /// (relative to the workspace root)
    #[arg(long, value_name = "DIR", default_value = ".plexica")]
    data_dir: PathBuf,
    /// Extra arguments for `cargo nextest run` (after `--`)
    #[arg(last = true, value_name = "NEXTEST_ARGS")]
    nextest_args: Vec<String>,
}

pub async fn run(args: Args) -> Result<ExitCode> {
    let data_dir = resolve_data_dir(&args.data_dir)?;
    let settings = Settings::from_env();
    let stop = Stop::install()?;
    // Formatting first: it takes a second, and a change rustfmt would rewrite is not done.
    step("cargo fmt --all -- --check");
    run_checked(
        &stop,
        cargo().args(["fmt", "--all", "--", "--check"]),
        "cargo fmt --check (run `cargo fmt --all`)",
    )
    .await?;
    // The lint gate: a warning anywhere, tests and benches included, fails the run.
    step("cargo clippy --workspace --all-targets -- -D warnings");
    run_checked(
        &stop,
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
        "cargo clippy (fix the warnings it names)",
    )
    .await?;
    let tansu = services::ensure_tansu(&stop).await?;
    ensure_nextest(&stop).await?;
    let python = ensure_python_tools(&stop, &data_dir).await?;

    let scratch = std::env::temp_dir().join(format!("plexica-test-{}", std::process::id()));
    let mut services = Services::new(stop.clone());
    let tools = Tools {
        tansu: &tansu,
        schemathesis: &python.schemathesis,
        python: &python.python,
    };
    let result = run_tests(&mut services, &settings, &tools, &data_dir, &scratch, &args).await;
    services.stop_all().await;
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

/// The programs the tests run, installed by `cargo xtask test` when missing.
struct Tools<'a> {
    tansu: &'a std::path::Path,
    schemathesis: &'a std::path::Path,
    /// The Python of the project's virtual environment, with the Kafka and Avro clients a
    /// Python plugin on the log uses.
    python: &'a std::path::Path,
}

async fn run_tests(
    services: &mut Services,
    settings: &Settings,
    tools: &Tools<'_>,
    data_dir: &std::path::Path,
    scratch: &std::path::Path,
    args: &Args,
) -> Result<ExitCode> {
    services::ensure_postgres(services, data_dir, &settings.database_url).await?;
    services::ensure_redis(services, data_dir, &settings.redis_url).await?;

    // A broker of the tests' own, empty at every run.
    let broker = Endpoint {
        host: "127.0.0.1".to_owned(),
        port: free_port()?,
    };
    services::start_tansu(
        services,
        Tansu {
            binary: tools.tansu,
            endpoint: &broker,
            storage_engine: "memory://tansu/",
            cwd: scratch,
            log: data_dir.join("logs").join("tansu-test.log"),
        },
    )
    .await?;

    let mut shown = vec!["cargo nextest run --workspace --no-fail-fast".to_owned()];
    shown.extend(args.nextest_args.iter().cloned());
    step(format!(
        "{} (compiles the tests first: ~3 min the first time)",
        shown.join(" ")
    ));
    // Another run may share the Postgres server (a second worktree): drop only our databases.
    let run = format!("r{}", std::process::id());
    let mut nextest = cargo();
    nextest
        .args(["nextest", "run", "--workspace", "--no-fail-fast"])
        .args(&args.nextest_args)
        .current_dir(workspace_root())
        .env("PLEXICA_TEST_KAFKA_BROKERS", broker.client_address())
        .env(
            "PLEXICA_TEST_DATABASE_URL",
            server_url(&settings.database_url)?,
        )
        .env("PLEXICA_TEST_REDIS_URL", &settings.redis_url)
        .env(infra::testing::TEST_RUN_VAR, &run)
        // For the tests that need a broker of their own (the durable engine, restarts).
        .env("PLEXICA_TEST_TANSU", tools.tansu)
        // The API fuzz test (tests/tests/openapi_fuzz.rs).
        .env("PLEXICA_TEST_SCHEMATHESIS", tools.schemathesis)
        // The Python plugin that publishes with stock clients (tests/plugins/events-py).
        .env("PLEXICA_TEST_PYTHON", tools.python);
    let status = run_foreground(services.stop_signal(), &mut nextest, "cargo nextest").await?;
    // Each test made a database of its own; leave the server as it was found.
    match infra::testing::drop_test_databases(&server_url(&settings.database_url)?, &run).await {
        Ok(count) => done(format!("dropped the {count} databases the tests created")),
        Err(error) => eprintln!("warning: the tests' databases were not dropped: {error}"),
    }

    if !status.success() {
        return Ok(exit_code(status));
    }
    // The benchmark harness at tiny sizes, so that it never rots; its figures are not checked.
    crate::bench::run_benchmarks(
        services.stop_signal(),
        &broker.client_address(),
        settings,
        &crate::bench::Plan::quick(),
    )
    .await
}

/// The DATABASE_URL's server, with the `postgres` database (tests create their own).
pub fn server_url(database_url: &str) -> Result<String> {
    let mut url = Url::parse(database_url).context("DATABASE_URL is not a URL")?;
    url.set_path("/postgres");
    Ok(url.to_string())
}

fn exit_code(status: std::process::ExitStatus) -> ExitCode {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        (None, Some(signal)) => ExitCode::from(u8::try_from(128 + signal).unwrap_or(1)),
        (None, None) => ExitCode::FAILURE,
    }
}

/// The Python packages the tests use, from PyPI, pinned: schemathesis (the API fuzz test's
/// fuzzer), and the stock Kafka and Avro clients of the Python plugin on the log.
const PYTHON_PACKAGES: [&str; 3] = [
    "schemathesis==4.32.5",
    "confluent-kafka==2.16.1",
    "fastavro==1.13.1",
];

/// Where the tests find the Python tools.
struct PythonTools {
    schemathesis: PathBuf,
    python: PathBuf,
}

/// The project's own virtual environment (`<data dir>/venv`) with [`PYTHON_PACKAGES`],
/// installed there from PyPI when one is missing or of another version (~30 s, once).
async fn ensure_python_tools(stop: &Stop, data_dir: &std::path::Path) -> Result<PythonTools> {
    let venv = data_dir.join("venv");
    let tools = PythonTools {
        schemathesis: venv.join("bin").join("schemathesis"),
        python: venv.join("bin").join("python"),
    };
    let frozen = tokio::process::Command::new(venv.join("bin").join("pip"))
        .args(["freeze", "--all"])
        .output()
        .await
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).to_lowercase())
        .unwrap_or_default();
    let installed = PYTHON_PACKAGES
        .iter()
        .all(|package| frozen.lines().any(|line| line == package.to_lowercase()));
    if installed {
        return Ok(tools);
    }
    step(format!(
        "installing {} into {} (python3 -m venv, pip), ~30 s, once",
        PYTHON_PACKAGES.join(" "),
        venv.display()
    ));
    if !venv.join("bin").join("pip").exists() {
        run_checked(
            stop,
            tokio::process::Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv),
            "python3 -m venv (needs python3 and its venv module: apt-get install python3-venv)",
        )
        .await?;
    }
    run_checked(
        stop,
        tokio::process::Command::new(venv.join("bin").join("pip"))
            .args(["install", "--quiet"])
            .args(PYTHON_PACKAGES),
        "pip install (the tests' Python packages)",
    )
    .await?;
    Ok(tools)
}

/// Installs cargo-nextest when `cargo nextest --version` fails.
async fn ensure_nextest(stop: &Stop) -> Result<()> {
    let present = cargo()
        .args(["nextest", "--version"])
        .output()
        .await
        .is_ok_and(|output| output.status.success());
    if present {
        return Ok(());
    }
    step(
        "installing cargo-nextest (cargo install cargo-nextest --locked), \
         ~5 min on 2 cores, once; cargo's output follows",
    );
    run_checked(
        stop,
        cargo().args(["install", "cargo-nextest", "--locked"]),
        "cargo install cargo-nextest",
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_database_url_points_at_the_postgres_database() {
        assert_eq!(
            server_url("postgres://postgres@127.0.0.1:5432/plexica").ok(),
            Some("postgres://postgres@127.0.0.1:5432/postgres".to_owned())
        );
        assert_eq!(
            server_url("postgres://u:p@db:5433/x?sslmode=disable").ok(),
            Some("postgres://u:p@db:5433/postgres?sslmode=disable".to_owned())
        );
    }
}
