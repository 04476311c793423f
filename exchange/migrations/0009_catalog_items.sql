-- Catalog-update items (ZJG Art. 12: 3 working days; Ningxia Art. 8 and Wushen Art. 7: 15):
-- something changed that the catalog must follow, by a deadline. Opened by a drift the
-- provider's node found between its table and the catalog entry (one open item per resource),
-- or by an administrator recording a change of a department's duties or of the law; closed by
-- a new catalog version of the department (or, for a drift, by the table matching again).
CREATE TABLE catalog_item (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    department          text NOT NULL REFERENCES department (id),
    resource_id         bigint REFERENCES resource (id),
    cause               text NOT NULL CHECK (cause IN ('drift', 'duties', 'law')),
    detail              jsonb NOT NULL,
    opened_at           timestamptz NOT NULL DEFAULT now(),
    opened_by           text NOT NULL,
    due_date            date,
    due_date_estimated  boolean NOT NULL DEFAULT false,
    closed_at           timestamptz,
    closed_by           text,
    closed_reason       text,
    CHECK ((cause = 'drift') = (resource_id IS NOT NULL))
);
CREATE UNIQUE INDEX catalog_item_one_drift ON catalog_item (resource_id) WHERE cause = 'drift' AND closed_at IS NULL;
CREATE INDEX catalog_item_open ON catalog_item (department) WHERE closed_at IS NULL;
