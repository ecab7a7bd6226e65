-- Partition ownership of the command processor (DESIGN.md section 4). A processor that takes
-- partition p bumps its epoch and fences the event topics with it; a processor whose epoch is
-- no longer current publishes nothing.
CREATE TABLE command_leases (
    partition integer PRIMARY KEY,
    epoch bigint NOT NULL CHECK (epoch > 0),
    owner text NOT NULL,
    acquired_at timestamptz NOT NULL DEFAULT now()
);
