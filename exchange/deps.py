"""Shared request-level helpers: the pool, the calendar, and auditing a refusal."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from psycopg_pool import AsyncConnectionPool

from exchange import audit
from exchange.errors import ApiError
from exchange.identity import Principal
from gdx.workdays import WorkCalendar


# Dependencies are coroutines even where nothing is awaited: FastAPI runs a plain function in
# its thread pool, a thread hand-off for every request and a second thread contending for the GIL.
async def _pool(request: Request) -> AsyncConnectionPool[Any]:
    pool: AsyncConnectionPool[Any] = request.app.state.pool
    return pool


async def _calendar(request: Request) -> WorkCalendar:
    calendar: WorkCalendar = request.app.state.calendar
    return calendar


Pool = Annotated[AsyncConnectionPool[Any], Depends(_pool)]
Calendar = Annotated[WorkCalendar, Depends(_calendar)]


async def refused(
    pool: AsyncConnectionPool[Any],
    who: Principal,
    action: str,
    error: ApiError,
    *,
    resource: str | None = None,
    purpose: str | None = None,
    scope: dict[str, Any] | None = None,
) -> ApiError:
    """Record a refusal in the audit trail (in its own transaction, since the request's
    own work is rolled back) and hand the error back to be raised."""
    async with pool.connection() as conn, conn.transaction():
        await audit.record(
            conn,
            who,
            action,
            resource=resource,
            purpose=purpose,
            scope={**(scope or {}), "status": error.status, "reason": error.message},
            outcome="refused",
        )
    error.audited = True
    return error
