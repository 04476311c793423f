-- The agent's own state in the front-end database (schema gdx). Idempotent: applied at
-- every start. Subscribed tables live beside it, in the schema their names give.
CREATE SCHEMA IF NOT EXISTS gdx;

-- The resource entries the agent works with, as the exchange's catalog last gave them, so
-- that extraction goes on while the exchange is unreachable.
CREATE TABLE IF NOT EXISTS gdx.resource_cache (
    resource    text PRIMARY KEY,
    spec        jsonb NOT NULL,
    fetched_at  timestamptz NOT NULL DEFAULT now()
);

-- The front-end copy (前置库) of every published table: one row per key, the newest row
-- seen at the source, its digest and a version that grows with every change of the key
-- (deletions included), which becomes the change's source_version at the exchange.
CREATE TABLE IF NOT EXISTS gdx.mirror (
    resource  text NOT NULL,
    key       text NOT NULL,
    row       jsonb,
    digest    bytea,
    version   bigint NOT NULL,
    deleted   boolean NOT NULL DEFAULT false,
    PRIMARY KEY (resource, key)
);

-- The commit time the row was last written with (its change-column value where the table
-- has a timestamp one): the check for late commits skips rows already here at that value,
-- so the rows `gdx node sync --full` loaded are not read from the source again.
ALTER TABLE gdx.mirror ADD COLUMN IF NOT EXISTS changed_at timestamptz;

-- Changes waiting for the exchange. A row leaves only when the exchange acknowledged the
-- batch it was sent in (see push_batch). batch_id is no longer written: earlier agents
-- marked every row of a batch with it, and the statements below convert such a batch.
CREATE TABLE IF NOT EXISTS gdx.outbox (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    resource            text NOT NULL,
    op                  "char" NOT NULL CHECK (op IN ('u', 'd', 'h')),
    key                 text,
    row                 jsonb,
    source_version      bigint NOT NULL,
    source_commit_time  timestamptz NOT NULL,
    batch_id            uuid
);
CREATE INDEX IF NOT EXISTS outbox_resource ON gdx.outbox (resource, id);

-- The batch being sent per resource, fixed before sending, so that a resend after a crash
-- reuses its id and rows and the exchange applies it once. One row per batch: marking each
-- outbox row rewrote every row (and its JSON) once more.
CREATE TABLE IF NOT EXISTS gdx.push_batch (
    resource  text PRIMARY KEY,
    batch_id  uuid NOT NULL,
    ids       bigint[] NOT NULL
);
INSERT INTO gdx.push_batch (resource, batch_id, ids)
    SELECT resource, batch_id, array_agg(id ORDER BY id) FROM gdx.outbox WHERE batch_id IS NOT NULL
    GROUP BY resource, batch_id ON CONFLICT (resource) DO NOTHING;
UPDATE gdx.outbox SET batch_id = NULL WHERE batch_id IS NOT NULL;

-- Where incremental extraction stands per published resource.
CREATE TABLE IF NOT EXISTS gdx.extract_state (
    resource         text PRIMARY KEY,
    watermark        jsonb,
    heartbeat_seq    bigint NOT NULL DEFAULT 0,
    last_compare_at  timestamptz
);
-- The catalog's fields (name and type) the resource's rows in the mirror and outbox are made
-- with: a schema version that adds or drops fields is followed from this record.
ALTER TABLE gdx.extract_state ADD COLUMN IF NOT EXISTS fields jsonb;

-- The initial load (`gdx node sync --full`): the last key copied, so it resumes.
CREATE TABLE IF NOT EXISTS gdx.full_sync (
    resource     text PRIMARY KEY,
    after_key    jsonb,
    rows_done    bigint NOT NULL DEFAULT 0,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz
);
-- When the load last copied a page: a comparison for deletions waits while a load is moving.
ALTER TABLE gdx.full_sync ADD COLUMN IF NOT EXISTS progressed_at timestamptz;

-- Source rows that fail the resource's schema or key check; they do not block the others.
CREATE TABLE IF NOT EXISTS gdx.quarantine (
    resource  text NOT NULL,
    key       text NOT NULL,
    row       jsonb,
    reason    text NOT NULL,
    seen_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (resource, key)
);

-- The files of resources of format file, by resource and the SHA-256 of their bytes: a provider's,
-- kept with the rows that name them (sent_at: the exchange has it); a subscriber's, fetched with the
-- rows that name them, and purged with them when a grant says so. A department's applications read
-- a record's file here by the digest its row holds.
CREATE TABLE IF NOT EXISTS gdx.file (
    resource    text NOT NULL,
    sha256      text NOT NULL,
    data        bytea NOT NULL,
    media_type  text NOT NULL,
    stored_at   timestamptz NOT NULL DEFAULT now(),
    sent_at     timestamptz,
    PRIMARY KEY (resource, sha256)
);
ALTER TABLE gdx.file ALTER COLUMN data SET STORAGE EXTERNAL;

-- Per subscription: the last change sequence applied (committed with the rows).
CREATE TABLE IF NOT EXISTS gdx.subscription_state (
    resource    text PRIMARY KEY,
    table_name  text NOT NULL,
    after_seq   bigint NOT NULL DEFAULT 0,
    fields      jsonb
);
-- Reading the resource again from 0, the newest change of each key only, for fields the table
-- gained (a wider grant, a schema version with more fields); done when it reaches the head.
ALTER TABLE gdx.subscription_state ADD COLUMN IF NOT EXISTS refilling boolean NOT NULL DEFAULT false;
-- A subscription that starts from nothing (after_seq 0) loads the resource's snapshot first, a key
-- range at a time: the position of its first chunk, and the last key loaded (front_end_node/pull.py).
ALTER TABLE gdx.subscription_state ADD COLUMN IF NOT EXISTS snapshot_seq bigint;
ALTER TABLE gdx.subscription_state ADD COLUMN IF NOT EXISTS snapshot_after text;
-- Each chunk's last key and the position it was read at: a change the log replays after the load
-- is applied only where it is newer than the chunk that holds its key (front_end_node/pull.py).
ALTER TABLE gdx.subscription_state ADD COLUMN IF NOT EXISTS snapshot_chunks jsonb;
-- The provider's heartbeat at the first chunk's position: the pull hop's heartbeat once the load is in.
ALTER TABLE gdx.subscription_state ADD COLUMN IF NOT EXISTS snapshot_beat_seq bigint;
ALTER TABLE gdx.subscription_state ADD COLUMN IF NOT EXISTS snapshot_beat_time timestamptz;

-- The newest heartbeat seen per hop: extract (business DB -> here), push (here -> central,
-- acknowledged), pull (central -> here, applied).
CREATE TABLE IF NOT EXISTS gdx.heartbeat (
    hop          text NOT NULL CHECK (hop IN ('extract', 'push', 'pull')),
    resource     text NOT NULL,
    seq          bigint NOT NULL,
    source_time  timestamptz NOT NULL,
    seen_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (hop, resource)
);

-- The published table's columns (name -> type) when the node first saw each catalog version,
-- and the drift last reported to the exchange (front_end_node/drift.py).
CREATE TABLE IF NOT EXISTS gdx.source_columns (
    resource        text PRIMARY KEY,
    schema_version  integer NOT NULL,
    columns         jsonb NOT NULL,
    reported        jsonb
);
