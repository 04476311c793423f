"""GET /v1/inbox: what waits for the caller (a department, or the coordinating authority), with
deadlines; GET /v1/inbox/notices: how its webhook took the notices (exchange/inbox.py)."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter
from psycopg.rows import dict_row

from exchange import inbox
from exchange.deps import Pool
from exchange.errors import forbidden
from exchange.identity import Anyone, Department
from exchange.strict_json import StrictJsonRoute
from gdx.pki import Role
from gdx.protocol import InboxItem, InboxNotice

router = APIRouter(prefix="/v1/inbox", tags=["inbox"], route_class=StrictJsonRoute)


@router.get("", response_model=list[InboxItem], summary="What waits for you, the nearest deadline first")
async def read_inbox(who: Anyone, pool: Pool, as_of: dt.date | None = None) -> list[InboxItem]:
    if who.role is Role.DEPARTMENT:
        statement = inbox.DEPARTMENT_SQL
    elif who.role is Role.ADMIN:
        statement = inbox.AUTHORITY_SQL  # the coordinating authority decides escalated requests
    else:
        raise forbidden(f"an inbox is a department's or the coordinating authority's, not the {who.role.value} role's")
    async with pool.connection() as conn:
        rows = await (await conn.execute(statement, inbox.params(who.name, as_of))).fetchall()
    return inbox.items(rows, as_of)


@router.get("/notices", response_model=list[InboxNotice], summary="Your inbox's notices to your webhook")
async def notices(who: Department, pool: Pool, undelivered: bool = False) -> list[InboxNotice]:
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT item, created_at, attempts, next_attempt_at, delivered_at, last_error FROM inbox_notice "
            "WHERE department = %s AND (NOT %s OR delivered_at IS NULL) ORDER BY created_at, item",
            (who.name, undelivered),
        )
        return [InboxNotice.model_validate(row) for row in await cur.fetchall()]
