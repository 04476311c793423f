"""Doubtful data (疑义数据): a consumer flags a record, the provider checks and resolves it."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from psycopg.rows import dict_row

from exchange import resources
from exchange.deps import Pool
from exchange.errors import ApiError, conflict, forbidden, not_found
from exchange.identity import Anyone, Department
from exchange.strict_json import StrictJsonRoute
from exchange.transitions import NOW, Conn, step
from gdx.fields import RowError
from gdx.pki import Role
from gdx.protocol import Dispute, DisputeIn, Resolve

router = APIRouter(prefix="/v1/disputes", tags=["disputes"], route_class=StrictJsonRoute)

_SELECT = """
    SELECT d.id, r.code AS resource, d.key, d.consumer, r.provider, d.reason, d.status, d.opened_at,
           d.resolution, d.resolved_at, r.spec -> 'fields' AS fields, r.spec ->> 'primary_key' AS pk
    FROM dispute d JOIN resource r ON r.id = d.resource_id
"""


def _dispute(row: dict[str, object]) -> Dispute:
    fields = row.pop("fields")
    pk = row.pop("pk")
    integer = any(f["name"] == pk and f["type"] == "integer" for f in fields)  # type: ignore[attr-defined]
    if integer:
        row["key"] = int(str(row["key"]))
    return Dispute.model_validate(row)


@router.post("", status_code=201, response_model=Dispute, summary="Flag a record as doubtful (consumers)")
async def open_dispute(body: DisputeIn, who: Department, pool: Pool) -> Dispute:
    async with pool.connection() as conn, conn.transaction():
        stored = await resources.load(conn, body.resource)
        try:
            stored.schema.check_key(body.key)
        except RowError as exc:
            raise ApiError(422, "invalid_key", str(exc)) from None
        cur = await conn.execute(
            "SELECT 1 FROM grants WHERE resource_id = %s AND consumer = %s LIMIT 1", (stored.id, who.name)
        )
        if await cur.fetchone() is None:
            raise forbidden(f"you hold no grant on {body.resource!r}; only its consumers flag its records")
        opened = {"resource_id": stored.id, "key": str(body.key), "consumer": who.name, "reason": body.reason}
        return await step(
            conn, who, "dispute.open", "dispute", opened, load=_load, resource=body.resource,
            scope={"key": body.key, "reason": body.reason},
        )  # fmt: skip


async def _load(conn: Conn, dispute_id: int) -> Dispute:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_SELECT + " WHERE d.id = %s", (dispute_id,))
        row = await cur.fetchone()
    if row is None:
        raise not_found(f"dispute {dispute_id}")
    return _dispute(row)


@router.post("/{dispute_id}/resolve", response_model=Dispute, summary="Resolve a dispute (the provider)")
async def resolve(dispute_id: int, body: Resolve, who: Department, pool: Pool) -> Dispute:
    async with pool.connection() as conn, conn.transaction():
        found = await _load(conn, dispute_id)
        if found.provider != who.name:
            raise forbidden("only the providing department resolves a dispute about its data")
        if found.status == "resolved":
            raise conflict(f"dispute {dispute_id} is already resolved")
        return await step(
            conn, who, "dispute.resolve", "dispute",
            {"status": "resolved", "resolution": body.resolution, "resolved_at": NOW}, record_id=dispute_id, load=_load,
            resource=found.resource, scope={"resolution": body.resolution},
        )  # fmt: skip


@router.get("", response_model=list[Dispute], summary="Disputes you are party to (staff: all)")
async def list_disputes(who: Anyone, pool: Pool, status: Literal["open", "resolved"] | None = None) -> list[Dispute]:
    where, params = [], []
    if who.role is Role.DEPARTMENT:
        where.append("(d.consumer = %s OR r.provider = %s)")
        params += [who.name, who.name]
    if status:
        where.append("d.status = %s")
        params.append(status)
    clause = (" WHERE " + " AND ".join(where)) if where else ""
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_SELECT + clause + " ORDER BY d.id", params)
        return [_dispute(row) for row in await cur.fetchall()]
