CREATE TABLE contacts (
    id         uuid PRIMARY KEY,
    name       text NOT NULL,
    email      text,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX contacts_by_creation ON contacts (created_at DESC, id);
