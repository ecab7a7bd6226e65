-- Refused while a deal has no contact: a down migration does not invent one.
ALTER TABLE deals ALTER COLUMN contact_id SET NOT NULL;
