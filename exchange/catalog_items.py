"""Catalog-update items: the catalog must follow a change by a deadline (ZJG Art. 12: 3 working
days; Ningxia Art. 8 and Wushen Art. 7: 15), the department's jurisdiction saying how many.

Opened by a drift the provider's node reports (one open item per resource, its detail kept up to
date), or by an administrator recording a change of a department's duties or of the law. A new
catalog version of the department closes them (a drift item only by its own resource's version),
and so does a node reporting that its table matches the catalog again.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from exchange import audit
from exchange.identity import Principal
from gdx.protocol import CatalogCause, CatalogItem
from gdx.workdays import WorkCalendar, today

Conn = psycopg.AsyncConnection[Any]

SELECT = """
    SELECT i.id, i.department, r.code AS resource, i.cause, i.detail, i.opened_at, i.opened_by, i.due_date,
           i.due_date_estimated, i.closed_at, i.closed_by, i.closed_reason
    FROM catalog_item i LEFT JOIN resource r ON r.id = i.resource_id
"""
OVERDUE_SQL = "(i.closed_at IS NULL AND i.due_date < %(today)s)"


def from_row(row: dict[str, Any], as_of: dt.date) -> CatalogItem:
    item = CatalogItem.model_validate(row)
    late = item.closed_at is None and item.due_date is not None and item.due_date < as_of
    return item.model_copy(update={"overdue": late})


async def query(
    conn: Conn, where: list[str], params: dict[str, Any], as_of: dt.date | None = None
) -> list[CatalogItem]:
    as_of = as_of or today()
    clause = (" WHERE " + " AND ".join(where)) if where else ""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(SELECT + clause + " ORDER BY i.id", {**params, "today": as_of})
        return [from_row(row, as_of) for row in await cur.fetchall()]


async def _load(conn: Conn, item_id: int) -> CatalogItem:
    found = await query(conn, ["i.id = %(id)s"], {"id": item_id})
    return found[0]


async def open_item(
    conn: Conn,
    who: Principal,
    calendar: WorkCalendar,
    department: str,
    cause: CatalogCause,
    detail: dict[str, Any],
    *,
    resource: tuple[int, str] | None = None,
) -> CatalogItem:
    """Open an item, due N working days from today (N of the department's jurisdiction, if any);
    a drift of a resource with an open drift item updates that item's detail instead."""
    cur = await conn.execute("SELECT catalog_update_working_days FROM department WHERE id = %s", (department,))
    row = await cur.fetchone()
    days = row[0] if row else None
    deadline = calendar.add_working_days(today(), days) if days is not None else None
    resource_id, code = resource if resource else (None, None)
    if cause is CatalogCause.DRIFT:
        cur = await conn.execute(
            "UPDATE catalog_item SET detail = %s WHERE resource_id = %s AND cause = 'drift' AND closed_at IS NULL "
            "RETURNING id",
            (Jsonb(detail), resource_id),
        )
        kept = await cur.fetchone()
        if kept:
            return await _load(conn, kept[0])
    cur = await conn.execute(
        "INSERT INTO catalog_item (department, resource_id, cause, detail, opened_by, due_date, due_date_estimated) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (department, resource_id, cause.value, Jsonb(detail), who.name, deadline and deadline.due,
         bool(deadline and deadline.estimated)),
    )  # fmt: skip
    made = await cur.fetchone()
    assert made is not None
    await audit.record(
        conn, who, "catalog.item.open", resource=code,
        scope={"item": made[0], "department": department, "cause": cause.value, "detail": detail,
               "due_date": deadline.due.isoformat() if deadline else None},
    )  # fmt: skip
    return await _load(conn, made[0])


async def close(conn: Conn, who: Principal, where: str, params: dict[str, Any], reason: str) -> list[int]:
    """Close the open items matching ``where``; their ids, each closing audited."""
    statement = sql.SQL(
        "UPDATE catalog_item i SET closed_at = now(), closed_by = %(who)s, closed_reason = %(reason)s "
        "WHERE i.closed_at IS NULL AND {} RETURNING i.id, i.department"
    ).format(sql.SQL(where))  # where: the callers' constants, never input
    cur = await conn.execute(statement, {**params, "who": who.name, "reason": reason})
    closed = await cur.fetchall()
    for item_id, department in closed:
        await audit.record(
            conn, who, "catalog.item.close", scope={"item": item_id, "department": department, "reason": reason}
        )
    return [item_id for item_id, _ in closed]


async def followed(conn: Conn, who: Principal, resource_id: int, department: str, version: int) -> list[int]:
    """A new catalog version of the department: its drift item, and its items for duties or law, close."""
    return await close(
        conn, who,
        "((i.cause = 'drift' AND i.resource_id = %(resource)s) OR (i.cause <> 'drift' AND i.department = %(dept)s))",
        {"resource": resource_id, "dept": department},
        f"catalog version {version} published",
    )  # fmt: skip
