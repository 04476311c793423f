-- Superseded versions of a key leave the change log once they are older than the retention
-- period (exchange/retention.py). Each round, the compactor notes how far each resource's log had
-- come (change_mark); changes up to the newest mark older than the period are old enough. The
-- newest version of every key, deletions included, always stays: a subscriber however far behind
-- still reaches the provider's state by reading on.
CREATE TABLE change_mark (
    resource_id  bigint NOT NULL REFERENCES resource (id),
    marked_at    timestamptz NOT NULL,
    last_seq     bigint NOT NULL,
    PRIMARY KEY (resource_id, marked_at)
);
ALTER TABLE resource ADD COLUMN compacted_through bigint NOT NULL DEFAULT 0;
