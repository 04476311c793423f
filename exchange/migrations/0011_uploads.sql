-- Files uploaded to resources (templates filled by departments without a front-end node):
-- applied whole or refused whole. A refused one keeps its problems and its bad rows as
-- uploaded, for the error report (GET /v1/uploads/{id}/report.xlsx).
CREATE TABLE upload (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    resource_id  bigint NOT NULL REFERENCES resource (id),
    department   text NOT NULL REFERENCES department (id),
    mode         text NOT NULL CHECK (mode IN ('changes', 'replace')),
    format       text NOT NULL,
    encoding     text,
    timezone     text NOT NULL,
    sha256       text NOT NULL,
    bytes        bigint NOT NULL,
    outcome      text NOT NULL CHECK (outcome IN ('applied', 'refused')),
    counts       jsonb,
    first_seq    bigint,
    last_seq     bigint,
    problems     jsonb NOT NULL DEFAULT '[]',
    bad_rows     jsonb NOT NULL DEFAULT '[]',
    header       jsonb NOT NULL DEFAULT '[]',
    reason       text,
    received_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX upload_resource ON upload (resource_id, received_at);
