"""Catalog-update items (exchange/catalog_items.py): the open ones and their deadlines, and an
administrator recording a change of a department's duties or of the law."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from fastapi import APIRouter

from exchange import catalog_items
from exchange.deps import Calendar, Pool
from exchange.errors import not_found
from exchange.identity import Admin, Anyone
from exchange.strict_json import StrictJsonRoute
from gdx.pki import Role
from gdx.protocol import CatalogCause, CatalogItem, CatalogItemIn

router = APIRouter(prefix="/v1/catalog-items", tags=["catalog"], route_class=StrictJsonRoute)


@router.post("", status_code=201, response_model=CatalogItem, summary="Record a change of duties or law (admins)")
async def record_change(body: CatalogItemIn, who: Admin, pool: Pool, calendar: Calendar) -> CatalogItem:
    async with pool.connection() as conn, conn.transaction():
        cur = await conn.execute("SELECT 1 FROM department WHERE id = %s", (body.department,))
        if await cur.fetchone() is None:
            raise not_found(f"department {body.department!r}")
        return await catalog_items.open_item(
            conn, who, calendar, body.department, CatalogCause(body.cause), {"text": body.detail}
        )


@router.get("", response_model=list[CatalogItem], summary="Catalog-update items (a department sees its own)")
async def list_items(
    who: Anyone,
    pool: Pool,
    status: Literal["open", "closed", "all"] = "open",
    overdue_as_of: dt.date | None = None,
) -> list[CatalogItem]:
    where, params = [], {}
    if who.role is Role.DEPARTMENT:
        where.append("i.department = %(me)s")
        params["me"] = who.name
    if status != "all":
        where.append("i.closed_at IS NULL" if status == "open" else "i.closed_at IS NOT NULL")
    if overdue_as_of is not None:
        where.append(catalog_items.OVERDUE_SQL)
    async with pool.connection() as conn:
        return await catalog_items.query(conn, where, params, overdue_as_of)
