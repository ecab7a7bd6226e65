//! A plugin's memory and CPU limits (FR-017): a cgroup of its own where the machine lets the
//! platform write one (v1 `memory` and `cpu` hierarchies, or v2), nested under the platform's
//! own cgroup so that the plugins count toward it; else an address-space rlimit, and no CPU
//! limit.
//!
//! The plain cgroupfs is enough: a directory, two or three files written, and the child
//! joining by writing its pid into `cgroup.procs` before it runs the plugin's command.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::spec::Resources;

const ROOT: &str = "/sys/fs/cgroup";
/// CFS period of the CPU limit: the quota is the plugin's share of it.
const CPU_PERIOD_US: u64 = 100_000;

/// How a plugin's limits are enforced on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Limits {
    /// The cgroup directories the plugin runs in (one per v1 hierarchy, one for v2).
    Cgroup { v2: bool, dirs: Vec<PathBuf> },
    /// No writable cgroup: the memory limit is the address-space rlimit.
    Rlimit { memory_bytes: Option<u64> },
}

impl Limits {
    /// Prepares the limits of the plugin group `name` (unique to one platform and plugin).
    pub fn prepare(name: &str, resources: Resources) -> Limits {
        match cgroup(name, resources) {
            Ok(limits) => limits,
            Err(error) => {
                tracing::debug!(%error, group = name, "no writable cgroup; limits by rlimit");
                Limits::Rlimit {
                    memory_bytes: resources.memory_bytes,
                }
            }
        }
    }

    pub fn describe(&self) -> &'static str {
        match self {
            Limits::Cgroup { v2: false, .. } => "cgroup v1",
            Limits::Cgroup { v2: true, .. } => "cgroup v2",
            Limits::Rlimit { .. } => "rlimit",
        }
    }

    /// What the child does between fork and exec; see [`Joiner::join`].
    pub fn joiner(&self) -> Joiner {
        match self {
            Limits::Cgroup { dirs, .. } => Joiner {
                procs: dirs
                    .iter()
                    .filter_map(|d| {
                        CString::new(d.join("cgroup.procs").as_os_str().as_bytes()).ok()
                    })
                    .collect(),
                address_space: None,
            },
            Limits::Rlimit { memory_bytes } => Joiner {
                procs: Vec::new(),
                address_space: *memory_bytes,
            },
        }
    }

    /// Kills every process left in the plugin's cgroup, e.g. by a platform killed with -9.
    pub fn kill_leftovers(&self) -> usize {
        let Limits::Cgroup { dirs, .. } = self else {
            return 0;
        };
        let mut killed = 0;
        for dir in dirs {
            let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                // SAFETY: kill has no memory-safety preconditions.
                if pid > 1 && unsafe { libc::kill(pid, libc::SIGKILL) } == 0 {
                    killed += 1;
                }
            }
        }
        killed
    }

    /// How many times the kernel killed a process of the plugin for its memory limit.
    pub fn oom_kills(&self) -> u64 {
        let Limits::Cgroup { v2, dirs } = self else {
            return 0;
        };
        let file = if *v2 {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        dirs.iter()
            .filter_map(|d| std::fs::read_to_string(d.join(file)).ok())
            .flat_map(|text| {
                text.lines()
                    .filter_map(|l| l.strip_prefix("oom_kill "))
                    .filter_map(|n| n.trim().parse::<u64>().ok())
                    .collect::<Vec<_>>()
            })
            .sum()
    }

    /// The plugin's memory use in bytes, where the cgroup tells.
    pub fn memory_usage(&self) -> Option<u64> {
        let Limits::Cgroup { v2, dirs } = self else {
            return None;
        };
        let file = if *v2 {
            "memory.current"
        } else {
            "memory.usage_in_bytes"
        };
        dirs.iter()
            .find_map(|d| std::fs::read_to_string(d.join(file)).ok())
            .and_then(|t| t.trim().parse().ok())
    }

    /// Removes the cgroup directories once no process is left in them.
    pub fn remove(&self) {
        if let Limits::Cgroup { dirs, .. } = self {
            for dir in dirs {
                let _ = std::fs::remove_dir(dir);
            }
        }
    }
}

/// Joins the limits in the forked child, before exec: only async-signal-safe calls, on
/// values prepared before the fork.
#[derive(Debug, Clone)]
pub struct Joiner {
    procs: Vec<CString>,
    address_space: Option<u64>,
}

