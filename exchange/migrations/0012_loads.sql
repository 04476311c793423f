-- A provider's full load (gdx node sync --full): open while its rows arrive as pushed batches.
-- Subscribers that start from nothing meanwhile read the change log rather than a snapshot taken
-- mid-load (exchange/routes/snapshots.py).
CREATE TABLE resource_load (
    id             uuid PRIMARY KEY,
    resource_id    bigint NOT NULL REFERENCES resource (id),
    department     text NOT NULL REFERENCES department (id),
    started_at     timestamptz NOT NULL DEFAULT now(),
    progressed_at  timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz,
    rows           bigint NOT NULL DEFAULT 0,
    position       bigint  -- the resource's last sequence number when the load finished
);
CREATE UNIQUE INDEX resource_load_open ON resource_load (resource_id) WHERE finished_at IS NULL;
