"""Share requests and disputes: records that are opened, then move from state to state.

Each step is the row's INSERT or UPDATE, the audit entry that records who took it and why (the
record's id in its scope), and the record read back as the API shows it, all in the caller's
transaction (so all or nothing).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import psycopg
from psycopg import sql

from exchange import audit
from exchange.identity import Principal

Conn = psycopg.AsyncConnection[Any]
T = TypeVar("T")
Loader = Callable[[Conn, int], Awaitable[T]]

# A column set to the transaction's time (replied_at, resolved_at, ...).
NOW = sql.SQL("now()")
# The kinds of record, and their tables.
TABLES = {"request": "share_request", "dispute": "dispute"}


async def step(
    conn: Conn,
    who: Principal,
    action: str,
    kind: str,
    values: Mapping[str, Any],
    *,
    record_id: int | None = None,
    load: Loader[T],
    resource: str,
    purpose: str | None = None,
    scope: dict[str, Any],
) -> T:
    """Open a record of ``kind`` (no ``record_id``: INSERT ``values``) or move one (UPDATE it with
    ``values``, NOW for the transaction's time); audit ``action``; return the record as ``load`` reads it."""
    table = sql.Identifier(_table(kind))
    if record_id is None:
        statement = sql.SQL("INSERT INTO {} ({}) VALUES ({}) RETURNING id").format(
            table,
            sql.SQL(", ").join(sql.Identifier(column) for column in values),
            sql.SQL(", ").join(sql.Placeholder() for _ in values),
        )
        row = await (await conn.execute(statement, list(values.values()))).fetchone()
        assert row is not None
        record_id = int(row[0])
    else:
        assignments = sql.SQL(", ").join(
            sql.SQL("{} = {}").format(sql.Identifier(column), NOW if value is NOW else sql.Placeholder())
            for column, value in values.items()
        )
        params = [value for value in values.values() if value is not NOW]
        await conn.execute(sql.SQL("UPDATE {} SET {} WHERE id = %s").format(table, assignments), [*params, record_id])
    await audit.record(conn, who, action, resource=resource, purpose=purpose, scope={kind: record_id, **scope})
    return await load(conn, record_id)


def _table(kind: str) -> str:
    if kind not in TABLES:
        raise ValueError(f"{kind!r} is not a kind of record with states (known: {', '.join(TABLES)})")
    return TABLES[kind]
