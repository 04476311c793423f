"""A share request or a dispute moving to its next state: the row's UPDATE, the audit entry that
records who moved it and why, and the record read back as the API shows it, all in the caller's
transaction (so all or nothing)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import psycopg
from psycopg import sql

from exchange import audit
from exchange.identity import Principal

Conn = psycopg.AsyncConnection[Any]
T = TypeVar("T")

# A column set to the transaction's time (replied_at, resolved_at, ...).
NOW = sql.SQL("now()")
# The tables whose rows move through states.
TABLES = frozenset({"share_request", "dispute"})


async def transition(
    conn: Conn,
    who: Principal,
    action: str,
    *,
    table: str,
    record_id: int,
    changes: Mapping[str, Any],
    load: Callable[[Conn, int], Awaitable[T]],
    resource: str,
    purpose: str | None = None,
    scope: dict[str, Any],
) -> T:
    """Set ``changes`` (column -> value, or NOW) on row ``record_id`` of ``table``, audit ``action``
    with ``scope`` (the record's id included), and return the record as ``load`` reads it."""
    if table not in TABLES:
        raise ValueError(f"{table!r} is not a table of records with states")
    values = [value for value in changes.values() if value is not NOW]
    assignments = sql.SQL(", ").join(
        sql.SQL("{} = {}").format(sql.Identifier(column), NOW if value is NOW else sql.Placeholder())
        for column, value in changes.items()
    )
    statement = sql.SQL("UPDATE {} SET {} WHERE id = %s").format(sql.Identifier(table), assignments)
    await conn.execute(statement, [*values, record_id])
    await audit.record(conn, who, action, resource=resource, purpose=purpose, scope=scope)
    return await load(conn, record_id)
