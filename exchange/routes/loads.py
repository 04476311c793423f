"""A provider's full load: POST /v1/resources/{code}/loads opens (or resumes) it, and
POST /v1/resources/{code}/loads/{id} notes its progress or its end (exchange/loads.py)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response

from exchange import audit, loads, resources
from exchange.deps import Pool, refused
from exchange.errors import forbidden, not_found
from exchange.identity import Department
from exchange.strict_json import StrictJsonRoute
from gdx.protocol import Load, LoadProgress

router = APIRouter(prefix="/v1/resources/{code}/loads", tags=["change log"], route_class=StrictJsonRoute)


async def _provided(pool: Pool, code: str, who: Department) -> resources.StoredResource:
    async with pool.connection() as conn:
        stored = await resources.load(conn, code)
    if stored.provider != who.name:
        error = forbidden(f"resource {code!r} is provided by {stored.provider}; only it loads its rows")
        raise await refused(pool, who, "load", error, resource=code)
    return stored


@router.post("", response_model=Load, summary="Open a full load of the resource, or resume the open one")
async def open_load(code: str, who: Department, pool: Pool, response: Response) -> Load:
    stored = await _provided(pool, code, who)
    async with pool.connection() as conn:
        load, created = await loads.open_load(conn, stored.id, who.name)
        if created:
            async with conn.transaction():
                await audit.record(conn, who, "load", resource=code, scope={"load": str(load.id), "step": "open"})
    response.status_code = 201 if created else 200
    return load


@router.post("/{load_id}", response_model=Load, summary="Note a load's progress, or its end")
async def note_progress(code: str, load_id: uuid.UUID, body: LoadProgress, who: Department, pool: Pool) -> Load:
    stored = await _provided(pool, code, who)
    async with pool.connection() as conn, conn.transaction():
        load = await loads.progress(conn, stored.id, load_id, body.rows, finish=body.finished)
        if load is None:
            raise not_found(f"open load {load_id} of {code!r}")
        if body.finished:
            await audit.record(conn, who, "load", resource=code, scope={
                "load": str(load_id), "step": "finish", "rows": body.rows, "position": load.position,
            })  # fmt: skip
    return load
