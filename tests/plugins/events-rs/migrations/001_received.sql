CREATE TABLE received (
    event_id uuid PRIMARY KEY,
    event_type text NOT NULL,
    user_id text,
    correlation_id text,
    causation_id uuid,
    traceparent text,
    body text NOT NULL
);
