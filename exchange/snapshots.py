"""A resource's current rows, a key range at a time, as CSV: what a subscriber starting from
nothing loads (with COPY) instead of replaying the whole change log.

Each chunk is read in one REPEATABLE READ transaction with the resource's last sequence number,
so it is exactly the state at that number. A subscriber keeps the number of its first chunk and,
when the last one is in, follows the change log from there: the later chunks are as new or newer,
and replaying the changes after the first chunk's number brings every key to where the log says.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

Conn = psycopg.AsyncConnection[Any]

DEFAULT_ROWS = 50_000
MAX_ROWS = 200_000


@dataclass(frozen=True)
class Chunk:
    seq: int  # the resource's last sequence number, at which these rows are its state
    heartbeat: tuple[int, dt.datetime] | None  # the provider's newest heartbeat at that number
    rows: int
    last_key: str | None  # where the next chunk begins; None: this was the last one
    body: bytes  # CSV, no header: the key, then the granted fields in the catalog's order


async def read_chunk(conn: Conn, resource_id: int, columns: list[str], *, after_key: str | None, limit: int) -> Chunk:
    """The live keys after ``after_key`` (all when None), up to ``limit`` of them, in key order;
    ``columns`` are the key's field and the granted ones."""
    async with conn.transaction():
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        cur = await conn.execute(
            "SELECT last_seq, heartbeat_seq, heartbeat_source_time FROM resource WHERE id = %s", (resource_id,)
        )
        seq, beat_seq, beat_time = await cur.fetchone() or (0, None, None)
        heartbeat = (int(beat_seq), beat_time) if beat_seq is not None and beat_time is not None else None
        # The chunk's last key first (an index-only walk of the keys), so that the rows can be
        # written by COPY as a key range, and the subscriber told where to go on.
        cur = await conn.execute(
            "SELECT key FROM current_key WHERE resource_id = %s AND NOT deleted AND key > %s "
            "ORDER BY key OFFSET %s LIMIT 1",
            (resource_id, after_key or "", limit - 1),
        )
        found = await cur.fetchone()
        last_key = None if found is None else str(found[0])
        fields = [sql.SQL("k.key")] + [sql.SQL("c.row ->> {}").format(sql.Literal(name)) for name in columns[1:]]
        upper = sql.SQL("") if last_key is None else sql.SQL("AND k.key <= {}").format(sql.Literal(last_key))
        statement = sql.SQL(
            "COPY (SELECT {fields} FROM current_key k JOIN change c ON c.resource_id = k.resource_id AND c.seq = k.seq "
            "WHERE k.resource_id = {resource} AND NOT k.deleted AND k.key > {after} {upper} ORDER BY k.key) "
            "TO STDOUT WITH (FORMAT csv)"
        ).format(
            fields=sql.SQL(", ").join(fields),
            resource=sql.Literal(resource_id),
            after=sql.Literal(after_key or ""),
            upper=upper,
        )
        parts: list[bytes] = []
        async with conn.cursor() as cursor:
            async with cursor.copy(statement) as copy:
                async for block in copy:
                    parts.append(bytes(block))
            rows = cursor.rowcount
    return Chunk(int(seq), heartbeat, rows, last_key, b"".join(parts))
