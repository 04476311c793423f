"""Reading the audit trail: auditors only (separation of duties)."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Query

from exchange.deps import Pool
from exchange.identity import Auditor
from exchange.strict_json import StrictJsonRoute
from gdx.protocol import MAX_SEQ, AuditEntry

router = APIRouter(prefix="/v1/audit", tags=["audit"], route_class=StrictJsonRoute)


@router.get("", response_model=list[AuditEntry], summary="Audit entries, oldest first (auditors)")
async def read_audit(
    _: Auditor,
    pool: Pool,
    actor: str | None = None,
    resource: str | None = None,
    action: str | None = None,
    after_id: Annotated[int, Query(ge=0, le=MAX_SEQ)] = 0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> list[AuditEntry]:
    where, params = ["id > %s"], [after_id]
    for column, value in (("actor", actor), ("resource", resource), ("action", action)):
        if value is not None:
            where.append(f"{column} = %s")
            params.append(value)  # type: ignore[arg-type]
    async with pool.connection() as conn:
        cur = await conn.execute(
            f"SELECT id, entry, hash FROM audit_log WHERE {' AND '.join(where)} ORDER BY id LIMIT %s",  # noqa: S608
            [*params, limit],
        )
        rows = await cur.fetchall()
    return [AuditEntry(id=i, hash=bytes(h).hex(), **json.loads(entry)) for i, entry, h in rows]
