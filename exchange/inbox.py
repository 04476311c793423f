"""A department's inbox: what waits for it, with deadlines, read from the records themselves
(requests, negotiations, escalations, disputes, catalog items, grants), so it is never out of
step with them. The coordinating authority (the administrator role) has one too: the escalated
requests it must decide.

A department may name a webhook in the inventory (gdx_department.inbox_webhook): each new item
is posted to it once as JSON, retried with backoff until taken (exchange.inbox_webhooks).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from exchange.grants import EXPIRING_WITHIN_DAYS
from gdx.protocol import InboxItem, InboxKind
from gdx.workdays import today

_REQUESTS = "FROM share_request q JOIN resource r ON r.id = q.resource_id"

DEPARTMENT_SQL = f"""
SELECT 'reply', q.id, r.code, q.consumer, q.purpose, q.due_date {_REQUESTS}
WHERE q.status = 'pending' AND r.provider = %(me)s
UNION ALL
SELECT 'negotiation', q.id, r.code, CASE WHEN r.provider = %(me)s THEN q.consumer ELSE r.provider END, q.purpose,
       q.negotiation_due {_REQUESTS}
WHERE q.status = 'negotiating' AND (r.provider = %(me)s OR q.consumer = %(me)s)
UNION ALL
SELECT 'explanation', q.id, r.code, q.consumer, q.escalation_reason, q.explanation_due {_REQUESTS}
WHERE q.status = 'escalated' AND q.explanation IS NULL AND q.explanation_due IS NOT NULL AND r.provider = %(me)s
UNION ALL
SELECT 'dispute', d.id, r.code, d.consumer, d.reason, NULL::date FROM dispute d JOIN resource r ON r.id = d.resource_id
WHERE d.status = 'open' AND r.provider = %(me)s
UNION ALL
SELECT 'catalog', i.id, r.code, NULL, i.cause, i.due_date
FROM catalog_item i LEFT JOIN resource r ON r.id = i.resource_id
WHERE i.closed_at IS NULL AND i.department = %(me)s
UNION ALL
SELECT 'grant_expiring', g.id, r.code, r.provider, g.purpose, g.expires_on
FROM grants g JOIN resource r ON r.id = g.resource_id
WHERE g.status = 'active' AND g.consumer = %(me)s AND g.expires_on BETWEEN %(today)s AND %(until)s
"""  # noqa: S608 - constants only
AUTHORITY_SQL = f"""
SELECT 'decision', q.id, r.code, q.consumer, q.escalation_reason, q.decision_due {_REQUESTS}
WHERE q.status = 'escalated'
"""

_ACTIONS = {
    InboxKind.REPLY: "POST /v1/requests/{id}/approve or /refuse",
    InboxKind.NEGOTIATION: "POST /v1/requests/{id}/approve (with legal_basis), /refuse or /escalate",
    InboxKind.EXPLANATION: "POST /v1/requests/{id}/explanation",
    InboxKind.DECISION: "POST /v1/requests/{id}/decision",
    InboxKind.DISPUTE: "POST /v1/disputes/{id}/resolve",
    InboxKind.CATALOG: "PUT /v1/resources/{resource} (a new catalog version)",
    InboxKind.GRANT_EXPIRING: "POST /v1/requests before it ends, if the data is still needed",
}


def params(department: str | None, as_of: dt.date | None = None) -> dict[str, Any]:
    day = as_of or today()
    return {"me": department, "today": day, "until": day + dt.timedelta(days=EXPIRING_WITHIN_DAYS)}


def items(rows: list[tuple[Any, ...]], as_of: dt.date | None = None) -> list[InboxItem]:
    """The rows of DEPARTMENT_SQL or AUTHORITY_SQL as items, the nearest deadline first."""
    day = as_of or today()
    found = []
    for kind_text, record_id, resource, counterpart, about, deadline in rows:
        kind = InboxKind(kind_text)
        found.append(
            InboxItem(
                key=f"{kind.value}:{record_id}", kind=kind, id=record_id, resource=resource, counterpart=counterpart,
                about=about, deadline=deadline, overdue=deadline is not None and deadline < day,
                action=_ACTIONS[kind].format(id=record_id, resource=resource),
            )
        )  # fmt: skip
    return sorted(found, key=lambda i: (i.deadline is None, i.deadline or day, i.kind.value, i.id))
