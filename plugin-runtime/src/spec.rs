//! The bundle contract of the process driver, parsed from the manifest's `runtime`:
//!
//! ```json
//! "runtime": {
//!   "type": "process",
//!   "command": ["python3", "server.py"],
//!   "bundle": "file:///opt/plugins/notes",
//!   "resources": {"cpu": "500m", "memory": "256Mi"}
//! }
//! ```
//!
//! `bundle` is a directory or a `.tar.gz` of one on the platform's machine; `command` runs in
//! it (unpacked, for an archive) and must listen on `127.0.0.1:$PORT`.

use std::path::PathBuf;

use serde_json::Value;

/// A manifest's process runtime, as typed values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessRuntimeSpec {
    pub command: Vec<String>,
    pub bundle: PathBuf,
    pub resources: Resources,
    /// `migrations.path`, relative to the bundle.
    pub migrations: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    /// Thousandths of a CPU (`500m` is 500, `2` is 2000).
    pub cpu_millis: Option<u64>,
    pub memory_bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error(
        "the manifest's runtime is of type `{0}`, which needs a container driver; this platform runs plugins with the process driver (runtime type `process`)"
    )]
    NotAProcess(String),
    #[error("the manifest has no runtime section")]
    NoRuntime,
    #[error("runtime.{field}: {problem}")]
    Field {
        field: &'static str,
        problem: String,
    },
}

fn field(field: &'static str, problem: impl Into<String>) -> SpecError {
    SpecError::Field {
        field,
        problem: problem.into(),
    }
}

impl ProcessRuntimeSpec {
    pub fn from_manifest(manifest: &Value) -> Result<Self, SpecError> {
        let runtime = manifest.get("runtime").ok_or(SpecError::NoRuntime)?;
        let kind = runtime.get("type").and_then(Value::as_str).unwrap_or("");
        if kind != "process" {
            return Err(SpecError::NotAProcess(kind.to_owned()));
        }
        let command: Vec<String> = runtime
            .get("command")
            .and_then(Value::as_array)
            .ok_or_else(|| field("command", "must be an array of strings"))?
            .iter()
            .map(|part| {
                part.as_str()
                    .filter(|s| !s.is_empty() && !s.contains('\0'))
                    .map(str::to_owned)
                    .ok_or_else(|| field("command", "every part must be a non-empty string"))
            })
            .collect::<Result<_, _>>()?;
        if command.is_empty() {
            return Err(field("command", "must name a program"));
        }
        let bundle = runtime
            .get("bundle")
            .and_then(Value::as_str)
            .ok_or_else(|| field("bundle", "must be a file:// URL"))?;
        let bundle = bundle_path(bundle)?;
        let resources = runtime.get("resources");
        let text = |key: &str| resources.and_then(|r| r.get(key)).and_then(Value::as_str);
        let resources = Resources {
            cpu_millis: text("cpu").map(parse_cpu).transpose()?,
            memory_bytes: text("memory").map(parse_memory).transpose()?,
        };
        let migrations = manifest
            .pointer("/migrations/path")
            .and_then(Value::as_str)
            .map(|path| {
                let path = PathBuf::from(path.trim_start_matches("./"));
                let inside = path
                    .components()
                    .all(|c| matches!(c, std::path::Component::Normal(_)));
                inside.then_some(path).ok_or_else(|| SpecError::Field {
                    field: "migrations.path",
                    problem: "must be a relative path inside the bundle".into(),
                })
            })
            .transpose()?;
        Ok(Self {
            command,
            bundle,
            resources,
            migrations,
        })
    }
}

fn bundle_path(url: &str) -> Result<PathBuf, SpecError> {
    let parsed = url::Url::parse(url).map_err(|e| field("bundle", format!("`{url}`: {e}")))?;
    if parsed.scheme() != "file" {
        return Err(field(
            "bundle",
            format!("`{url}`: only file:// bundles on the platform's machine are supported"),
        ));
    }
    parsed
        .to_file_path()
        .map_err(|()| field("bundle", format!("`{url}` is not an absolute file path")))
}

