-- A won deal may name no contact.
ALTER TABLE invoices ALTER COLUMN contact_id DROP NOT NULL;
