//! Finding, installing and starting what the platform runs on: tansu (the Kafka-API broker),
//! PostgreSQL and Redis. A server that already answers is used as it is; otherwise, for a local
//! address, a private one is started from the machine's binaries inside the data directory.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::process::Command;

use crate::procs::{Output, Services, Stop, run_checked};
use crate::settings::{Endpoint, cargo};

pub const TANSU_VERSION: &str = "0.6.0";
const TANSU_INSTALL_ARGS: [&str; 7] = [
    "install",
    "tansu",
    "--locked",
    "--version",
    TANSU_VERSION,
    "--features",
    "dynostore,libsql",
];

/// Prints a step that takes a while, before it starts.
pub fn step(message: impl std::fmt::Display) {
    println!("▶ {message}");
}

/// Prints a step's outcome.
pub fn done(message: impl std::fmt::Display) {
    println!("✓ {message}");
}

// ---------------------------------------------------------------------------------------------
// Programs
// ---------------------------------------------------------------------------------------------

/// `name` on PATH, else in one of `extra_dirs`.
pub fn find_program(name: &str, extra_dirs: &[PathBuf]) -> Option<PathBuf> {
    let path_dirs = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    path_dirs
        .iter()
        .chain(extra_dirs)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// Where `cargo install` puts binaries.
fn cargo_bin_dir() -> Vec<PathBuf> {
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        return vec![PathBuf::from(home).join("bin")];
    }
    std::env::var_os("HOME")
        .map(|home| vec![PathBuf::from(home).join(".cargo").join("bin")])
        .unwrap_or_default()
}

