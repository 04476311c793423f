-- Heartbeats travel the change log like data (op 'h'), so that a consumer that has applied
-- a heartbeat has applied everything the provider sent before it. The newest heartbeat per
-- resource is kept beside it for the monitoring agent's central hop.
ALTER TABLE change DROP CONSTRAINT change_op_check;
ALTER TABLE change ADD CONSTRAINT change_op_check CHECK (op IN ('u', 'd', 'h'));
ALTER TABLE change ALTER COLUMN key DROP NOT NULL;
ALTER TABLE change ADD CONSTRAINT change_key_present CHECK ((op = 'h') = (key IS NULL));

ALTER TABLE resource
    ADD COLUMN heartbeat_seq          bigint,
    ADD COLUMN heartbeat_source_time  timestamptz,
    ADD COLUMN heartbeat_received_at  timestamptz;
