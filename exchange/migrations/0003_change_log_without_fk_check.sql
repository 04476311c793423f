-- The change log's rows name their resource without a foreign key. The key's check was a
-- lookup of the resource for every pushed change: a third of PostgreSQL's time applying a
-- batch of 1,000. A push holds its resource's row lock while it writes (so the resource is
-- there), and a catalog entry cannot be deleted: its versions (resource_version) keep it.
ALTER TABLE change DROP CONSTRAINT change_resource_id_fkey;
