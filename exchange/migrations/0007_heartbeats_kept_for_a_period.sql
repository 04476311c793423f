-- Heartbeats stay in the change log for a period (HEARTBEATS_KEPT_FOR in exchange/change_log.py),
-- not a count: a node that beats every minute kept 12 hours of them, one that beats every second
-- 12 minutes. The index finds, by time, the heartbeats of a resource that have outlived the period.
DROP INDEX change_heartbeat;
CREATE INDEX change_heartbeat_time ON change (resource_id, source_commit_time) WHERE op = 'h';

-- What piled up before: heartbeats more than an hour older than their resource's newest go.
DELETE FROM change c
USING (
    SELECT resource_id, max(source_commit_time) AS newest FROM change WHERE op = 'h' GROUP BY resource_id
) n
WHERE c.op = 'h' AND c.resource_id = n.resource_id AND c.source_commit_time < n.newest - interval '1 hour';
