"""Counts and checksums of a resource at this node, by key range, for the monitoring agent's
reconciliation (gdx.reconcile): the business table it publishes (``source``), the provider's
mirror of it (``provider``), or a subscriber's table. Rate-limited, one at a time, on
connections of their own."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal
from zoneinfo import ZoneInfo

import orjson

from front_end_node import store
from front_end_node.sources import open_source
from front_end_node.wire import RowMaker
from gdx.fields import FieldType
from gdx.protocol import ResourceSpec
from gdx.reconcile import Counter, Tally, paced
from gdx.sharing import BusinessDb

Side = Literal["source", "provider", "subscriber"]


@dataclass(frozen=True)
class BusinessTables:
    """Where this node reads what it publishes: the ``source`` side of the tallies."""

    db: BusinessDb
    tables: dict[str, str]  # resource code -> published table


_one_at_a_time = asyncio.Lock()


class TallyError(Exception):
    """The tally cannot be made; the message says why (an unknown resource, bad fields)."""


async def tally(
    front_end_db: str,
    code: str,
    side: Side,
    *,
    ranges: int,
    fields: list[str] | None,
    rows_per_s: float,
    business: BusinessTables | None = None,
) -> Tally:
    async with _one_at_a_time, await store.connect(front_end_db) as conn:
        spec = await store.cached_spec(conn, code)
        if spec is None:
            raise TallyError(f"this node has no catalog entry of {code!r}: it neither publishes nor subscribes to it")
        types = {f.name: f.type for f in spec.fields}
        if side == "source":
            if business is None or code not in business.tables:
                raise TallyError(f"this node does not publish {code!r} from a business database")
            chosen = _chosen_fields(fields or list(types), types, spec.primary_key)
            cur = await conn.execute("SELECT key FROM gdx.quarantine WHERE resource = %s", (code,))
            held_back = {key for (key,) in await cur.fetchall()}
            counter = Counter(code, [(f, types[f]) for f in chosen], ranges)
            await asyncio.to_thread(_count_source, counter, business, code, spec, chosen, held_back, rows_per_s)
            return counter.tally()
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


def _count_source(
    counter: Counter,
    business: BusinessTables,
    code: str,
    spec: ResourceSpec,
    chosen: list[str],
    held_back: set[str],
    rows_per_s: float,
) -> None:
    """The business table's rows as the agent sends them (converted, keys tidied), less those it
    holds in quarantine (the monitoring shows those apart), paced to ``rows_per_s``."""
    maker = RowMaker.for_spec(spec, ZoneInfo(business.db.timezone), keep_files=False)
    source = open_source(business.db)
    started, done = time.monotonic(), 0
    try:
        for chunk in source.iter_rows(business.tables[code], [f.name for f in spec.fields], 1000):
            for values in chunk:
                row = maker.row(values)
                if str(row[spec.primary_key]) not in held_back:
                    counter.add(row[spec.primary_key], [row[f] for f in chosen])
            done += len(chunk)
            ahead = done / rows_per_s - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
    finally:
        source.close()


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
