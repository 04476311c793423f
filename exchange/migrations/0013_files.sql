-- Attachments: the files of resources of format `file` (scanned licences, certificates, documents).
-- Each content is stored once, named by its SHA-256, in chunks of 1 MiB (or, where the exchange has
-- one, in an S3-compatible object store), so that no file is ever held whole in memory on its way
-- in or out. A file is linked to each resource it was uploaded to:
-- a grant on the resource is what lets a consumer read it.
CREATE TABLE file_blob (
    sha256      text PRIMARY KEY CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    bytes       bigint NOT NULL CHECK (bytes >= 0),
    media_type  text NOT NULL,
    chunks      integer NOT NULL CHECK (chunks >= 0),  -- rows of file_chunk (0 in the object store)
    location    text NOT NULL CHECK (location IN ('postgresql', 's3')),
    stored_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE file_chunk (
    sha256  text NOT NULL REFERENCES file_blob (sha256) DEFERRABLE INITIALLY DEFERRED,
    n       integer NOT NULL CHECK (n >= 0),
    data    bytea NOT NULL,
    PRIMARY KEY (sha256, n)
);
-- Scans and PDFs are compressed already: compressing them again costs CPU and saves nothing.
ALTER TABLE file_chunk ALTER COLUMN data SET STORAGE EXTERNAL;

CREATE TABLE resource_file (
    resource_id  bigint NOT NULL REFERENCES resource (id),
    sha256       text NOT NULL REFERENCES file_blob (sha256),
    uploaded_by  text NOT NULL REFERENCES department (id),
    uploaded_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (resource_id, sha256)
);
