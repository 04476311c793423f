"""Change-log retention: the superseded versions of a key are compacted away once older than the
retention period (30 days by default; `gdx exchange serve --change-retention-days`).

What stays: the newest version of every key, deletions included, so that a subscriber however far
behind reaches the provider's exact state by reading on from its cursor (it misses only versions
that were replaced anyway); and the last hour of heartbeats (HEARTBEATS_KEPT_FOR, exchange/change_log.py).
The log thus grows with the number of keys, not with the number of changes.

The compactor runs in one exchange process at a time (an advisory lock), in batches of sequence
numbers, each its own short transaction, off the push path: a push appends above the newest
number, a compaction deletes far below it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from dataclasses import dataclass, field

import psycopg
import structlog

from exchange.metrics import COMPACTED

log = structlog.get_logger("gdx.exchange.retention")

DEFAULT_RETENTION_DAYS = 30
BATCH_SEQS = 20_000  # sequence numbers per DELETE: each transaction stays short
_LOCK_ID = 0x6764_7802  # "gdx" + 2: one compactor at a time, across processes and replicas


@dataclass
class Compaction:
    resources: int = 0
    removed: int = 0
    through: dict[str, int] = field(default_factory=dict)  # resource code -> compacted through seq


def compact(conninfo: str, retention: dt.timedelta, *, now: dt.datetime | None = None) -> Compaction | None:
    """One round; None when another process is compacting."""
    now = now or dt.datetime.now(dt.UTC)
    done = Compaction()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        locked = conn.execute("SELECT pg_try_advisory_lock(%s)", (_LOCK_ID,)).fetchone()
        if not locked or not locked[0]:
            return None
        try:
            conn.execute(
                "INSERT INTO change_mark (resource_id, marked_at, last_seq) SELECT id, %s, last_seq FROM resource "
                "ON CONFLICT DO NOTHING",
                (now,),
            )
            resources = conn.execute(
                """
                SELECT r.id, r.code, r.compacted_through, m.last_seq, m.marked_at
                FROM resource r
                JOIN LATERAL (
                    SELECT last_seq, marked_at FROM change_mark
                    WHERE resource_id = r.id AND marked_at <= %s ORDER BY marked_at DESC LIMIT 1
                ) m ON true
                """,
                (now - retention,),
            ).fetchall()
            for resource_id, code, through, horizon, marked_at in resources:
                done.removed += _compact_resource(conn, resource_id, through, horizon)
                done.resources += 1
                done.through[code] = max(through, horizon)
                # The mark in use stays: the next round starts from it.
                conn.execute(
                    "DELETE FROM change_mark WHERE resource_id = %s AND marked_at < %s", (resource_id, marked_at)
                )
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))
    if done.removed:
        log.info("superseded versions compacted", removed=done.removed, resources=done.resources)
    return done


def _compact_resource(conn: psycopg.Connection, resource_id: int, through: int, horizon: int) -> int:
    removed = 0
    while through < horizon:
        upto = min(through + BATCH_SEQS, horizon)
        with conn.transaction():
            cur = conn.execute(
                """
                DELETE FROM change c USING current_key k
                WHERE c.resource_id = %(r)s AND c.seq > %(lo)s AND c.seq <= %(hi)s AND c.op <> 'h'
                  AND k.resource_id = c.resource_id AND k.key = c.key AND k.seq > c.seq
                """,
                {"r": resource_id, "lo": through, "hi": upto},
            )
            removed += cur.rowcount
            conn.execute("UPDATE resource SET compacted_through = %s WHERE id = %s", (upto, resource_id))
        through = upto
    return removed


async def keep_compacting(conninfo: str, retention: dt.timedelta, every_s: float, stop: asyncio.Event) -> None:
    """The exchange's background task: a round every ``every_s``, never failing the process."""
    while not stop.is_set():
        try:
            done = await asyncio.to_thread(compact, conninfo, retention)
            if done is not None:
                COMPACTED.inc(done.removed)
        except psycopg.Error as exc:
            log.warning("compaction failed; next round later", error=str(exc).strip())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)
