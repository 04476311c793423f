"""GET /v1/resources/{code}/snapshot: a subscriber's first load, a key range at a time (exchange/snapshots.py)."""

from __future__ import annotations

import gzip
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Query, Request, Response

from exchange import access, audit, loads, metrics, resources, snapshots
from exchange.deps import Pool
from exchange.errors import ApiError
from exchange.identity import Anyone
from exchange.strict_json import StrictJsonRoute
from gdx.protocol import Purpose, ShareMethod

router = APIRouter(prefix="/v1/resources/{code}/snapshot", tags=["change log"], route_class=StrictJsonRoute)


@router.get(
    "",
    summary="The current rows after a key, granted fields only, as CSV (a subscriber's first load)",
    responses={200: {"content": {"text/csv": {}}, "description": "CSV without a header; X-GDX-* headers say the rest"}},
)
async def snapshot(
    code: str,
    request: Request,
    who: Anyone,
    pool: Pool,
    purpose: Annotated[Purpose, Query(description="Must be the purpose of your grant")],
    after_key: Annotated[
        str | None, Query(max_length=1000, description="The X-GDX-Last-Key of the chunk before")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=snapshots.MAX_ROWS)] = snapshots.DEFAULT_ROWS,
) -> Response:
    async with pool.connection() as conn:
        stored = await resources.load(conn, code)
    fields = await access.granted_fields(pool, who, stored, purpose, ShareMethod.FRONT_END, "snapshot")
    if who.name != stored.provider:
        async with pool.connection() as conn:
            load = await loads.moving(conn, stored.id)
        if load is not None:
            # Loaded now, the rows would be loaded again as the change log replays the load's pushes.
            raise ApiError(409, "load_in_progress", (
                f"{stored.provider} is loading {code!r} in full ({load.rows:,} rows sent, the last at "
                f"{load.progressed_at:%H:%M:%S %Z}): the snapshot waits for the load to end"
            ))  # fmt: skip
    columns = access.columns(stored, fields)
    async with pool.connection() as conn:
        chunk = await snapshots.read_chunk(conn, stored.id, columns, after_key=after_key, limit=limit)
        if chunk.rows:
            async with conn.transaction():
                await audit.record(conn, who, "snapshot", resource=code, purpose=purpose, scope={
                    "after_key": after_key, "last_key": chunk.last_key, "rows": chunk.rows, "seq": chunk.seq,
                    "fields": fields,
                })  # fmt: skip
    metrics.PULLED.inc(chunk.rows)
    headers = {
        "x-gdx-seq": str(chunk.seq),
        "x-gdx-rows": str(chunk.rows),
        "x-gdx-columns": ",".join(columns),
        "x-gdx-more": "true" if chunk.last_key is not None else "false",
    }
    if chunk.last_key is not None:
        headers["x-gdx-last-key"] = quote(chunk.last_key, safe="")
    if chunk.heartbeat is not None:
        # The subscriber's pull hop takes it as its heartbeat once its load is in: the rows are then
        # the state at this position, and the provider's source was as new as this heartbeat.
        headers["x-gdx-heartbeat-seq"] = str(chunk.heartbeat[0])
        headers["x-gdx-heartbeat-time"] = chunk.heartbeat[1].isoformat()
    body = chunk.body
    if "gzip" in request.headers.get("accept-encoding", ""):
        body = gzip.compress(body, compresslevel=1)  # a chunk's text shrinks about 5x, at about 100 MB/s
        headers["content-encoding"] = "gzip"
    return Response(body, media_type="text/csv; charset=utf-8", headers=headers)
