//! The plugin manifest (spec 004 §7), parsed once at the edge into typed values.

use std::collections::HashSet;
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::PluginId;
use crate::rejection::FieldError;

/// The manifest's JSON Schema, as published by the API.
pub const MANIFEST_SCHEMA: &str = include_str!("manifest.schema.json");

static VALIDATOR: LazyLock<jsonschema::Validator> = LazyLock::new(|| {
    let schema: Value =
        serde_json::from_str(MANIFEST_SCHEMA).expect("the checked-in manifest schema is JSON");
    jsonschema::validator_for(&schema).expect("the checked-in manifest schema is a valid schema")
});

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dependency {
    pub plugin: PluginId,
    #[serde(rename = "version")]
    pub requirement: semver::VersionReq,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permission {
    pub key: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A manifest that passed the schema and the rules the schema cannot say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub id: PluginId,
    pub name: String,
    pub version: semver::Version,
    pub description: Option<String>,
    pub dependencies: Vec<Dependency>,
    pub permissions: Vec<Permission>,
    /// The JSON Schema a tenant's configuration must satisfy, if the plugin has settings.
    pub configuration_schema: Option<Value>,
    /// The manifest as submitted: stored and served verbatim.
    document: Value,
}

/// The parts of the manifest the domain reasons about; the rest stays in the document.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Typed {
    id: PluginId,
    name: String,
    version: String,
    description: Option<String>,
    #[serde(default)]
    dependencies: Vec<RawDependency>,
    #[serde(default)]
    permissions: Vec<Permission>,
    configuration: Option<Configuration>,
    #[serde(default)]
    events: Events,
}

#[derive(Deserialize, Default)]
struct Events {
    #[serde(default)]
    publishes: Vec<String>,
    #[serde(default)]
    subscribes: Vec<String>,
}

#[derive(Deserialize)]
struct RawDependency {
    plugin: PluginId,
    version: String,
}

#[derive(Deserialize)]
struct Configuration {
    schema: Option<Value>,
}

impl Manifest {
    /// Parses a submitted manifest, reporting every problem at once with its JSON pointer.
    pub fn parse(document: Value) -> Result<Self, Vec<FieldError>> {
        let schema_errors: Vec<FieldError> = VALIDATOR
            .iter_errors(&document)
            .map(|e| FieldError::new(e.instance_path.to_string(), e.to_string()))
            .collect();
        if !schema_errors.is_empty() {
            return Err(schema_errors);
        }
        let typed: Typed = serde_json::from_value(document.clone())
            .map_err(|e| vec![FieldError::new("", e.to_string())])?;

        let mut errors = Vec::new();
        let version = semver::Version::parse(&typed.version)
            .map_err(|e| {
                errors.push(FieldError::new(
                    "/version",
                    format!("not a semantic version: {e}"),
                ))
            })
            .ok();
        let mut dependencies = Vec::with_capacity(typed.dependencies.len());
        let mut seen_dependencies = HashSet::new();
        for (i, dependency) in typed.dependencies.into_iter().enumerate() {
            if dependency.plugin == typed.id {
                errors.push(FieldError::new(
                    format!("/dependencies/{i}/plugin"),
                    "a plugin cannot depend on itself",
                ));
            }
            if !seen_dependencies.insert(dependency.plugin.clone()) {
                errors.push(FieldError::new(
                    format!("/dependencies/{i}/plugin"),
                    format!("`{}` is listed twice", dependency.plugin),
                ));
            }
            match semver::VersionReq::parse(&dependency.version) {
                Ok(requirement) => dependencies.push(Dependency {
                    plugin: dependency.plugin,
                    requirement,
                }),
                Err(e) => errors.push(FieldError::new(
                    format!("/dependencies/{i}/version"),
                    format!("not a semver range: {e}"),
                )),
            }
        }
        let mut seen_keys = HashSet::new();
        for (i, permission) in typed.permissions.iter().enumerate() {
            if !seen_keys.insert(permission.key.as_str()) {
                errors.push(FieldError::new(
                    format!("/permissions/{i}/key"),
                    format!("permission `{}` is declared twice", permission.key),
                ));
            }
        }
        // A plugin writes only its own topic: never `core.*`, never another plugin's types.
        let own = format!("plugin.{}.", typed.id);
        for (i, event_type) in typed.events.publishes.iter().enumerate() {
            if event_type.len() <= own.len() || !event_type.starts_with(&own) {
                errors.push(FieldError::new(
                    format!("/events/publishes/{i}"),
                    format!(
                        "`{event_type}` is not this plugin's: its event types are `{own}<name>`"
                    ),
                ));
            }
        }
        for (i, event_type) in typed.events.subscribes.iter().enumerate() {
            if !is_event_type(event_type) {
                errors.push(FieldError::new(
                    format!("/events/subscribes/{i}"),
                    format!(
                        "`{event_type}` is neither a core event type nor a plugin's (`plugin.<pluginId>.<name>`)"
                    ),
                ));
            }
        }
        let configuration_schema = typed.configuration.and_then(|c| c.schema);
        // Compiled, not only checked against the meta-schema: a schema that cannot compile
        // (a bad regex, a remote `$ref`) would fail every tenant that enables the plugin.
        if let Some(schema) = &configuration_schema
            && let Err(e) = jsonschema::validator_for(schema)
        {
            errors.push(FieldError::new(
                "/configuration/schema",
                format!("not a usable JSON Schema: {e}"),
            ));
        }
        match version {
            Some(version) if errors.is_empty() => Ok(Self {
                id: typed.id,
                name: typed.name,
                version,
                description: typed.description,
                dependencies,
                permissions: typed.permissions,
                configuration_schema,
                document,
            }),
            _ => Err(errors),
        }
    }

