-- A department's inbox (exchange/inbox.py) is read from the records themselves; what is kept is
-- the optional webhook the inventory names for the department, and each item's notice to it:
-- sent once per new item, retried with backoff, its failures visible.
ALTER TABLE department ADD COLUMN inbox_webhook text;

CREATE TABLE inbox_notice (
    department       text NOT NULL REFERENCES department (id),
    item             text NOT NULL,  -- the item's key, e.g. request:42:reply
    payload          jsonb NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz,
    last_error       text,
    PRIMARY KEY (department, item)
);
CREATE INDEX inbox_notice_due ON inbox_notice (next_attempt_at) WHERE delivered_at IS NULL;
