//! One plugin process's life: its launch as a process group of its own, the supervision that
//! restarts it with backoff, and its end (SIGTERM, then SIGKILL to the whole group).

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{Instance, LOG_TAIL_LINES, Launch, RESTART_BASE, STABLE_AFTER, STOP_GRACE, State};
use crate::config::RuntimeConfig;
use crate::health::{self, HealthStatus};

pub(super) async fn stop_instance(instance: &Instance) {
    // Out of service already (nothing routes to it any more): let what is under way finish.
    let drained = async {
        loop {
            let notified = instance.in_flight.drained.notified();
            if instance
                .in_flight
                .count
                .load(std::sync::atomic::Ordering::Acquire)
                == 0
            {
                return;
            }
            notified.await;
        }
    };
    let _ = tokio::time::timeout(STOP_GRACE, drained).await;
    instance.stop.cancel();
    let handle = instance.supervisor.lock().ok().and_then(|mut h| h.take());
    if let Some(handle) = handle {
        let _ = handle.await;
    }
}

impl Launch {
    pub(super) fn spawn(&self) -> std::io::Result<Child> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut command = Command::new(&self.command[0]);
        command
            .args(&self.command[1..])
            .current_dir(&self.dir)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .kill_on_drop(false);
        let joiner = self.limits.joiner();
        // SAFETY: `join` only makes async-signal-safe calls on values prepared before fork.
        unsafe {
            command.pre_exec(move || joiner.join());
        }
        let child = command.spawn()?;
        if let Some(pid) = child.id() {
            // The group and the plugin it belongs to, for the next platform to clear up.
            let _ = std::fs::write(&self.pgid_file, format!("{pid}\n{}\n", self.id));
        }
        Ok(child)
    }
}

/// Watches one plugin version: probes its health, restarts it with backoff when it dies,
/// stops it when told.
pub(super) async fn supervise(
    launch: Launch,
    mut child: Child,
    state: Arc<RwLock<State>>,
    stop: CancellationToken,
    client: reqwest::Client,
    config: RuntimeConfig,
    observed: watch::Sender<()>,
) {
    let plugin = launch.id.clone();
    let mut backoff = RESTART_BASE;
    let mut started = Instant::now();
    let mut starting = false;
    let mut probes = tokio::time::interval(config.health_interval());
    probes.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut oom_kills = launch.limits.oom_kills();
    let observe = |status: HealthStatus, error: Option<String>| {
        if let Ok(mut state) = state.write()
            && state.health.observe(status, error.clone())
        {
            let healthy = if status == HealthStatus::Healthy {
                1.0
            } else {
                0.0
            };
            metrics::gauge!("plexica_plugin_healthy", "plugin" => plugin.clone()).set(healthy);
            observed.send_replace(());
            match error {
                Some(error) => {
                    tracing::warn!(plugin = %plugin, status = status.as_str(), %error, "plugin health changed")
                }
                None => {
                    tracing::info!(plugin = %plugin, status = status.as_str(), "plugin health changed")
                }
            }
        }
    };
    loop {
        tokio::select! {
            () = stop.cancelled() => {
                terminate(&mut child, &launch).await;
                break;
            }
            exit = child.wait() => {
                let now_oom = launch.limits.oom_kills();
                let reason = if now_oom > oom_kills {
                    format!("killed for exceeding its memory limit ({})", launch.limits.describe())
                } else {
                    match exit {
                        Ok(status) => format!("exited: {status}"),
                        Err(error) => format!("lost: {error}"),
                    }
                };
                oom_kills = now_oom;
                // Whatever is left of its group goes with it.
                kill_group(&child_pgid(&launch));
                observe(HealthStatus::Unhealthy, Some(reason));
                metrics::counter!("plexica_plugin_restarts_total", "plugin" => plugin.clone()).increment(1);
                if started.elapsed() > STABLE_AFTER {
                    backoff = RESTART_BASE;
                }
                loop {
                    tokio::select! {
                        () = stop.cancelled() => {
                            finish(&launch, &state);
                            return;
                        }
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(config.restart_max());
                    match launch.spawn() {
                        Ok(next) => {
                            child = next;
                            started = Instant::now();
                            starting = true;
                            if let Ok(mut state) = state.write() {
                                state.health.restarts += 1;
                            }
                            tracing::info!(plugin = %plugin, "plugin restarted");
                            break;
                        }
                        Err(error) => observe(HealthStatus::Unhealthy, Some(format!("cannot restart: {error}"))),
                    }
                }
            }
            _ = probes.tick() => {
                match health::probe(&client, launch.port, "/health").await {
                    Ok(()) => {
                        starting = false;
                        observe(HealthStatus::Healthy, None);
                    }
                    // A restarted plugin has until the start timeout to answer; till then the
                    // reason it is down stays the crash.
                    Err(_) if starting && started.elapsed() < config.start_timeout() => {}
                    Err(error) => observe(HealthStatus::Unhealthy, Some(error)),
                }
            }
        }
    }
    finish(&launch, &state);
}

pub(super) fn finish(launch: &Launch, state: &RwLock<State>) {
    if let Ok(mut state) = state.write() {
        state.health.observe(HealthStatus::Stopped, None);
    }
    metrics::gauge!("plexica_plugin_healthy", "plugin" => launch.id.clone()).set(0.0);
    let _ = std::fs::remove_file(&launch.pgid_file);
    launch.limits.remove();
    tracing::info!(plugin = %launch.id, version = %launch.version, "plugin stopped");
}

/// The process group of the launch's current process, from its pgid file.
pub(super) fn child_pgid(launch: &Launch) -> Option<i32> {
    std::fs::read_to_string(&launch.pgid_file)
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

pub(super) fn kill_group(pgid: &Option<i32>) {
    if let Some(pgid) = *pgid
        && pgid > 1
    {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
    }
}

/// SIGTERM to the group, SIGKILL after the grace period.
pub(super) async fn terminate(child: &mut Child, launch: &Launch) {
    let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) else {
        return;
    };
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(-pid, libc::SIGTERM) };
    if tokio::time::timeout(STOP_GRACE, child.wait())
        .await
        .is_err()
    {
        tracing::warn!(plugin = %launch.id, "plugin ignored SIGTERM; killing it");
    }
    kill_group(&Some(pid));
    let _ = child.wait().await;
    launch.limits.kill_leftovers();
}

/// Whether `pid` is a process started for plugin `id`.
pub(super) fn is_plugin_process(pid: i32, id: &str) -> bool {
    let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
        return false;
    };
    let wanted = format!("PLEXICA_PLUGIN_ID={id}");
    environ
        .split(|b| *b == 0)
        .any(|var| var == wanted.as_bytes())
}

pub(super) fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A version as a file name: anything but letters, digits, `.`, `-` and `_` becomes `_`.
pub(super) fn sanitize(version: &str) -> String {
    version
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The end of a plugin's log, for an error that says why it did not start.
pub(super) fn log_tail(log: &Path) -> String {
    let text = std::fs::read(log).unwrap_or_default();
    let text = String::from_utf8_lossy(&text[text.len().saturating_sub(4096)..]);
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
    if tail.trim().is_empty() {
        String::new()
    } else {
        format!("; its log ends with:\n{tail}")
    }
}
