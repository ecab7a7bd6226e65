CREATE TABLE invoices (
    id           uuid PRIMARY KEY,
    deal_id      uuid NOT NULL UNIQUE,
    contact_id   uuid NOT NULL,
    title        text NOT NULL,
    amount_cents bigint NOT NULL,
    currency     char(3) NOT NULL,
    status       text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'paid')),
    -- The crm event it was issued for.
    issued_for   uuid NOT NULL,
    issued_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX invoices_by_issue ON invoices (issued_at DESC, id);
