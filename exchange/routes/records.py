"""Online lookup of one record by key (联机查询) and bulk download of a granted resource."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import orjson
from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from exchange import access, audit, resources
from exchange.deps import Pool
from exchange.errors import ApiError, not_found
from exchange.identity import Anyone
from exchange.strict_json import StrictJsonRoute
from gdx.fields import RowError
from gdx.protocol import Purpose, Record, ShareMethod

router = APIRouter(prefix="/v1/resources/{code}/records", tags=["records"], route_class=StrictJsonRoute)
PurposeQuery = Annotated[Purpose, Query(description="Must be the purpose of your grant")]


@router.get("/{key}", response_model=Record, summary="Look up one record by its key (联机查询)")
async def lookup(code: str, key: str, who: Anyone, pool: Pool, purpose: PurposeQuery) -> Record:
    async with pool.connection() as conn:
        stored = await resources.load(conn, code)
    typed_key: str | int = key
    if stored.integer_key:
        try:
            typed_key = int(key)
        except ValueError:
            raise ApiError(422, "invalid_key", f"resource {code!r} has integer keys; {key!r} is not one") from None
    try:
        stored.schema.check_key(typed_key)
    except RowError as exc:
        raise ApiError(422, "invalid_key", str(exc)) from None
    fields = await access.granted_fields(pool, who, stored, purpose, ShareMethod.API, "lookup")
    async with pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            "SELECT c.row, c.seq, c.source_version FROM current_key k "
            "JOIN change c ON c.resource_id = k.resource_id AND c.seq = k.seq "
            "WHERE k.resource_id = %s AND k.key = %s AND NOT k.deleted",
            (stored.id, str(typed_key)),
        )
        found = await cur.fetchone()
        await audit.record(
            conn,
            who,
            "lookup",
            resource=code,
            purpose=purpose,
            scope={"key": key, "found": found is not None, "fields": fields},
        )
    if found is None:
        raise not_found(f"record {key!r} of {code!r}")
    row = access.project(found[0], fields, stored.spec.primary_key)
    assert row is not None
    return Record(resource=code, key=typed_key, row=row, seq=found[1], source_version=found[2])


@router.get(
    "",
    summary="Download every current record (newline-delimited JSON)",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/x-ndjson": {}}, "description": "One JSON object per record"}},
)
async def download(code: str, who: Anyone, pool: Pool, purpose: PurposeQuery) -> StreamingResponse:
    async with pool.connection() as conn:
        stored = await resources.load(conn, code)
    fields = await access.granted_fields(pool, who, stored, purpose, ShareMethod.DOWNLOAD, "download")
    async with pool.connection() as conn, conn.transaction():
        await audit.record(
            conn,
            who,
            "download",
            resource=code,
            purpose=purpose,
            scope={"fields": fields, "up_to_seq": stored.last_seq},
        )
    key_field = stored.spec.primary_key

    async def lines() -> AsyncIterator[bytes]:
        async with pool.connection() as conn, conn.transaction(), conn.cursor(name="download") as cur:
            await cur.execute(
                "SELECT c.row FROM current_key k JOIN change c ON c.resource_id = k.resource_id AND c.seq = k.seq "
                "WHERE k.resource_id = %s AND NOT k.deleted AND k.seq <= %s ORDER BY k.key",
                (stored.id, stored.last_seq),
            )
            while rows := await cur.fetchmany(2000):
                yield b"".join(orjson.dumps(access.project(r[0], fields, key_field)) + b"\n" for r in rows)

    return StreamingResponse(lines(), media_type="application/x-ndjson")