async fn version_of(program: &Path) -> Option<String> {
    let output = tokio::time::timeout(
        Duration::from_secs(10),
        Command::new(program).arg("--version").output(),
    )
    .await
    .ok()?
    .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// The tansu binary, installed first when missing or not version 0.6.0.
pub async fn ensure_tansu(stop: &Stop) -> Result<PathBuf> {
    if let Some(binary) = find_program("tansu", &cargo_bin_dir()) {
        match version_of(&binary).await {
            Some(version) if version.split_whitespace().any(|word| word == TANSU_VERSION) => {
                return Ok(binary);
            }
            Some(version) => println!(
                "tansu at {} reports `{version}`; Plexica needs {TANSU_VERSION}.",
                binary.display()
            ),
            None => println!("tansu at {} does not answer `--version`.", binary.display()),
        }
    }
    step(format!(
        "installing tansu {TANSU_VERSION}, the Kafka-API broker used on one machine:\n  \
         cargo {}\n  It compiles from source: ~12-20 min on 2 cores, once. cargo's output follows.",
        TANSU_INSTALL_ARGS.join(" ")
    ));
    run_checked(
        stop,
        cargo().args(TANSU_INSTALL_ARGS),
        "cargo install tansu",
    )
    .await?;
    let Some(binary) = find_program("tansu", &cargo_bin_dir()) else {
        bail!("tansu was installed but is neither on PATH nor in ~/.cargo/bin");
    };
    match version_of(&binary).await {
        Some(version) if version.split_whitespace().any(|word| word == TANSU_VERSION) => {
            done(format!("installed {version}"));
            Ok(binary)
        }
        other => bail!(
            "after installing, {} reports {other:?}, not {TANSU_VERSION}; \
             is another tansu earlier on PATH?",
            binary.display()
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Ports
// ---------------------------------------------------------------------------------------------

/// Whether something accepts TCP connections at `endpoint`.
pub async fn answers(endpoint: &Endpoint) -> bool {
    let connect = tokio::net::TcpStream::connect((endpoint.host.as_str(), endpoint.port));
    matches!(
        tokio::time::timeout(Duration::from_secs(1), connect).await,
        Ok(Ok(_))
    )
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .context("cannot bind 127.0.0.1:0 to find a free port")?;
    Ok(listener
        .local_addr()
        .context("cannot read the bound address")?
        .port())
}

/// Waits until `endpoint` accepts connections, failing if a started service dies meanwhile.
pub async fn wait_for_port(
    services: &mut Services,
    what: &str,
    endpoint: &Endpoint,
    timeout: Duration,
) -> Result<()> {
    let started = Instant::now();
    let mut next_report = Duration::from_secs(5);
    loop {
        if answers(endpoint).await {
            return Ok(());
        }
        services.ensure_alive()?;
        let waited = started.elapsed();
        if waited > timeout {
            bail!("{what} did not accept connections at {endpoint} within {timeout:?}");
        }
        if waited > next_report {
            println!(
                "  … waiting for {what} to accept connections at {endpoint} ({}s)",
                waited.as_secs()
            );
            next_report += Duration::from_secs(5);
        }
        services
            .stop_signal()
            .sleep(Duration::from_millis(200))
            .await?;
    }
}

// ---------------------------------------------------------------------------------------------
// tansu
// ---------------------------------------------------------------------------------------------

/// How to run one tansu broker.
pub struct Tansu<'a> {
    pub binary: &'a Path,
    /// Where it listens and what it advertises to clients.
    pub endpoint: &'a Endpoint,
    /// `sqlite://tansu.db` (relative to `cwd`) or `memory://tansu/`.
    pub storage_engine: &'a str,
    pub cwd: &'a Path,
    pub log: PathBuf,
}

/// Starts tansu as a service and waits for its Kafka port.
pub async fn start_tansu(services: &mut Services, tansu: Tansu<'_>) -> Result<()> {
    std::fs::create_dir_all(tansu.cwd)
        .with_context(|| format!("cannot create {}", tansu.cwd.display()))?;
    let endpoint = tansu.endpoint;
    step(format!(
        "starting tansu on {endpoint} with {} (about a second; log: {})",
        tansu.storage_engine,
        tansu.log.display()
    ));
    let mut command = Command::new(tansu.binary);
    command
        .arg("broker")
        .args([
            "--listener-url",
            &format!("tcp://{}:{}", endpoint.bind_host(), endpoint.port),
        ])
        .args([
            "--advertised-listener-url",
            &format!("tcp://{}", endpoint.client_address()),
        ])
        .args(["--storage-engine", tansu.storage_engine])
        .args(["--cluster-id", "plexica"])
        .current_dir(tansu.cwd)
        // tansu reads RUST_LOG; the one meant for the platform would flood its log.
        .env(
            "RUST_LOG",
            std::env::var("TANSU_LOG").unwrap_or_else(|_| "warn".to_owned()),
        )
        // Its log is a file: no colour codes in it.
        .env("NO_COLOR", "1")
        // It also reads its flags from these variables; ours are explicit.
        .env_remove("SCHEMA_REGISTRY")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT");
    services.spawn("tansu", &mut command, Output::File(tansu.log))?;
    wait_for_port(services, "tansu", endpoint, Duration::from_secs(60)).await?;
    if let Some(file) = tansu.storage_engine.strip_prefix("sqlite://") {
        let database = tansu.cwd.join(file);
        tokio::task::spawn_blocking(move || index_record_headers(&database))
            .await
            .context("indexing tansu's record headers panicked")??;
    }
    done(format!("tansu answers on {endpoint}"));
    Ok(())
}

/// tansu 0.6's sqlite storage has no index on `header (topition, offset_id)`, so every record
/// a fetch returns scans the headers of the whole log: fetches slow down as the log grows,
/// and at 100,000 records tansu spent its core in `sqlite3VdbeExec` and stopped answering
/// (`perf`, during `cargo xtask bench`). The index makes each a lookup. tansu creates its
/// tables as it starts and answers on its port only after that; nothing has connected yet.
fn index_record_headers(database: &Path) -> Result<()> {
    let connection = rusqlite::Connection::open(database)
        .with_context(|| format!("cannot open tansu's storage {}", database.display()))?;
    connection.busy_timeout(Duration::from_secs(30))?;
    let mut attempts = 0;
    loop {
        let created = connection.execute_batch(
            "CREATE INDEX IF NOT EXISTS plexica_header_record ON header (topition, offset_id)",
        );
        match created {
            Ok(()) => return Ok(()),
            // Its tables are not there yet.
            Err(error) if attempts < 50 && error.to_string().contains("no such table") => {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(error) => {
                return Err(error).with_context(|| {
                    format!("cannot index the record headers in {}", database.display())
                });
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL
// ---------------------------------------------------------------------------------------------

/// A server started with `pg_ctl` from the machine's binaries, its cluster inside the data dir.
pub struct PrivatePostgres {
    pg_ctl: PathBuf,
    cluster: PathBuf,
    /// The unprivileged user the server runs as when xtask runs as root.
    run_as: Option<String>,
}

impl PrivatePostgres {
    pub async fn stop(&self) -> Result<()> {
        let output = as_user(&self.pg_ctl, self.run_as.as_deref())
            .arg("-D")
            .arg(&self.cluster)
            .args(["-m", "fast", "-w", "stop"])
            .current_dir(&self.cluster)
            .output()
            .await
            .context("cannot run pg_ctl stop")?;
        if !output.status.success() {
            bail!(
                "pg_ctl stop failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(())
    }
}

/// `program` run as `user` (through runuser, else su), or directly.
fn as_user(program: &Path, user: Option<&str>) -> Command {
    let Some(user) = user else {
        return Command::new(program);
    };
    let mut command;
    if let Some(runuser) = find_program("runuser", &[PathBuf::from("/usr/sbin")]) {
        command = Command::new(runuser);
        command.args(["-u", user, "--"]).arg(program);
    } else {
        command = Command::new("su");
        command
            .args(["-s", "/bin/sh", user, "-c", r#"exec "$0" "$@""#])
            .arg(program);
    }
    command
}

fn is_root() -> bool {
    // SAFETY: geteuid(2) cannot fail and has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `initdb` and `pg_ctl` from PATH, else from the newest /usr/lib/postgresql/*/bin.
fn find_postgres_binaries() -> Option<(PathBuf, PathBuf)> {
    let mut versioned: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok())
                .filter_map(|entry| {
                    let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
                    Some((version, entry.path().join("bin")))
                })
                .collect()
        })
        .unwrap_or_default();
    versioned.sort_by_key(|(version, _)| std::cmp::Reverse(*version));
    let dirs: Vec<PathBuf> = versioned.into_iter().map(|(_, dir)| dir).collect();
    let initdb = find_program("initdb", &dirs)?;
    let pg_ctl = find_program("pg_ctl", &dirs)?;
    Some((initdb, pg_ctl))
}

async fn user_exists(user: &str) -> bool {
    Command::new("id")
        .args(["-u", user])
        .output()
        .await
        .is_ok_and(|output| output.status.success())
}

async fn chown(path: &Path, user: &str) -> Result<()> {
    let status = Command::new("chown")
        .arg("-R")
        .arg(format!("{user}:"))
        .arg(path)
        .status()
        .await
        .context("cannot run chown")?;
    if !status.success() {
        bail!("chown -R {user}: {} failed ({status})", path.display());
    }
    Ok(())
}

/// The port of the private server whose `postmaster.pid` is in `cluster` (its fourth line).
fn running_private_port(cluster: &Path) -> Option<u16> {
    let pid_file = std::fs::read_to_string(cluster.join("postmaster.pid")).ok()?;
    pid_file.lines().nth(3)?.trim().parse().ok()
}

/// Makes sure a Postgres server answers at the DATABASE_URL's address.
pub async fn ensure_postgres(
    services: &mut Services,
    data_dir: &Path,
    database_url: &str,
) -> Result<()> {
    let endpoint = Endpoint::parse_url(database_url, 5432).context("DATABASE_URL")?;
    let cluster = data_dir.join("postgres");
    if answers(&endpoint).await {
        if running_private_port(&cluster) == Some(endpoint.port) {
            done(format!(
                "PostgreSQL: using the private server of {} at {endpoint}, left running by an \
                 earlier run that did not stop (another `cargo xtask` still running, or one \
                 that was killed; if so, stop it with `pg_ctl -D {} stop`, as the postgres \
                 user when root)",
                cluster.display(),
                cluster.display()
            ));
        } else {
            done(format!("PostgreSQL: using the server at {endpoint}"));
        }
        return Ok(());
    }
    if !endpoint.is_local() {
        bail!(
            "nothing answers at {endpoint} (DATABASE_URL) and it is not this machine: \
             start that server or point DATABASE_URL at a running one"
        );
    }
    let Some((initdb, pg_ctl)) = find_postgres_binaries() else {
        bail!(
            "nothing answers at {endpoint} (DATABASE_URL) and PostgreSQL is not installed here.\n\
             Install it with:\n\n    apt-get install -y postgresql\n\n\
             (as root), or point DATABASE_URL at a running server."
        );
    };
    let run_as = if is_root() {
        if !user_exists("postgres").await {
            bail!(
                "initdb refuses to run as root and there is no `postgres` user to run it as; \
                 create one with `useradd --system --user-group postgres`"
            );
        }
        Some("postgres".to_owned())
    } else {
        None
    };
    std::fs::create_dir_all(&cluster)
        .with_context(|| format!("cannot create {}", cluster.display()))?;
    let log = data_dir.join("logs").join("postgres.log");
    crate::procs::log_file(&log)?;
    if let Some(user) = &run_as {
        chown(&cluster, user).await?;
        chown(&log, user).await?;
    }

    if !cluster.join("PG_VERSION").exists() {
        step(format!(
            "creating a private PostgreSQL cluster in {} (initdb, ~5 s)",
            cluster.display()
        ));
        let output = as_user(&initdb, run_as.as_deref())
            .arg("-D")
            .arg(&cluster)
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8"])
            .current_dir(&cluster)
            .output()
            .await
            .context("cannot run initdb")?;
        if !output.status.success() {
            bail!(
                "initdb failed ({}):\n{}{}\n(the `postgres` user must be able to reach {}; \
                 a --data-dir under /tmp avoids a home directory it cannot enter)",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr),
                cluster.display()
            );
        }
        // TCP only: the default socket directory may not exist or be writable here.
        let conf = cluster.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf)
            .with_context(|| format!("cannot read {}", conf.display()))?;
        text.push_str("\n# added by cargo xtask\nunix_socket_directories = ''\n");
        std::fs::write(&conf, text).with_context(|| format!("cannot write {}", conf.display()))?;
    }

    step(format!(
        "starting the private PostgreSQL on {endpoint} (~2 s; log: {})",
        log.display()
    ));
    let options = format!(
        "-p {} -c listen_addresses={}",
        endpoint.port,
        endpoint.bind_host()
    );
    let output = as_user(&pg_ctl, run_as.as_deref())
        .arg("-D")
        .arg(&cluster)
        .arg("-l")
        .arg(&log)
        .args(["-o", &options, "-w", "-t", "60", "start"])
        .current_dir(&cluster)
        // Out of the terminal's process group: Ctrl-C is for xtask, which stops it in order.
        .process_group(0)
        .output()
        .await
        .context("cannot run pg_ctl start")?;
    if !output.status.success() {
        bail!(
            "pg_ctl start failed ({}):\n{}{}\nthe end of {}:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            log.display(),
            crate::procs::tail(&log, 15)
        );
    }
    services.adopt_postgres(PrivatePostgres {
        pg_ctl,
        cluster,
        run_as,
    });
    wait_for_port(services, "PostgreSQL", &endpoint, Duration::from_secs(30)).await?;
    done(format!("PostgreSQL answers on {endpoint}"));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Redis
// ---------------------------------------------------------------------------------------------

/// Makes sure a Redis server answers at the REDIS_URL's address.
pub async fn ensure_redis(services: &mut Services, data_dir: &Path, redis_url: &str) -> Result<()> {
    let endpoint = Endpoint::parse_url(redis_url, 6379).context("REDIS_URL")?;
    if answers(&endpoint).await {
        done(format!("Redis: using the server at {endpoint}"));
        return Ok(());
    }
    if !endpoint.is_local() {
        bail!(
            "nothing answers at {endpoint} (REDIS_URL) and it is not this machine: \
             start that server or point REDIS_URL at a running one"
        );
    }
    let extra = ["/usr/bin", "/usr/sbin", "/usr/local/bin"].map(PathBuf::from);
    let Some(redis_server) = find_program("redis-server", &extra) else {
        bail!(
            "nothing answers at {endpoint} (REDIS_URL) and Redis is not installed here.\n\
             Install it with:\n\n    apt-get install -y redis-server\n\n\
             (as root), or point REDIS_URL at a running server."
        );
    };
    let dir = data_dir.join("redis");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let log = data_dir.join("logs").join("redis.log");
    step(format!(
        "starting a private Redis on {endpoint} (a second; data in {}, log: {})",
        dir.display(),
        log.display()
    ));
    let mut command = Command::new(redis_server);
    command
        .args(["--port", &endpoint.port.to_string()])
        .args(["--bind", endpoint.bind_host()])
        .arg("--dir")
        .arg(&dir)
        .args(["--daemonize", "no"]);
    services.spawn("redis", &mut command, Output::File(log))?;
    wait_for_port(services, "Redis", &endpoint, Duration::from_secs(30)).await?;
    done(format!("Redis answers on {endpoint}"));
    Ok(())
}
