//! Child processes and Ctrl-C.
//!
//! Long-running services (tansu, Redis, the platform) run in process groups of their own, so the
//! terminal's Ctrl-C reaches only xtask, which then stops them in reverse start order with
//! SIGTERM and waits for each. They also get SIGTERM from the kernel if xtask itself dies.
//! One-shot tools that stream to the terminal (cargo build, cargo install, nextest) stay in the
//! terminal's group and see Ctrl-C themselves.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

/// How long a service gets to exit after SIGTERM before it is killed.
const GRACE: Duration = Duration::from_secs(20);

/// Returned when Ctrl-C (SIGINT) or SIGTERM stopped the task.
#[derive(Debug)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted")
    }
}

impl std::error::Error for Interrupted {}

/// Counts SIGINT/SIGTERM received: the first asks for a clean stop, the second for a fast one.
#[derive(Debug, Clone)]
pub struct Stop {
    signals: watch::Receiver<u32>,
}

impl Stop {
    /// From now on SIGINT and SIGTERM no longer kill xtask; they are counted here.
    pub fn install() -> Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        let (sender, signals) = watch::channel(0u32);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
                sender.send_modify(|count| *count += 1);
                if *sender.borrow() == 1 {
                    eprintln!("\n■ stopping (Ctrl-C again to kill at once)…");
                }
            }
        });
        Ok(Self { signals })
    }

    pub fn requested(&self) -> bool {
        *self.signals.borrow() > 0
    }

    /// Resolves once `times` signals have arrived.
    pub async fn signalled(&self, times: u32) {
        let mut signals = self.signals.clone();
        if signals.wait_for(|count| *count >= times).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Runs `future` unless a stop is requested first.
    pub async fn or_interrupted<F: Future>(&self, future: F) -> Result<F::Output> {
        if self.requested() {
            return Err(Interrupted.into());
        }
        tokio::select! {
            output = future => Ok(output),
            () = self.signalled(1) => Err(Interrupted.into()),
        }
    }

    pub async fn sleep(&self, duration: Duration) -> Result<()> {
        self.or_interrupted(tokio::time::sleep(duration)).await
    }
}

/// Sends `signal` to a process (or, with a negative pid, a process group).
fn send_signal(pid: i32, signal: libc::c_int) {
    // SAFETY: kill(2) has no memory-safety preconditions; a stale pid only yields ESRCH.
    unsafe {
        libc::kill(pid, signal);
    }
}

fn pid_of(child: &Child) -> Option<i32> {
    child.id().and_then(|pid| i32::try_from(pid).ok())
}

/// Runs a tool in the foreground, its output on the terminal, and returns its exit status.
/// On Ctrl-C the tool gets the signal from the terminal (and, if it has not exited 3 s later, a
/// SIGTERM from us, for a stop sent to xtask alone); xtask waits for it and returns
/// `Interrupted`.
pub async fn run_foreground(stop: &Stop, command: &mut Command, what: &str) -> Result<ExitStatus> {
    if stop.requested() {
        return Err(Interrupted.into());
    }
    let mut child = command
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {what}"))?;
    tokio::select! {
        status = child.wait() => {
            return status.with_context(|| format!("waiting for {what} failed"));
        }
        () = stop.signalled(1) => {}
    }
    // A Ctrl-C from the terminal reached the tool as well; a signal sent to xtask alone did not,
    // so pass it on unless the tool is already on its way out (a second signal would make it
    // skip its own clean-up).
    tokio::select! {
        _ = child.wait() => return Err(Interrupted.into()),
        () = tokio::time::sleep(Duration::from_secs(3)) => {}
        () = stop.signalled(2) => {}
    }
    if let Some(pid) = pid_of(&child) {
        send_signal(pid, libc::SIGTERM);
    }
    tokio::select! {
        _ = child.wait() => {}
        () = stop.signalled(2) => {
            let _ = child.kill().await;
        }
    }
    Err(Interrupted.into())
}

/// Like `run_foreground`, for tools that must succeed.
pub async fn run_checked(stop: &Stop, command: &mut Command, what: &str) -> Result<()> {
    let status = run_foreground(stop, command, what).await?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// Puts a service in a process group of its own (the terminal's Ctrl-C does not reach it) and
/// has the kernel send it SIGTERM if xtask dies without stopping it.
fn detach(command: &mut Command) {
    command.process_group(0).kill_on_drop(true);
    let parent = std::process::id();
    // SAFETY: the closure runs in the forked child before exec and only calls prctl(2) and
    // getppid(2), both async-signal-safe.
    unsafe {
        command.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            // The parent may have died between fork and prctl.
            if u32::try_from(libc::getppid()).ok() != Some(parent) {
                return Err(std::io::Error::other(
                    "xtask exited while starting a service",
                ));
            }
            Ok(())
        });
    }
}

/// Opens (appending) a log file for a service's output.
pub fn log_file(path: &Path) -> Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open the log file {}", path.display()))
}

/// Output of a service: into its log file only, or onto the terminal as well.
pub enum Output {
    File(PathBuf),
    TerminalAndFile(PathBuf),
}

