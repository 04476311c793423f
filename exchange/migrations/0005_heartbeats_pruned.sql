-- Only the newest heartbeats of each resource stay in the change log (HEARTBEATS_KEPT in
-- exchange/routes/changes.py); this index finds the older ones without reading the data changes.
CREATE INDEX change_heartbeat ON change (resource_id, seq) WHERE op = 'h';

-- The heartbeats that piled up before: all but the newest 720 of each resource go.
DELETE FROM change c
USING (
    SELECT resource_id, seq
    FROM (
        SELECT resource_id, seq, row_number() OVER (PARTITION BY resource_id ORDER BY seq DESC) AS newest
        FROM change WHERE op = 'h'
    ) ranked
    WHERE newest > 720
) old
WHERE c.resource_id = old.resource_id AND c.seq = old.seq;
