//! What the frontend shell loads for a tenant (spec 004 FR-011, FR-012, FR-015): the plugins
//! the tenant enabled that serve now, with their module federation entries, and the
//! translation namespaces of its enabled plugins per locale.

use async_graphql::{
    Context, ID, InputValueError, InputValueResult, Object, Result, Scalar, ScalarType,
    SimpleObject, Value,
};
use infra::policy::Principal;
use serde::Deserialize;
use sqlx::PgPool;

use crate::schema::{CATALOG, EXPENSIVE, can_read_tenant, coded_error, internal, viewer};

/// A locale as plugins declare them: a language, and a region if any (`en`, `pt-BR`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locale(String);

impl Locale {
    fn parse(text: &str) -> Option<Self> {
        let (language, region) = match text.split_once('-') {
            Some((language, region)) => (language, Some(region)),
            None => (text, None),
        };
        let letters =
            |part: &str, case: fn(&u8) -> bool| part.len() == 2 && part.as_bytes().iter().all(case);
        (letters(language, u8::is_ascii_lowercase)
            && region.is_none_or(|region| letters(region, u8::is_ascii_uppercase)))
        .then(|| Locale(text.to_owned()))
    }
}

#[Scalar(name = "Locale")]
impl ScalarType for Locale {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(text) => Locale::parse(text).ok_or_else(|| {
                InputValueError::custom(format!(
                    "`{text}` is not a locale: two lower-case letters, then `-` and two upper-case ones if a region (`en`, `pt-BR`)"
                ))
            }),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.clone())
    }
}

/// A plugin the shell mounts.
#[derive(Debug, Clone, SimpleObject)]
pub struct ShellPlugin {
    pub id: String,
    pub name: String,
    pub version: String,
    /// The module federation entry (`remoteEntry.js`) the shell loads.
    pub remote_entry: String,
    /// Where the shell mounts the plugin's routes, if it has any.
    pub route_prefix: Option<String>,
    /// The modules the plugin exposes, as its manifest declares them.
    pub exposes: async_graphql::Json<serde_json::Value>,
}

/// The translation namespaces one plugin has in one locale.
#[derive(Debug, Clone, SimpleObject)]
pub struct PluginTranslations {
    pub plugin_id: String,
    pub locale: String,
    pub namespaces: Vec<String>,
}

#[derive(Debug, Clone, SimpleObject)]
pub struct Shell {
    pub tenant_id: ID,
    /// The enabled plugins that are ACTIVE and healthy and have a frontend, by id.
    pub plugins: Vec<ShellPlugin>,
    /// The translations of every enabled, ACTIVE plugin, by plugin and locale.
    pub translations: Vec<PluginTranslations>,
}

#[derive(Default)]
pub struct ShellQuery;

#[Object]
impl ShellQuery {
    /// What the frontend shell of a tenant loads. A tenant admin's tenant is the token's; a
    /// super admin names it. `locale` narrows the translations to one locale.
    #[graphql(complexity = "EXPENSIVE + child_complexity")]
    async fn shell(
        &self,
        ctx: &Context<'_>,
        tenant_id: Option<ID>,
        locale: Option<Locale>,
    ) -> Result<Shell> {
        let claims = viewer(ctx)?;
        let tenant = match (&tenant_id, Principal::of(claims).tenant()) {
            (Some(id), _) => uuid::Uuid::parse_str(id).map_err(|_| {
                coded_error("BAD_USER_INPUT", format!("`{}` is not a tenant id", id.0))
            })?,
            (None, Some(own)) => own,
            (None, None) => {
                return Err(coded_error(
                    "BAD_USER_INPUT",
                    "name the tenant: `tenantId` (a super admin's token has none)",
                ));
            }
        };
        if !can_read_tenant(claims, tenant) {
            return Err(coded_error("FORBIDDEN", "this tenant is not yours to read"));
        }
        let pool = ctx.data::<PgPool>()?;
        let rows: Vec<EnabledPlugin> = sqlx::query_as(&format!(
            "SELECT p.id, p.name, p.version, p.manifest, (h.status = 'HEALTHY') IS TRUE AS healthy
             FROM {CATALOG}.tenant_plugins tp
             JOIN {CATALOG}.tenants t ON t.id = tp.tenant_id AND t.status = 'ACTIVE'
             JOIN {CATALOG}.plugins p ON p.id = tp.plugin_id AND p.status = 'ACTIVE'
             LEFT JOIN {CATALOG}.plugin_health h ON h.plugin_id = p.id
             WHERE tp.tenant_id = $1 AND tp.enabled
             ORDER BY p.id"
        ))
        .bind(tenant)
        .fetch_all(pool)
        .await
        .map_err(internal)?;
        Ok(shell_of(tenant, rows, locale.as_ref()))
    }
}