impl Output {
    fn path(&self) -> &Path {
        match self {
            Output::File(path) | Output::TerminalAndFile(path) => path,
        }
    }
}

enum Running {
    Service {
        name: String,
        child: Child,
        log: PathBuf,
    },
    /// A `pg_ctl`-managed server (it daemonizes, so it is not our child).
    PrivatePostgres(crate::services::PrivatePostgres),
}

/// Everything xtask started, stopped in reverse order by `stop_all`.
pub struct Services {
    stop: Stop,
    running: Vec<Running>,
}

impl Services {
    pub fn new(stop: Stop) -> Self {
        Self {
            stop,
            running: Vec::new(),
        }
    }

    pub fn stop_signal(&self) -> &Stop {
        &self.stop
    }

    /// Starts a service with its output going to `output`.
    pub fn spawn(&mut self, name: &str, command: &mut Command, output: Output) -> Result<()> {
        detach(command);
        let log = output.path().to_path_buf();
        let file = log_file(&log)?;
        let tee_into = match output {
            Output::File(_) => {
                let err = file
                    .try_clone()
                    .with_context(|| format!("cannot reuse {}", log.display()))?;
                command
                    .stdin(Stdio::null())
                    .stdout(Stdio::from(file))
                    .stderr(Stdio::from(err));
                None
            }
            Output::TerminalAndFile(_) => {
                command
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
                Some(file)
            }
        };
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        if let Some(file) = tee_into {
            let file = tokio::fs::File::from_std(file);
            let shared = std::sync::Arc::new(tokio::sync::Mutex::new(file));
            if let Some(stdout) = child.stdout.take() {
                tokio::spawn(tee(stdout, shared.clone(), false));
            }
            if let Some(stderr) = child.stderr.take() {
                tokio::spawn(tee(stderr, shared, true));
            }
        }
        self.running.push(Running::Service {
            name: name.to_owned(),
            child,
            log,
        });
        Ok(())
    }

    pub fn adopt_postgres(&mut self, postgres: crate::services::PrivatePostgres) {
        self.running.push(Running::PrivatePostgres(postgres));
    }

    /// Fails when a service has exited, showing the end of its log.
    pub fn ensure_alive(&mut self) -> Result<()> {
        for running in &mut self.running {
            if let Running::Service { name, child, log } = running {
                let exited = child
                    .try_wait()
                    .with_context(|| format!("cannot check on {name}"))?;
                if let Some(status) = exited {
                    bail!(
                        "{name} exited unexpectedly ({status}); the end of {}:\n{}",
                        log.display(),
                        tail(log, 25)
                    );
                }
            }
        }
        Ok(())
    }

    /// Waits until a service exits (an error) or a stop is requested (`Ok`).
    pub async fn wait_until_stopped(&mut self) -> Result<()> {
        loop {
            self.ensure_alive()?;
            if self.stop.sleep(Duration::from_millis(500)).await.is_err() {
                return Ok(());
            }
        }
    }

    /// Stops everything in reverse start order: SIGTERM, then up to `GRACE` (or a second Ctrl-C)
    /// before SIGKILL; a private Postgres with `pg_ctl stop`.
    pub async fn stop_all(&mut self) {
        while let Some(running) = self.running.pop() {
            match running {
                Running::Service {
                    name, mut child, ..
                } => {
                    if let Ok(Some(_)) = child.try_wait() {
                        continue;
                    }
                    eprintln!("  stopping {name}…");
                    if let Some(pid) = pid_of(&child) {
                        // The whole group: the service and anything it started.
                        send_signal(-pid, libc::SIGTERM);
                    }
                    tokio::select! {
                        _ = child.wait() => {}
                        () = tokio::time::sleep(GRACE) => {
                            eprintln!("  {name} did not stop within {GRACE:?}; killing it");
                            let _ = child.kill().await;
                        }
                        () = self.stop.signalled(2) => {
                            let _ = child.kill().await;
                        }
                    }
                }
                Running::PrivatePostgres(postgres) => {
                    eprintln!("  stopping the private PostgreSQL…");
                    if let Err(error) = postgres.stop().await {
                        eprintln!("  warning: {error:#}");
                    }
                }
            }
        }
    }
}

/// Copies a child's output line by line to the terminal and to its log file.
async fn tee(
    from: impl AsyncRead + Unpin,
    file: std::sync::Arc<tokio::sync::Mutex<tokio::fs::File>>,
    to_stderr: bool,
) {
    let mut reader = BufReader::new(from);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                if to_stderr {
                    let _ = tokio::io::stderr().write_all(&line).await;
                } else {
                    let _ = tokio::io::stdout().write_all(&line).await;
                }
                let _ = file.lock().await.write_all(&line).await;
            }
        }
    }
}

/// The last `lines` lines of a log file, for error messages.
pub fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            let start = all.len().saturating_sub(lines);
            all[start..]
                .iter()
                .map(|line| format!("    {line}"))
                .collect::<Vec<_>>()
                .join("\n")
        }
        Err(error) => format!("    (cannot read it: {error})"),
    }
}