/// `500m` → 500, `0.5` → 500, `2` → 2000.
pub fn parse_cpu(text: &str) -> Result<u64, SpecError> {
    let bad = || field("resources.cpu", format!("`{text}` is not like 500m or 0.5"));
    let millis = if let Some(m) = text.strip_suffix('m') {
        m.parse::<u64>().map_err(|_| bad())?
    } else {
        let cpus: f64 = text.parse().map_err(|_| bad())?;
        if !cpus.is_finite() || cpus <= 0.0 || cpus > 1024.0 {
            return Err(bad());
        }
        (cpus * 1000.0).round() as u64
    };
    if millis == 0 {
        return Err(bad());
    }
    Ok(millis)
}

/// `256Mi` → 268435456; `1Gi`, `512Ki` and plain bytes too.
pub fn parse_memory(text: &str) -> Result<u64, SpecError> {
    let bad = || field("resources.memory", format!("`{text}` is not like 256Mi"));
    let (digits, unit) = match text.len().checked_sub(2).map(|at| text.split_at(at)) {
        Some((digits, "Ki")) => (digits, 1u64 << 10),
        Some((digits, "Mi")) => (digits, 1 << 20),
        Some((digits, "Gi")) => (digits, 1 << 30),
        _ => (text, 1),
    };
    let bytes = digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .filter(|b| *b > 0)
        .ok_or_else(bad)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_process_runtime_becomes_typed_values() {
        let manifest = json!({
            "runtime": {"type": "process", "command": ["python3", "server.py"],
                        "bundle": "file:///opt/plugins/notes",
                        "resources": {"cpu": "500m", "memory": "256Mi"}},
            "migrations": {"path": "./migrations"}
        });
        let spec = ProcessRuntimeSpec::from_manifest(&manifest).expect("valid");
        assert_eq!(spec.command, ["python3", "server.py"]);
        assert_eq!(spec.bundle, PathBuf::from("/opt/plugins/notes"));
        assert_eq!(spec.resources.cpu_millis, Some(500));
        assert_eq!(spec.resources.memory_bytes, Some(256 << 20));
        assert_eq!(spec.migrations, Some(PathBuf::from("migrations")));
    }

    #[test]
    fn bad_runtimes_are_refused_with_the_field() {
        let refuse = |runtime: Value| {
            ProcessRuntimeSpec::from_manifest(&json!({ "runtime": runtime }))
                .expect_err("refused")
                .to_string()
        };
        assert!(refuse(json!({"type": "typescript", "image": "x"})).contains("container"));
        assert!(
            refuse(json!({"type": "process", "command": [], "bundle": "file:///x"}))
                .contains("command")
        );
        assert!(
            refuse(json!({"type": "process", "command": ["a\u{0}"], "bundle": "file:///x"}))
                .contains("command")
        );
        assert!(
            refuse(json!({"type": "process", "command": ["a"], "bundle": "https://x/y"}))
                .contains("file://")
        );
        let escaping = json!({"runtime": {"type": "process", "command": ["a"], "bundle": "file:///x"},
                              "migrations": {"path": "../../etc"}});
        assert!(ProcessRuntimeSpec::from_manifest(&escaping).is_err());
    }

    #[test]
    fn quantities_parse_like_kubernetes_ones() {
        assert_eq!(parse_cpu("0.5"), Ok(500));
        assert_eq!(parse_cpu("2"), Ok(2000));
        assert!(parse_cpu("0m").is_err());
        assert!(parse_cpu("-1").is_err());
        assert_eq!(parse_memory("1Gi"), Ok(1 << 30));
        assert_eq!(parse_memory("4096"), Ok(4096));
        assert!(parse_memory("99999999999999999999Gi").is_err());
        assert!(parse_memory("Mi").is_err());
    }
}
