-- The embedded Confluent-compatible schema registry (crate `schema-registry`), used when no
-- external registry is configured.

-- One row per distinct schema: its id is global, shared by every subject registering it.
CREATE TABLE schema_registry_schemas (
    id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The parsed schema re-serialised by apache-avro: whitespace and attribute order do not make
    -- a new schema, defaults, docs and logical types do.
    canonical text NOT NULL,
    -- sha256 of `canonical`. Uniqueness goes through the digest because a btree entry cannot
    -- exceed about 2.7 kB and event schemas are often larger.
    fingerprint bytea NOT NULL UNIQUE CHECK (octet_length(fingerprint) = 32),
    -- The text of the first registration, served back verbatim.
    schema text NOT NULL
);

CREATE TABLE schema_registry_subject_versions (
    subject text NOT NULL,
    version integer NOT NULL CHECK (version > 0),
    schema_id integer NOT NULL REFERENCES schema_registry_schemas (id),
    registered_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subject, version),
    UNIQUE (subject, schema_id)
);

CREATE INDEX schema_registry_subject_versions_schema_id
    ON schema_registry_subject_versions (schema_id);

-- Compatibility levels; subject '' is the global level. Without a global row the registry
-- applies FULL_TRANSITIVE.
CREATE TABLE schema_registry_config (
    subject text PRIMARY KEY,
    compatibility text NOT NULL CHECK (compatibility IN (
        'NONE', 'BACKWARD', 'BACKWARD_TRANSITIVE', 'FORWARD', 'FORWARD_TRANSITIVE', 'FULL',
        'FULL_TRANSITIVE'
    ))
);
