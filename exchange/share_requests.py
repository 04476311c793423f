"""Share requests as records: read, their deadlines set from the provider's jurisdiction, and
which deadline has passed (docs/exchange.md, "Requests and coordination").

Deadlines and their kind of days, per jurisdiction (gdx/inventory.py, from the seed texts):
the provider's reply (working days), the negotiation of a not-shared resource (working days),
the provider's written explanation to the authority after an escalation (calendar days), and
the authority's decision, counted from the explanation's receipt, or from the escalation where
no explanation is asked for (calendar days).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row

from exchange.errors import not_found
from gdx.protocol import Overdue, RequestStatus, ShareRequest
from gdx.workdays import WorkCalendar, today

Conn = psycopg.AsyncConnection[Any]

SELECT = """
    SELECT q.id, r.code AS resource, q.consumer, r.provider, q.purpose, q.fields, q.status, q.requested_at,
           q.due_date, q.due_date_estimated, q.replied_at, q.reply_reason, q.approved_fields,
           q.escalation_reason, q.decision, q.decision_reason, q.decided_by, q.kind, q.grant_id, q.legal_basis,
           q.negotiation_due, q.escalated_by, q.explanation, q.explanation_due, q.decision_due
    FROM share_request q JOIN resource r ON r.id = q.resource_id
"""

# Requests past a deadline as of %(today)s, in SQL (the API's lists and the monitoring's counts).
OVERDUE_SQL = """(
    (q.status = 'pending' AND q.due_date < %(today)s)
    OR (q.status = 'negotiating' AND q.negotiation_due < %(today)s)
    OR (q.status = 'escalated' AND q.explanation IS NULL AND q.explanation_due < %(today)s)
    OR (q.status = 'escalated' AND q.decision_due < %(today)s)
)"""


def overdue(request: ShareRequest, as_of: dt.date) -> Overdue | None:
    """The deadline that has passed (the same rule as OVERDUE_SQL)."""
    status = request.status
    if status is RequestStatus.PENDING and request.due_date is not None and request.due_date < as_of:
        return Overdue.REPLY
    if status is RequestStatus.NEGOTIATING and request.negotiation_due is not None and request.negotiation_due < as_of:
        return Overdue.NEGOTIATION
    if status is RequestStatus.ESCALATED:
        if request.explanation is None and request.explanation_due is not None and request.explanation_due < as_of:
            return Overdue.EXPLANATION
        if request.decision_due is not None and request.decision_due < as_of:
            return Overdue.DECISION
    return None


def from_row(row: dict[str, Any], as_of: dt.date | None = None) -> ShareRequest:
    found = ShareRequest.model_validate(row)
    return found.model_copy(update={"overdue": overdue(found, as_of or today())})


async def load(conn: Conn, request_id: int, *, lock: bool = False) -> ShareRequest:
    suffix = " FOR UPDATE OF q" if lock else ""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(SELECT + " WHERE q.id = %s" + suffix, (request_id,))
        row = await cur.fetchone()
    if row is None:
        raise not_found(f"share request {request_id}")
    return from_row(row)


async def query(
    conn: Conn, where: list[str], params: dict[str, Any], *, as_of: dt.date | None = None
) -> list[ShareRequest]:
    """Requests matching ``where`` (which may use OVERDUE_SQL), their deadlines judged as of ``as_of``."""
    as_of = as_of or today()
    clause = (" WHERE " + " AND ".join(where)) if where else ""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(SELECT + clause + " ORDER BY q.id", {**params, "today": as_of})
        return [from_row(row, as_of) for row in await cur.fetchall()]


@dataclass(frozen=True)
class Timers:
    """The provider's jurisdiction's deadlines (None: none set)."""

    reply_working_days: int | None
    negotiation_working_days: int | None
    explanation_days: int | None
    decision_days: int | None

    @classmethod
    async def of(cls, conn: Conn, department: str) -> Timers:
        cur = await conn.execute(
            "SELECT reply_working_days, negotiation_working_days, explanation_days, decision_days "
            "FROM department WHERE id = %s",
            (department,),
        )
        row = await cur.fetchone()
        return cls(*row) if row else cls(None, None, None, None)

    def reply_due(self, calendar: WorkCalendar, start: dt.date) -> tuple[dt.date | None, bool]:
        if self.reply_working_days is None:
            return None, False
        deadline = calendar.add_working_days(start, self.reply_working_days)
        return deadline.due, deadline.estimated

    def negotiation_due(self, calendar: WorkCalendar, start: dt.date) -> dt.date | None:
        if self.negotiation_working_days is None:
            return None
        return calendar.add_working_days(start, self.negotiation_working_days).due

    def escalation_dues(self, start: dt.date) -> tuple[dt.date | None, dt.date | None]:
        """(explanation due, decision due) on escalation; the decision's deadline waits for the
        explanation where one is asked for (Hebei Art. 13: 30 days from its receipt)."""
        explanation = start + dt.timedelta(days=self.explanation_days) if self.explanation_days else None
        decision = None
        if self.decision_days and explanation is None:
            decision = start + dt.timedelta(days=self.decision_days)
        return explanation, decision

    def decision_due(self, received: dt.date) -> dt.date | None:
        return received + dt.timedelta(days=self.decision_days) if self.decision_days else None