impl Joiner {
    /// # Safety
    /// Called between fork and exec (in `pre_exec`): it allocates nothing.
    pub unsafe fn join(&self) -> std::io::Result<()> {
        for procs in &self.procs {
            // SAFETY: a valid NUL-terminated path; open/write/close are async-signal-safe.
            unsafe {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let written = libc::write(fd, b"0\n".as_ptr().cast(), 2);
                libc::close(fd);
                if written < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
        }
        if let Some(bytes) = self.address_space {
            let limit = libc::rlimit {
                rlim_cur: bytes as libc::rlim_t,
                rlim_max: bytes as libc::rlim_t,
            };
            // SAFETY: a valid rlimit struct.
            if unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
enum CgroupError {
    #[error("no cgroup hierarchy for `{0}` in /proc/self/cgroup")]
    NoHierarchy(&'static str),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io {
        path: path.to_owned(),
        source,
    }
}

fn cgroup(name: &str, resources: Resources) -> Result<Limits, CgroupError> {
    let own = std::fs::read_to_string("/proc/self/cgroup").map_err(io(Path::new("/proc")))?;
    if Path::new(ROOT).join("cgroup.controllers").exists() {
        let path = own_path(&own, "").ok_or(CgroupError::NoHierarchy("unified"))?;
        let dir = Path::new(ROOT)
            .join(path.trim_start_matches('/'))
            .join(name);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        if let Some(bytes) = resources.memory_bytes {
            write(&dir.join("memory.max"), &bytes.to_string())?;
            write(&dir.join("memory.swap.max"), "0").ok();
        }
        if let Some(millis) = resources.cpu_millis {
            write(
                &dir.join("cpu.max"),
                &format!("{} {CPU_PERIOD_US}", millis * CPU_PERIOD_US / 1000),
            )?;
        }
        return Ok(Limits::Cgroup {
            v2: true,
            dirs: vec![dir],
        });
    }
    let mut dirs = Vec::new();
    for controller in ["memory", "cpu"] {
        let (mount, path) = v1_hierarchy(&own, controller)?;
        let dir = mount.join(path.trim_start_matches('/')).join(name);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        match controller {
            "memory" => {
                if let Some(bytes) = resources.memory_bytes {
                    write(&dir.join("memory.limit_in_bytes"), &bytes.to_string())?;
                    // Without swap the limit is the whole of it; absent when swap accounting is off.
                    write(&dir.join("memory.memsw.limit_in_bytes"), &bytes.to_string()).ok();
                }
            }
            _ => {
                if let Some(millis) = resources.cpu_millis {
                    write(&dir.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
                    write(
                        &dir.join("cpu.cfs_quota_us"),
                        &(millis * CPU_PERIOD_US / 1000).to_string(),
                    )?;
                }
            }
        }
        dirs.push(dir);
    }
    Ok(Limits::Cgroup { v2: false, dirs })
}

fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    std::fs::write(path, value).map_err(io(path))
}

/// The path of this process's cgroup in the hierarchy whose controller list is `controllers`.
fn own_path<'a>(own: &'a str, controller: &str) -> Option<&'a str> {
    own.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, list, path) = (parts.next()?, parts.next()?, parts.next()?);
        let matches = if controller.is_empty() {
            list.is_empty()
        } else {
            list.split(',').any(|c| c == controller)
        };
        matches.then_some(path)
    })
}

/// The mount point and own path of the v1 hierarchy of `controller`.
fn v1_hierarchy<'a>(
    own: &'a str,
    controller: &'static str,
) -> Result<(PathBuf, &'a str), CgroupError> {
    let line = own
        .lines()
        .find(|line| {
            line.split(':')
                .nth(1)
                .is_some_and(|list| list.split(',').any(|c| c == controller))
        })
        .ok_or(CgroupError::NoHierarchy(controller))?;
    let mut parts = line.splitn(3, ':');
    let list = parts.nth(1).unwrap_or_default();
    let path = parts.next().unwrap_or("/");
    // A co-mounted hierarchy is mounted under its list (`cpu,cpuacct`); the single name is
    // usually a link to it.
    let mount = [list, controller]
        .into_iter()
        .map(|dir| Path::new(ROOT).join(dir))
        .find(|dir| dir.is_dir())
        .ok_or(CgroupError::NoHierarchy(controller))?;
    Ok((mount, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = "9:name=systemd:/\n4:memory:/process_api/abc\n3:cpu,cpuacct:/\n0::/\n";

    #[test]
    fn the_own_cgroup_is_read_per_controller() {
        assert_eq!(own_path(V1, "memory"), Some("/process_api/abc"));
        assert_eq!(own_path(V1, "cpu"), Some("/"));
        assert_eq!(own_path(V1, "cpuacct"), Some("/"));
        assert_eq!(own_path(V1, ""), Some("/"));
        assert_eq!(own_path(V1, "blkio"), None);
    }

    #[test]
    fn without_a_writable_cgroup_memory_is_an_rlimit() {
        let limits = Limits::Rlimit {
            memory_bytes: Some(1 << 20),
        };
        assert_eq!(limits.describe(), "rlimit");
        assert_eq!(limits.oom_kills(), 0);
        assert_eq!(limits.memory_usage(), None);
    }
}
