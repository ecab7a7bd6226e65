CREATE TABLE deals (
    id           uuid PRIMARY KEY,
    contact_id   uuid NOT NULL REFERENCES contacts (id),
    title        text NOT NULL,
    amount_cents bigint NOT NULL CHECK (amount_cents >= 0),
    currency     char(3) NOT NULL,
    stage        text NOT NULL DEFAULT 'open' CHECK (stage IN ('open', 'won')),
    won_at       timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX deals_by_creation ON deals (created_at DESC, id);
