-- Runs in each tenant's schema (search_path is set to it).
CREATE TABLE notes (
    id bigserial PRIMARY KEY,
    body text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
