-- The sharing rules (docs/exchange.md, "Grants" and "Requests and coordination").

-- Each department's deadlines, from its jurisdiction in the inventory. NULL: its regulation
-- sets none (Hebei has no reply deadline; Suqian's text names none).
ALTER TABLE department
    ALTER COLUMN reply_working_days DROP NOT NULL,
    ADD COLUMN negotiation_working_days integer,
    ADD COLUMN explanation_days integer,
    ADD COLUMN decision_days integer,
    ADD COLUMN catalog_update_working_days integer;

-- A grant lives: it may expire, be suspended (its resource became conditional) or revoked.
-- on_revoke: what the subscriber's node does with the rows it holds when the grant ends.
ALTER TABLE grants
    ADD COLUMN status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended', 'revoked')),
    ADD COLUMN expires_on date,
    ADD COLUMN on_revoke text NOT NULL DEFAULT 'keep' CHECK (on_revoke IN ('keep', 'purge')),
    ADD COLUMN ended_at timestamptz,
    ADD COLUMN ended_by text,
    ADD COLUMN end_reason text;

-- Requests: for access (conditional), to widen a grant (amendment), or for a not-shared resource
-- (exception, by negotiation); the coordination's timers.
ALTER TABLE share_request
    DROP CONSTRAINT share_request_status_check,
    ADD CONSTRAINT share_request_status_check
        CHECK (status IN ('pending', 'negotiating', 'approved', 'refused', 'escalated', 'decided')),
    ALTER COLUMN due_date DROP NOT NULL,
    ADD COLUMN kind text NOT NULL DEFAULT 'access' CHECK (kind IN ('access', 'amendment', 'exception')),
    ADD COLUMN grant_id bigint REFERENCES grants (id),
    ADD COLUMN legal_basis text,
    ADD COLUMN negotiation_due date,
    ADD COLUMN escalated_by text,
    ADD COLUMN explanation text,
    ADD COLUMN explained_at timestamptz,
    ADD COLUMN explanation_due date,
    ADD COLUMN decision_due date;
CREATE INDEX share_request_open ON share_request (resource_id) WHERE status IN ('pending', 'negotiating', 'escalated');
