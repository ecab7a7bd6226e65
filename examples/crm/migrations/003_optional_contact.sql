-- A deal may be with no contact the CRM knows (a lead not yet entered).
ALTER TABLE deals ALTER COLUMN contact_id DROP NOT NULL;
