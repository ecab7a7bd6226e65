//! The registry's side of a plugin in GraphQL (labels, rating, versions, adoption), loaded in
//! batches so that a page of plugins costs a fixed number of statements whatever its size,
//! and the registry's full-text search and autocomplete.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::Loader;
use async_graphql::{InputObject, SimpleObject};
use chrono::{DateTime, Utc};
use event_schemas::status::PluginStatus;
use sqlx::PgPool;

use crate::schema::CATALOG;

/// The columns of a published version, as GraphQL and REST serve it.
pub(crate) const VERSION_COLUMNS: &str = "plugin_id, version, release_notes, yanked, yank_reason,
     deprecated, deprecation_message, published_at";

/// Loads the registry's rows of many plugins at once.
pub struct RegistryLoader {
    pub pool: PgPool,
}

/// How the marketplace shows a plugin (M2.4): its categories and tags (kebab-case labels)
/// and whether a super admin verified it.
#[derive(Debug, Clone, Default, SimpleObject, sqlx::FromRow)]
pub struct Labels {
    pub categories: Vec<String>,
    pub tags: Vec<String>,
    pub verified: bool,
}

/// The plugin's reviews in brief: `average` is none before the first review.
#[derive(Debug, Clone, Default, SimpleObject)]
pub struct Rating {
    pub average: Option<f64>,
    pub count: i64,
}

/// A published version of a plugin.
#[derive(Debug, Clone, SimpleObject, sqlx::FromRow)]
pub struct PluginVersion {
    #[graphql(skip)]
    pub plugin_id: String,
    pub version: String,
    pub release_notes: Option<String>,
    pub yanked: bool,
    pub yank_reason: Option<String>,
    pub deprecated: bool,
    pub deprecation_message: Option<String>,
    pub published_at: DateTime<Utc>,
}

/// Keys of the batches: one type per kind of row, all keyed by plugin id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LabelsOf(pub String);
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RatingOf(pub String);
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VersionsOf(pub String);
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TenantCountOf(pub String);

type LoadError = Arc<sqlx::Error>;

fn ids<K>(keys: &[K], id: impl Fn(&K) -> &String) -> Vec<String> {
    keys.iter().map(|k| id(k).clone()).collect()
}

impl Loader<LabelsOf> for RegistryLoader {
    type Value = Labels;
    type Error = LoadError;

    async fn load(&self, keys: &[LabelsOf]) -> Result<HashMap<LabelsOf, Labels>, LoadError> {
        let rows: Vec<(String, Vec<String>, Vec<String>, bool)> = sqlx::query_as(&format!(
            "SELECT plugin_id, categories, tags, verified FROM {CATALOG}.plugin_registry
             WHERE plugin_id = ANY($1)"
        ))
        .bind(ids(keys, |k| &k.0))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, categories, tags, verified)| {
                let labels = Labels {
                    categories,
                    tags,
                    verified,
                };
                (LabelsOf(id), labels)
            })
            .collect())
    }
}

impl Loader<RatingOf> for RegistryLoader {
    type Value = Rating;
    type Error = LoadError;

    async fn load(&self, keys: &[RatingOf]) -> Result<HashMap<RatingOf, Rating>, LoadError> {
        let rows: Vec<(String, Option<f64>, i64)> = sqlx::query_as(&format!(
            "SELECT plugin_id, avg(rating)::float8, count(*) FROM {CATALOG}.plugin_reviews
             WHERE plugin_id = ANY($1) GROUP BY plugin_id"
        ))
        .bind(ids(keys, |k| &k.0))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, average, count)| (RatingOf(id), Rating { average, count }))
            .collect())
    }
}

impl Loader<VersionsOf> for RegistryLoader {
    type Value = Vec<PluginVersion>;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[VersionsOf],
    ) -> Result<HashMap<VersionsOf, Vec<PluginVersion>>, LoadError> {
        let rows: Vec<PluginVersion> = sqlx::query_as(&format!(
            "SELECT {VERSION_COLUMNS}
             FROM {CATALOG}.plugin_versions WHERE plugin_id = ANY($1)
             ORDER BY plugin_id, published_at, version"
        ))
        .bind(ids(keys, |k| &k.0))
        .fetch_all(&self.pool)
        .await?;
        let mut versions: HashMap<VersionsOf, Vec<PluginVersion>> = HashMap::new();
        for row in rows {
            versions
                .entry(VersionsOf(row.plugin_id.clone()))
                .or_default()
                .push(row);
        }
        Ok(versions)
    }
}

impl Loader<TenantCountOf> for RegistryLoader {
    type Value = i64;
    type Error = LoadError;

    async fn load(&self, keys: &[TenantCountOf]) -> Result<HashMap<TenantCountOf, i64>, LoadError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(&format!(
            "SELECT tp.plugin_id, count(*) FROM {CATALOG}.tenant_plugins tp
             JOIN {CATALOG}.tenants t ON t.id = tp.tenant_id AND t.status <> 'DELETED'
             WHERE tp.enabled AND tp.plugin_id = ANY($1) GROUP BY tp.plugin_id"
        ))
        .bind(ids(keys, |k| &k.0))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, count)| (TenantCountOf(id), count))
            .collect())
    }
}

/// Which plugins a list shows; every field narrows it.
#[derive(Debug, Default, InputObject)]
pub struct PluginFilter {
    pub status: Option<PluginStatus>,
    /// Plugins labelled with this category.
    pub category: Option<String>,
    /// Plugins labelled with this tag.
    pub tag: Option<String>,
    /// Full-text search over name, description, categories and tags.
    pub search: Option<String>,
    /// Only plugins a super admin verified (`true`), or only the others (`false`).
    pub verified: Option<bool>,
}

/// The document a plugin is found by: its name weighs most, then its labels, then its
/// description. `p` is the plugin row, `r` its (optional) registry row.
pub const SEARCH_DOCUMENT: &str = "(setweight(to_tsvector('simple', p.name || ' ' || p.id), 'A')
     || setweight(to_tsvector('simple',
            array_to_string(coalesce(r.categories, '{}') || coalesce(r.tags, '{}'), ' ')), 'B')
     || setweight(to_tsvector('simple', coalesce(p.description, '')), 'C'))";

/// The words of a partly typed query, each as a prefix: `crm de` → `crm:* & de:*`. Only
/// letters, digits and `-` survive, so the text never reaches the tsquery parser raw.
pub fn prefix_query(text: &str) -> Option<String> {
    let words: Vec<String> = text
        .split(|c: char| !(c.is_alphanumeric() || c == '-'))
        .flat_map(|word| word.split('-'))
        .filter(|word| !word.is_empty())
        .map(|word| format!("{}:*", word.to_lowercase()))
        .collect();
    (!words.is_empty()).then(|| words.join(" & "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_query_keeps_only_words() {
        assert_eq!(prefix_query("CRM de"), Some("crm:* & de:*".to_owned()));
        assert_eq!(
            prefix_query("sales-pipe'); DROP"),
            Some("sales:* & pipe:* & drop:*".to_owned())
        );
        assert_eq!(prefix_query(" &|! "), None);
    }
}
