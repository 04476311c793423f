"""Change-log retention: the superseded versions of a key are compacted away once older than the
retention period (30 days by default; `gdx exchange serve --change-retention-days`).

What stays: the newest version of every key, deletions included, so that a subscriber however far
behind reaches the provider's exact state by reading on from its cursor (it misses only versions
that were replaced anyway); and the last hour of heartbeats (HEARTBEATS_KEPT_FOR, exchange/change_log.py).
The log thus grows with the number of keys, not with the number of changes.

The compactor runs in one exchange process at a time (an advisory lock), in batches of sequence
numbers, each its own short transaction, off the push path: a push appends above the newest
number, a compaction deletes far below it.

Files of resources of format file follow their changes: a file that no change left in the log names,
uploaded before the retention period, is no longer the resource's; a file no resource holds any more
is deleted (its bytes in PostgreSQL here, in the object store by the exchange's task, which has the
store's client).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from dataclasses import dataclass, field

import psycopg
import structlog

from exchange.metrics import COMPACTED
from exchange.object_store import ObjectStore, ObjectStoreError

log = structlog.get_logger("gdx.exchange.retention")

DEFAULT_RETENTION_DAYS = 30
BATCH_SEQS = 20_000  # sequence numbers per DELETE: each transaction stays short
_LOCK_ID = 0x6764_7802  # "gdx" + 2: one compactor at a time, across processes and replicas


@dataclass
class Compaction:
    resources: int = 0
    removed: int = 0
    through: dict[str, int] = field(default_factory=dict)  # resource code -> compacted through seq
    files_unlinked: int = 0  # files that left a resource
    files_deleted: list[tuple[str, str]] = field(default_factory=list)  # (sha256, location) of files gone


def compact(
    conninfo: str,
    retention: dt.timedelta,
    *,
    now: dt.datetime | None = None,
    locations: tuple[str, ...] = ("postgresql",),
) -> Compaction | None:
    """One round; None when another process is compacting. Files no resource holds are deleted where
    they are kept in ``locations`` (the object store's only by a caller that removes their objects)."""
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
                done.files_unlinked += _unlink_files(conn, resource_id, now - retention)
                done.resources += 1
                done.through[code] = max(through, horizon)
                # The mark in use stays: the next round starts from it.
                conn.execute(
                    "DELETE FROM change_mark WHERE resource_id = %s AND marked_at < %s", (resource_id, marked_at)
                )
            done.files_deleted = _delete_unheld_files(conn, now - retention, locations)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))
    if done.removed:
        log.info("superseded versions compacted", removed=done.removed, resources=done.resources)
    if done.files_unlinked or done.files_deleted:
        log.info("files no change names let go", unlinked=done.files_unlinked, deleted=len(done.files_deleted))
    return done


def _unlink_files(conn: psycopg.Connection, resource_id: int, before: dt.datetime) -> int:
    """Unlink the resource's files that no change left in its log names (a resource of files only)."""
    with conn.transaction():
        cur = conn.execute(
            """
            DELETE FROM resource_file f USING resource r
            WHERE r.id = %(r)s AND f.resource_id = r.id AND r.spec ->> 'file_field' IS NOT NULL
              AND f.uploaded_at < %(before)s
              AND NOT EXISTS (SELECT FROM change c WHERE c.resource_id = r.id AND c.op = 'u'
                              AND c.row ->> (r.spec ->> 'file_field') = f.sha256)
            """,
            {"r": resource_id, "before": before},
        )
        return cur.rowcount


def _delete_unheld_files(
    conn: psycopg.Connection, before: dt.datetime, locations: tuple[str, ...]
) -> list[tuple[str, str]]:
    """Delete the files no resource holds; (sha256, location) of each. A file being uploaded again
    meanwhile holds its digest's lock (exchange/files.py): it is skipped, and kept."""
    gone: list[tuple[str, str]] = []
    unheld = conn.execute(
        "SELECT sha256 FROM file_blob b WHERE b.stored_at < %s AND b.location = ANY(%s) "
        "AND NOT EXISTS (SELECT FROM resource_file f WHERE f.sha256 = b.sha256)",
        (before, list(locations)),
    ).fetchall()
    for (sha256,) in unheld:
        with conn.transaction():
            locked = conn.execute("SELECT pg_try_advisory_xact_lock(hashtextextended(%s, 7))", (sha256,)).fetchone()
            if not locked or not locked[0]:
                continue
            conn.execute("DELETE FROM file_chunk WHERE sha256 = %s", (sha256,))
            row = conn.execute(
                "DELETE FROM file_blob b WHERE sha256 = %s AND NOT EXISTS "
                "(SELECT FROM resource_file f WHERE f.sha256 = b.sha256) RETURNING location",
                (sha256,),
            ).fetchone()
            if row is not None:
                gone.append((sha256, row[0]))
    return gone


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


async def keep_compacting(
    conninfo: str, retention: dt.timedelta, every_s: float, stop: asyncio.Event, objects: ObjectStore | None = None
) -> None:
    """The exchange's background task: a round every ``every_s``, never failing the process; the
    objects of deleted files leave the object store."""
    while not stop.is_set():
        try:
            locations = ("postgresql", "s3") if objects is not None else ("postgresql",)
            done = await asyncio.to_thread(compact, conninfo, retention, locations=locations)
            if done is not None:
                COMPACTED.inc(done.removed)
                for sha256, location in done.files_deleted:
                    if objects is not None and location == "s3":
                        try:
                            await objects.remove(sha256)
                        except ObjectStoreError as exc:  # its record is gone: say which object is left over
                            log.warning("a deleted file's object is left in the store", object=objects.name(sha256),
                                        error=str(exc))  # fmt: skip
        except psycopg.Error as exc:
            log.warning("compaction failed; next round later", error=str(exc).strip())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)
