"""A provider's full load, as the exchange sees it: opened, kept moving, finished.

The rows themselves arrive as pushed batches (exchange/change_log.py); the load only says that
more are coming, so that a subscriber starting from nothing meanwhile reads the change log as the
rows arrive, rather than a snapshot taken mid-load that the log's replay would read again.
A load that made no progress for LOAD_STALLS_AFTER no longer holds anyone back (the agent was
killed and not restarted, say); the agent that comes back resumes it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import psycopg
from psycopg.rows import dict_row

from gdx.protocol import Load

Conn = psycopg.AsyncConnection[Any]

LOAD_STALLS_AFTER = dt.timedelta(minutes=5)

_COLUMNS = "l.id, r.code AS resource, l.department, l.started_at, l.progressed_at, l.finished_at, l.rows, l.position"


async def _one(conn: Conn, where: str, params: tuple[Any, ...]) -> Load | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {_COLUMNS} FROM resource_load l JOIN resource r ON r.id = l.resource_id WHERE {where}",  # noqa: S608
            params,
        )
        row = await cur.fetchone()
    return None if row is None else Load.model_validate(row)


async def open_load(conn: Conn, resource_id: int, department: str) -> tuple[Load, bool]:
    """The resource's open load, or a new one; True when it is new."""
    async with conn.transaction():
        await conn.execute("SELECT FROM resource WHERE id = %s FOR NO KEY UPDATE", (resource_id,))
        cur = await conn.execute(
            "UPDATE resource_load SET progressed_at = now() WHERE resource_id = %s AND finished_at IS NULL "
            "RETURNING id",
            (resource_id,),
        )
        found = await cur.fetchone()
        created = found is None
        load_id = uuid.uuid4() if found is None else found[0]
        if created:
            await conn.execute(
                "INSERT INTO resource_load (id, resource_id, department) VALUES (%s, %s, %s)",
                (load_id, resource_id, department),
            )
    load = await _one(conn, "l.id = %s", (load_id,))
    assert load is not None
    return load, created


async def progress(conn: Conn, resource_id: int, load_id: uuid.UUID, rows: int, *, finish: bool) -> Load | None:
    """Note the rows sent so far; ``finish``: the load is done, at the resource's position now."""
    cur = await conn.execute(
        "UPDATE resource_load l SET progressed_at = now(), rows = %s, "
        "finished_at = CASE WHEN %s THEN now() END, "
        "position = CASE WHEN %s THEN (SELECT last_seq FROM resource WHERE id = l.resource_id) END "
        "WHERE id = %s AND resource_id = %s AND finished_at IS NULL RETURNING id",
        (rows, finish, finish, load_id, resource_id),
    )
    if await cur.fetchone() is None:
        return None
    return await _one(conn, "l.id = %s", (load_id,))


async def moving(conn: Conn, resource_id: int) -> Load | None:
    """The resource's load that is still moving, if any."""
    return await _one(
        conn,
        "l.resource_id = %s AND l.finished_at IS NULL AND l.progressed_at > now() - %s",
        (resource_id, LOAD_STALLS_AFTER),
    )
