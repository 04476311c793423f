-- GDX central exchange: departments, catalog, grants, change log, audit, disputes.

CREATE TABLE department (
    id                  text PRIMARY KEY,
    name                text NOT NULL,
    jurisdiction        text NOT NULL,
    reply_working_days  integer NOT NULL CHECK (reply_working_days BETWEEN 1 AND 60),
    active              boolean NOT NULL DEFAULT true,
    updated_at          timestamptz NOT NULL DEFAULT now()
);

-- The catalog (资源目录). `spec` is the entry as the provider registered it; the columns
-- beside it are what queries filter on.
CREATE TABLE resource (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code                text NOT NULL UNIQUE,
    provider            text NOT NULL REFERENCES department (id),
    spec                jsonb NOT NULL,
    share_type          text NOT NULL CHECK (share_type IN ('unconditional', 'conditional', 'not_shared')),
    schema_version      integer NOT NULL DEFAULT 1,
    last_seq            bigint NOT NULL DEFAULT 0,
    last_change_at      timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    catalog_updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX resource_provider ON resource (provider);

-- Every version of every catalog entry, so a schema change can always be traced.
CREATE TABLE resource_version (
    resource_id  bigint NOT NULL REFERENCES resource (id),
    version      integer NOT NULL,
    spec         jsonb NOT NULL,
    changed_by   text NOT NULL,
    changed_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (resource_id, version)
);

-- The change log: one row per applied change, numbered per resource without gaps.
CREATE TABLE change (
    resource_id         bigint NOT NULL REFERENCES resource (id),
    seq                 bigint NOT NULL,
    op                  "char" NOT NULL CHECK (op IN ('u', 'd')),
    key                 text NOT NULL,
    row                 jsonb,
    source_version      bigint NOT NULL,
    source_commit_time  timestamptz NOT NULL,
    PRIMARY KEY (resource_id, seq)
);

-- The newest applied change of each key: what makes upserts idempotent (a change whose
-- source_version is not newer is stale) and what lookups and downloads read.
CREATE TABLE current_key (
    resource_id     bigint NOT NULL,
    key             text NOT NULL,
    source_version  bigint NOT NULL,
    seq             bigint NOT NULL,
    deleted         boolean NOT NULL,
    PRIMARY KEY (resource_id, key)
);

CREATE TABLE change_batch (
    batch_id     uuid PRIMARY KEY,
    resource_id  bigint NOT NULL REFERENCES resource (id),
    received     integer NOT NULL,
    applied      integer NOT NULL,
    stale        integer NOT NULL,
    first_seq    bigint,
    last_seq     bigint,
    received_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE share_request (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    resource_id          bigint NOT NULL REFERENCES resource (id),
    consumer             text NOT NULL REFERENCES department (id),
    purpose              text NOT NULL,
    fields               text[],
    status               text NOT NULL DEFAULT 'pending'
                         CHECK (status IN ('pending', 'approved', 'refused', 'escalated', 'decided')),
    requested_at         timestamptz NOT NULL DEFAULT now(),
    due_date             date NOT NULL,
    due_date_estimated   boolean NOT NULL,
    replied_at           timestamptz,
    reply_reason         text,
    approved_fields      text[],
    escalation_reason    text,
    escalated_at         timestamptz,
    decision             text CHECK (decision IN ('approve', 'refuse')),
    decision_reason      text,
    decided_by           text,
    decided_at           timestamptz
);
CREATE INDEX share_request_pending ON share_request (due_date) WHERE status = 'pending';

CREATE TABLE grants (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    resource_id  bigint NOT NULL REFERENCES resource (id),
    consumer     text NOT NULL REFERENCES department (id),
    purpose      text NOT NULL,
    fields       text[],
    request_id   bigint REFERENCES share_request (id),
    granted_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (resource_id, consumer, purpose)
);

CREATE TABLE dispute (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    resource_id  bigint NOT NULL REFERENCES resource (id),
    key          text NOT NULL,
    consumer     text NOT NULL REFERENCES department (id),
    reason       text NOT NULL,
    status       text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'resolved')),
    opened_at    timestamptz NOT NULL DEFAULT now(),
    resolution   text,
    resolved_at  timestamptz
);
CREATE INDEX dispute_open ON dispute (resource_id) WHERE status = 'open';

-- The audit trail: append-only and hash-chained. Each entry's hash is
-- sha256(previous hash || entry text); `gdx audit verify` recomputes the chain.
CREATE TABLE audit_log (
    id         bigint PRIMARY KEY,
    at         timestamptz NOT NULL,
    entry      text NOT NULL,
    prev_hash  bytea NOT NULL,
    hash       bytea NOT NULL,
    actor      text GENERATED ALWAYS AS (entry::jsonb ->> 'actor') STORED,
    action     text GENERATED ALWAYS AS (entry::jsonb ->> 'action') STORED,
    resource   text GENERATED ALWAYS AS (entry::jsonb ->> 'resource') STORED
);
CREATE INDEX audit_log_actor ON audit_log (actor, id);
CREATE INDEX audit_log_resource ON audit_log (resource, id);

CREATE TABLE audit_head (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    last_id    bigint NOT NULL,
    hash       bytea NOT NULL
);
INSERT INTO audit_head VALUES (true, 0, decode(repeat('00', 32), 'hex'));

CREATE FUNCTION audit_append(p_at timestamptz, p_entry text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    head audit_head%ROWTYPE;
    new_hash bytea;
BEGIN
    -- The row lock orders concurrent appends; it is held until the caller commits.
    SELECT * INTO head FROM audit_head FOR UPDATE;
    new_hash := sha256(head.hash || convert_to(p_entry, 'UTF8'));
    INSERT INTO audit_log (id, at, entry, prev_hash, hash)
        VALUES (head.last_id + 1, p_at, p_entry, head.hash, new_hash);
    UPDATE audit_head SET last_id = head.last_id + 1, hash = new_hash;
    RETURN head.last_id + 1;
END $$;

CREATE FUNCTION audit_log_is_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP;
END $$;

CREATE TRIGGER audit_log_append_only
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_is_append_only();
CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_is_append_only();
