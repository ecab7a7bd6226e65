//! The catalog's tables.

/// The catalog's tables in `schema`. Columns added after the first release come as
/// `ADD COLUMN IF NOT EXISTS`, so an existing catalog gains them without a rebuild.
pub(super) fn ddl(schema: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {schema}.plugins (
             id text PRIMARY KEY,
             name text NOT NULL,
             version text NOT NULL,
             description text,
             status text NOT NULL,
             manifest jsonb NOT NULL,
             aggregate_version bigint NOT NULL,
             created_at timestamptz NOT NULL,
             updated_at timestamptz NOT NULL
         );
         CREATE TABLE IF NOT EXISTS {schema}.tenants (
             id uuid PRIMARY KEY,
             slug text NOT NULL,
             name text NOT NULL,
             status text NOT NULL,
             aggregate_version bigint NOT NULL,
             created_at timestamptz NOT NULL,
             updated_at timestamptz NOT NULL
         );
         CREATE INDEX IF NOT EXISTS tenants_slug ON {schema}.tenants (slug);
         -- Spec 004's tenant_plugins: a row from the tenant's first enablement on; a
         -- disablement keeps it, configuration included. `aggregate_version` is the tenant's.
         CREATE TABLE IF NOT EXISTS {schema}.tenant_plugins (
             tenant_id uuid NOT NULL,
             plugin_id text NOT NULL,
             enabled boolean NOT NULL,
             configuration jsonb NOT NULL,
             plugin_version text NOT NULL,
             aggregate_version bigint NOT NULL,
             enabled_at timestamptz NOT NULL,
             updated_at timestamptz NOT NULL,
             PRIMARY KEY (tenant_id, plugin_id)
         );
         -- The last install step completed, while INSTALLING.
         ALTER TABLE {schema}.plugins ADD COLUMN IF NOT EXISTS install_step text;
         -- The version an update is installing, while it runs.
         ALTER TABLE {schema}.plugins ADD COLUMN IF NOT EXISTS pending_version text;
         -- Why the last install or update failed, until the next attempt.
         ALTER TABLE {schema}.plugins ADD COLUMN IF NOT EXISTS last_error text;
         -- Why the platform disabled the plugin, while DISABLED.
         ALTER TABLE {schema}.plugins ADD COLUMN IF NOT EXISTS status_reason text;
         -- A plugin's registry entry, keyed by plugin id but versioned by its own aggregate
         -- (`registry:{{id}}`), and kept apart from `plugins` because its events are on
         -- another topic and may be read before the plugin's registration.
         CREATE TABLE IF NOT EXISTS {schema}.plugin_registry (
             plugin_id text PRIMARY KEY,
             categories text[] NOT NULL DEFAULT '{{}}',
             tags text[] NOT NULL DEFAULT '{{}}',
             aggregate_version bigint NOT NULL,
             updated_at timestamptz NOT NULL
         );
         CREATE INDEX IF NOT EXISTS plugin_registry_categories
             ON {schema}.plugin_registry USING gin (categories);
         CREATE INDEX IF NOT EXISTS plugin_registry_tags
             ON {schema}.plugin_registry USING gin (tags);
         -- A super admin vouches for the plugin in the marketplace.
         ALTER TABLE {schema}.plugin_registry
             ADD COLUMN IF NOT EXISTS verified boolean NOT NULL DEFAULT false;
         CREATE TABLE IF NOT EXISTS {schema}.plugin_versions (
             plugin_id text NOT NULL,
             version text NOT NULL,
             manifest jsonb NOT NULL,
             release_notes text,
             yanked boolean NOT NULL DEFAULT false,
             yank_reason text,
             deprecated boolean NOT NULL DEFAULT false,
             deprecation_message text,
             published_at timestamptz NOT NULL,
             PRIMARY KEY (plugin_id, version)
         );
         -- Every event applied, by aggregate: the history of who did what, when, from which
         -- command, and the steps of an operation (a saga's events share its correlation id).
         CREATE TABLE IF NOT EXISTS {schema}.event_history (
             topic text NOT NULL,
             partition integer NOT NULL,
             log_offset bigint NOT NULL,
             aggregate_key text NOT NULL,
             aggregate_version bigint,
             event_type text NOT NULL,
             event_id uuid NOT NULL,
             occurred_at timestamptz NOT NULL,
             user_id text,
             tenant_id text,
             causation_id uuid,
             correlation_id text,
             PRIMARY KEY (topic, partition, log_offset)
         );
         CREATE INDEX IF NOT EXISTS event_history_aggregate
             ON {schema}.event_history (aggregate_key, aggregate_version);
         CREATE INDEX IF NOT EXISTS event_history_correlation
             ON {schema}.event_history (correlation_id);
         CREATE TABLE IF NOT EXISTS {schema}.plugin_reviews (
             plugin_id text NOT NULL,
             reviewer text NOT NULL,
             rating smallint NOT NULL CHECK (rating BETWEEN 1 AND 5),
             comment text,
             submitted_at timestamptz NOT NULL,
             updated_at timestamptz NOT NULL,
             PRIMARY KEY (plugin_id, reviewer)
         );
         CREATE TABLE IF NOT EXISTS {schema}.permissions (
             plugin_id text NOT NULL,
             key text NOT NULL,
             name text NOT NULL,
             description text,
             PRIMARY KEY (plugin_id, key)
         );
         CREATE TABLE IF NOT EXISTS {schema}.plugin_health (
             plugin_id text PRIMARY KEY,
             version text NOT NULL,
             status text NOT NULL,
             since timestamptz NOT NULL,
             last_error text,
             restarts bigint NOT NULL,
             address text,
             aggregate_version bigint NOT NULL
         );
         {webhooks}
         {totals}",
        webhooks = super::webhooks::table(schema),
        totals = super::totals::table(schema)
    )
}
