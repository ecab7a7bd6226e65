-- Rebuilds of a projection without downtime (POST /api/v1/admin/projections/{name}/rebuild).
-- A new generation fills a shadow schema from offset 0 while the current one serves, and is
-- swapped in when it has caught up. Every projections process watches this table; one claims a
-- rebuild and keeps `heartbeat_at` fresh, so another takes it over if that process dies.
CREATE TABLE projection_rebuilds (
    id uuid PRIMARY KEY,
    projection text NOT NULL,
    status text NOT NULL CHECK (status IN ('REQUESTED', 'RUNNING', 'SWAPPED', 'FAILED')),
    requested_by text NOT NULL,
    requested_at timestamptz NOT NULL DEFAULT now(),
    -- The process running it, and when it last said so.
    owner text,
    heartbeat_at timestamptz,
    started_at timestamptz,
    finished_at timestamptz,
    -- Records of the projection's topics the new generation has read, of those in the log.
    events_done bigint NOT NULL DEFAULT 0,
    events_total bigint NOT NULL DEFAULT 0,
    error text
);

-- One rebuild of a projection at a time: its shadow schema has one name.
CREATE UNIQUE INDEX projection_rebuilds_one_at_a_time
    ON projection_rebuilds (projection) WHERE status IN ('REQUESTED', 'RUNNING');

CREATE INDEX projection_rebuilds_latest ON projection_rebuilds (projection, requested_at DESC);
