-- Refused while an invoice has no contact: a down migration does not invent one.
ALTER TABLE invoices ALTER COLUMN contact_id SET NOT NULL;
