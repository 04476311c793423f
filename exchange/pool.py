"""The exchange's database connections: one pool per process, ready for the change log's SQL."""

from __future__ import annotations

from typing import Any

from psycopg_pool import AsyncConnectionPool
from psycopg_pool.base import AttemptWithBackoff

from exchange import change_log
from exchange.settings import Settings

# How long a request waits for a database connection before it is answered 503.
POOL_WAIT_S = 10.0
# psycopg_pool doubles the pause between reconnection attempts without a cap (1, 2, 4 ... 32 s):
# after a database restart of half a minute, the pool waited out another minute before it tried
# again. One attempt a second reconnects within a second or two and costs the database nothing.
AttemptWithBackoff.DELAY_BACKOFF = 1.0


async def configure(conn: change_log.Conn) -> None:
    """Run once on each new connection, before any request gets it."""
    await change_log.create_staging_table(conn)


async def open_pool(settings: Settings) -> AsyncConnectionPool[Any]:
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        settings.database_url,
        min_size=settings.pool_min,
        max_size=settings.pool_max,
        open=False,
        configure=configure,
        # A connection the database dropped (a restart, a failover) is replaced at checkout,
        # never handed to a request.
        check=AsyncConnectionPool.check_connection,
        timeout=POOL_WAIT_S,
    )
    await pool.open()
    return pool
