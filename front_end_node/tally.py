"""Counts and checksums of this node's copy of a resource, by key range, for the monitoring
agent's reconciliation (gdx.reconcile): the provider's mirror of what it publishes, or a
subscriber's table. Rate-limited, one at a time, on a connection of its own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Literal

import orjson

from front_end_node import store
from gdx.fields import FieldType
from gdx.reconcile import Counter, Tally, paced

Side = Literal["provider", "subscriber"]
_one_at_a_time = asyncio.Lock()


class TallyError(Exception):
    """The tally cannot be made; the message says why (an unknown resource, bad fields)."""


async def tally(
    front_end_db: str, code: str, side: Side, *, ranges: int, fields: list[str] | None, rows_per_s: float
) -> Tally:
    async with _one_at_a_time, await store.connect(front_end_db) as conn:
        spec = await store.cached_spec(conn, code)
        if spec is None:
            raise TallyError(f"this node has no catalog entry of {code!r}: it neither publishes nor subscribes to it")
        types = {f.name: f.type for f in spec.fields}
        if side == "provider":
            chosen = _chosen_fields(fields or list(types), types, spec.primary_key)
            sql = "SELECT key, row FROM gdx.mirror WHERE resource = %s AND NOT deleted"
            counter = Counter(code, [(f, types[f]) for f in chosen], ranges)
            async for key, row in paced(_stream(conn, sql, (code,)), rows_per_s):
                counter.add(key, [row.get(f) for f in chosen])
            return counter.tally()
        cur = await conn.execute("SELECT table_name, fields FROM gdx.subscription_state WHERE resource = %s", (code,))
        found = await cur.fetchone()
        if found is None:
            raise TallyError(f"this node does not subscribe to {code!r}")
        table, columns = found[0], orjson.loads(found[1]) if isinstance(found[1], str) else found[1]
        chosen = _chosen_fields(fields or columns, {c: types[c] for c in columns if c in types}, spec.primary_key)
        key_at = chosen.index(spec.primary_key)
        cols = ", ".join(f'"{c}"' for c in chosen)
        counter = Counter(code, [(f, types[f]) for f in chosen], ranges)
        async for row in paced(_stream(conn, f"SELECT {cols} FROM {store.quote(table)}", ()), rows_per_s):  # noqa: S608
            counter.add(row[key_at], row)
        return counter.tally()


def _chosen_fields(wanted: list[str], available: dict[str, FieldType], key: str) -> list[str]:
    unknown = [f for f in wanted if f not in available]
    if unknown:
        raise TallyError(f"unknown field(s) {', '.join(unknown)} (this copy has: {', '.join(available)})")
    # The key first, the others in the catalog's order: both sides then digest the same sequence.
    return [key] + [f for f in available if f in wanted and f != key]


async def _stream(conn: store.Conn, sql: str, params: tuple[Any, ...]) -> AsyncIterator[tuple[Any, ...]]:
    # A named (server-side) cursor: a million-row table is read a page at a time.
    async with conn.transaction(), conn.cursor(name="gdx_tally") as cur:
        await cur.execute(sql, params)
        while rows := await cur.fetchmany(1000):
            for row in rows:
                yield row