    pub fn document(&self) -> &Value {
        &self.document
    }
}

/// Whether `event_type` names an event of the log: a core type, or `plugin.<pluginId>.<name>`.
fn is_event_type(event_type: &str) -> bool {
    if event_schemas::CoreEvent::types().any(|core| core == event_type) {
        return true;
    }
    event_type
        .strip_prefix("plugin.")
        .and_then(|rest| rest.split_once('.'))
        .is_some_and(|(plugin, name)| PluginId::parse(plugin).is_ok() && !name.is_empty())
}

impl Serialize for Manifest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.document.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Manifest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let document = Value::deserialize(deserializer)?;
        Manifest::parse(document).map_err(|errors| {
            let detail: Vec<String> = errors.iter().map(ToString::to_string).collect();
            serde::de::Error::custom(format!("invalid manifest: {}", detail.join("; ")))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn crm() -> Value {
        json!({
            "id": "crm",
            "name": "CRM",
            "version": "1.2.0",
            "description": "Deals and contacts",
            "runtime": {"type": "typescript", "image": "registry.plexica.io/crm:1.2.0",
                        "resources": {"cpu": "500m", "memory": "512Mi"}},
            "dependencies": [{"plugin": "contacts", "version": "^2.1"}],
            "permissions": [{"key": "crm.deals.read", "name": "Read deals"}],
            "configuration": {"schema": {"type": "object",
                "properties": {"dealStages": {"type": "array", "items": {"type": "string"}}}}}
        })
    }

    #[test]
    fn a_configuration_schema_that_cannot_compile_is_refused() {
        for schema in [
            json!({"type": "string", "pattern": "(unclosed"}),
            json!({"$ref": "https://example.com/schema.json"}),
        ] {
            let mut document = crm();
            document["configuration"]["schema"] = schema.clone();
            let errors = Manifest::parse(document).expect_err("refused");
            assert_eq!(errors[0].pointer, "/configuration/schema", "{schema}");
        }
    }

    #[test]
    fn a_complete_manifest_parses_into_typed_values() {
        let manifest = Manifest::parse(crm()).expect("valid");
        assert_eq!(manifest.id.as_str(), "crm");
        assert_eq!(manifest.version, semver::Version::new(1, 2, 0));
        assert!(
            manifest.dependencies[0]
                .requirement
                .matches(&semver::Version::new(2, 3, 0))
        );
        assert_eq!(manifest.document(), &crm());
    }

    #[test]
    fn every_field_error_is_reported_at_once_with_its_pointer() {
        let mut document = crm();
        document["id"] = json!("Not Kebab");
        document["permissions"][0]["key"] = json!(42);
        document["surprise"] = json!(true);
        let errors = Manifest::parse(document).expect_err("invalid");
        let pointers: Vec<&str> = errors.iter().map(|e| e.pointer.as_str()).collect();
        assert!(pointers.contains(&"/id"), "{errors:?}");
        assert!(pointers.contains(&"/permissions/0/key"), "{errors:?}");
        assert!(
            pointers.contains(&""),
            "unknown field reported at the root: {errors:?}"
        );
    }

    #[test]
    fn a_plugin_declares_only_its_own_events_and_known_subscriptions() {
        let mut document = crm();
        document["events"] = json!({
            "publishes": ["plugin.crm.deal.won", "core.plugin.installed", "plugin.billing.invoice.paid", "plugin.crm."],
            "subscribes": ["core.tenant.created", "plugin.billing.invoice.paid", "core.nothing", "plugin.Bad.x", "plugin.crm"]
        });
        let errors = Manifest::parse(document).expect_err("invalid");
        let pointers: Vec<&str> = errors.iter().map(|e| e.pointer.as_str()).collect();
        assert_eq!(
            pointers,
            [
                "/events/publishes/1",
                "/events/publishes/2",
                "/events/publishes/3",
                "/events/subscribes/2",
                "/events/subscribes/3",
                "/events/subscribes/4"
            ]
        );
    }

    #[test]
    fn rules_beyond_the_schema_are_checked_too() {
        let mut document = crm();
        document["version"] = json!("1.2");
        document["dependencies"] = json!([
            {"plugin": "crm", "version": "^1"},
            {"plugin": "billing", "version": "not a range"}
        ]);
        document["permissions"] = json!([
            {"key": "crm.deals.read", "name": "a"},
            {"key": "crm.deals.read", "name": "b"}
        ]);
        let errors = Manifest::parse(document).expect_err("invalid");
        let pointers: Vec<&str> = errors.iter().map(|e| e.pointer.as_str()).collect();
        for expected in [
            "/version",
            "/dependencies/0/plugin",
            "/dependencies/1/version",
            "/permissions/1/key",
        ] {
            assert!(
                pointers.contains(&expected),
                "{expected} missing in {errors:?}"
            );
        }
    }
}
