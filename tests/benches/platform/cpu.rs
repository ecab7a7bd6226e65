//! Where a scenario's CPU went: the broker's, Postgres's and the measured process's CPU time
//! over a span, read from `/proc`, so that a figure comes with its own coarse profile (which
//! process bounds it) in every run, not only when someone attaches `perf`.

use std::time::Instant;

/// CPU time by process group at one moment, in seconds.
#[derive(Debug, Clone, Copy, Default)]
struct CpuTimes {
    broker: f64,
    postgres: f64,
    platform: f64,
}

/// A span being measured; [`CpuSpan::end`] gives each group's average cores over it.
pub struct CpuSpan {
    platform_pid: Option<u32>,
    started: Instant,
    at_start: CpuTimes,
}

/// Average cores each group used over a span: CPU seconds over wall seconds.
#[derive(Debug, Clone, Copy)]
pub struct CpuShares {
    pub broker: f64,
    pub postgres: f64,
    pub platform: f64,
}

impl CpuSpan {
    /// Starts a span; `platform_pid` is the process whose work is measured.
    pub fn start(platform_pid: Option<u32>) -> Self {
        CpuSpan {
            platform_pid,
            started: Instant::now(),
            at_start: read(platform_pid),
        }
    }

    pub fn end(self) -> CpuShares {
        let now = read(self.platform_pid);
        let wall = self.started.elapsed().as_secs_f64().max(f64::EPSILON);
        CpuShares {
            broker: (now.broker - self.at_start.broker) / wall,
            postgres: (now.postgres - self.at_start.postgres) / wall,
            platform: (now.platform - self.at_start.platform) / wall,
        }
    }
}

impl CpuShares {
    /// As figures of a run, in cores.
    pub fn figures(&self) -> [(&'static str, f64); 3] {
        [
            ("broker_cores", self.broker),
            ("postgres_cores", self.postgres),
            ("platform_cores", self.platform),
        ]
    }
}

/// Sums the CPU time of every process on the machine by group: the broker (tansu or
/// Redpanda), Postgres (its postmaster and backends), and the platform's process. A backend
/// that ends within the span takes its time with it; the platform's pools keep theirs open.
fn read(platform_pid: Option<u32>) -> CpuTimes {
    // SAFETY: sysconf reads a constant of the system.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let mut times = CpuTimes::default();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return times;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `pid (comm) state ...`: the name may hold spaces, so split at its last ')'.
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let name = head.split_once('(').map_or("", |(_, name)| name);
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
        let seconds = fields
            .get(11..13)
            .map(|f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum::<f64>() / ticks)
            .unwrap_or(0.0);
        if Some(pid) == platform_pid {
            times.platform += seconds;
        } else if name == "tansu" || name.starts_with("redpanda") {
            times.broker += seconds;
        } else if name.starts_with("postgres") {
            times.postgres += seconds;
        }
    }
    times
}