#[derive(sqlx::FromRow)]
struct EnabledPlugin {
    id: String,
    name: String,
    version: String,
    manifest: serde_json::Value,
    healthy: bool,
}

/// The manifest's parts the shell reads (spec 004 §7); a manifest passed its schema when it
/// was registered, so a part that does not read here is left out, not an error.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ShellParts {
    frontend: Option<Frontend>,
    #[serde(default)]
    translations: Translations,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Frontend {
    remote_entry: String,
    route_prefix: Option<String>,
    #[serde(default)]
    exposes: serde_json::Value,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Translations {
    #[serde(default)]
    namespaces: Vec<String>,
    #[serde(default)]
    supported_locales: Vec<String>,
}

fn shell_of(tenant: uuid::Uuid, rows: Vec<EnabledPlugin>, locale: Option<&Locale>) -> Shell {
    let mut plugins = Vec::new();
    let mut translations = Vec::new();
    for row in rows {
        let parts: ShellParts = serde_json::from_value(row.manifest).unwrap_or_default();
        if !parts.translations.namespaces.is_empty() {
            for supported in &parts.translations.supported_locales {
                if locale.is_none_or(|wanted| &wanted.0 == supported) {
                    translations.push(PluginTranslations {
                        plugin_id: row.id.clone(),
                        locale: supported.clone(),
                        namespaces: parts.translations.namespaces.clone(),
                    });
                }
            }
        }
        if let Some(frontend) = parts.frontend
            && row.healthy
        {
            plugins.push(ShellPlugin {
                id: row.id,
                name: row.name,
                version: row.version,
                remote_entry: frontend.remote_entry,
                route_prefix: frontend.route_prefix,
                exposes: async_graphql::Json(frontend.exposes),
            });
        }
    }
    Shell {
        tenant_id: ID(tenant.to_string()),
        plugins,
        translations,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_locale_is_a_language_and_maybe_a_region() {
        for good in ["en", "pt-BR"] {
            assert_eq!(Locale::parse(good), Some(Locale(good.to_owned())));
        }
        for bad in [
            "", "EN", "en-br", "eng", "en-BRA", "en_BR", "en-", "é", "en\0",
        ] {
            assert_eq!(Locale::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_shell_mounts_healthy_plugins_with_a_frontend_and_translates_every_enabled_one() {
        let plugin = |id: &str, healthy: bool, manifest: serde_json::Value| EnabledPlugin {
            id: id.into(),
            name: id.to_uppercase(),
            version: "1.0.0".into(),
            manifest,
            healthy,
        };
        let frontend = serde_json::json!({
            "frontend": {"remoteEntry": "http://cdn/crm/remoteEntry.js", "routePrefix": "/crm",
                         "exposes": {"./App": "./src/App"}},
            "translations": {"namespaces": ["crm"], "supportedLocales": ["en", "it"]}
        });
        let rows = vec![
            plugin("crm", true, frontend.clone()),
            plugin("down", false, frontend),
            plugin("headless", true, serde_json::json!({})),
        ];
        let italian = Locale::parse("it");
        let shell = shell_of(uuid::Uuid::nil(), rows, italian.as_ref());
        let mounted: Vec<&str> = shell.plugins.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(mounted, ["crm"]);
        assert_eq!(shell.plugins[0].route_prefix.as_deref(), Some("/crm"));
        let translated: Vec<(&str, &str)> = shell
            .translations
            .iter()
            .map(|t| (t.plugin_id.as_str(), t.locale.as_str()))
            .collect();
        assert_eq!(translated, [("crm", "it"), ("down", "it")]);
    }
}
