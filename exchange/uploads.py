"""Applying an uploaded file to its resource's change log: whole, or not at all.

The file is read and checked a chunk at a time in a worker thread while PostgreSQL applies the
chunk before, all in one transaction that holds the resource's writer lock: a bad row anywhere
rolls everything back, and the answer names every bad cell (up to rows.MAX_PROBLEMS). Each
changed row becomes a change of the log like a pushed one, numbered after the last; a row equal
to the one held is no change, so a file sent twice changes nothing the second time. Versions go
on from the key's (the key's version + 1), as a front-end node's mirror numbers them.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from exchange import audit, files, resources
from exchange.errors import ApiError
from exchange.identity import Principal
from exchange.spreadsheets.read import FileError, Spool, open_sheet
from exchange.spreadsheets.rows import Chunk, HeaderError, RowReader, Tally, TooManyRows, read_changes
from gdx.protocol import (
    UPLOAD_MAX_BYTES,
    UPLOAD_MAX_ROWS,
    UPLOAD_MAX_WORKBOOK_ROWS,
    Upload,
    UploadCounts,
    UploadMode,
)

Conn = psycopg.AsyncConnection[Any]

CHUNK_ROWS = 5000
# A resource whose node sent a heartbeat this recently is fed by that node: rows changed by a file
# would be overwritten by the node's next change of the same key, or refused as stale.
NODE_PUBLISHES_WITHIN = dt.timedelta(hours=1)


@dataclass(frozen=True)
class Limits:
    max_bytes: int = UPLOAD_MAX_BYTES
    max_rows: int = UPLOAD_MAX_ROWS
    max_workbook_rows: int = UPLOAD_MAX_WORKBOOK_ROWS


class Refused(Exception):
    """The file had bad rows: the transaction is rolled back, the problems are in ``tally``."""

    def __init__(self, tally: Tally) -> None:
        super().__init__(f"{tally.bad_rows} bad row(s)")
        self.tally = tally


_CREATE_KEYS = 'CREATE TEMPORARY TABLE upload_key (key text COLLATE "C") ON COMMIT DROP'

# One chunk of checked rows, applied: the rows new or different from the key's current one (a
# lookup of each key by the index, as the push does) get the next numbers, go into the change
# log and become their keys' current versions. A file of replacement also keeps its keys.
_APPLY = """
    WITH staged AS MATERIALIZED (
        -- The rows come as one JSON document (orjson writes it in C, PostgreSQL takes it apart).
        SELECT n AS ord, o AS op, k COLLATE "C" AS key, nullif(r, 'null') AS row
        FROM ROWS FROM (unnest(%(ops)b::text[]), unnest(%(keys)b::text[]), jsonb_array_elements(%(rows)s))
            WITH ORDINALITY AS t(o, k, r, n)
    ), kept AS (
        INSERT INTO upload_key (key) SELECT key FROM staged WHERE %(replace)s
    ), held AS (
        SELECT s.*, k.source_version AS held, k.deleted AS was_deleted, k.seq AS held_seq
        FROM staged s LEFT JOIN LATERAL (
            SELECT k.source_version, k.deleted, k.seq FROM current_key k
            WHERE k.resource_id = %(resource)s AND k.key = s.key LIMIT 1
        ) k ON true
    ), changed AS (
        SELECT h.* FROM held h WHERE CASE WHEN h.op = 'd' THEN h.held IS NOT NULL AND NOT h.was_deleted
            ELSE h.held IS NULL OR h.was_deleted OR NOT EXISTS (
                SELECT FROM change c WHERE c.resource_id = %(resource)s AND c.seq = h.held_seq AND c.row = h.row)
            END
    ), numbered AS (
        SELECT c.*, r.last_seq + row_number() OVER (ORDER BY c.ord) AS seq
        FROM changed c, resource r WHERE r.id = %(resource)s
    ), logged AS (
        INSERT INTO change (resource_id, seq, op, key, row, source_version, source_commit_time)
        SELECT %(resource)s, seq, op, key, row, coalesce(held, 0) + 1, %(now)s FROM numbered
    ), added AS (
        INSERT INTO current_key (resource_id, key, source_version, seq, deleted)
        SELECT %(resource)s, key, 1, seq, op = 'd' FROM numbered WHERE held IS NULL
    ), moved AS (
        UPDATE current_key k SET source_version = n.held + 1, seq = n.seq, deleted = n.op = 'd'
        FROM numbered n WHERE n.held IS NOT NULL AND k.resource_id = %(resource)s AND k.key = n.key
    ), counted AS (
        SELECT count(*) AS applied, min(seq) AS first, max(seq) AS last,
            count(*) FILTER (WHERE op = 'd') AS deleted FROM numbered
    ), moved_on AS (
        UPDATE resource SET last_seq = counted.last, last_change_at = now()
        FROM counted WHERE id = %(resource)s AND counted.applied > 0
    )
    SELECT applied, first, last, deleted,
        (SELECT count(*) FROM held WHERE op = 'd' AND (held IS NULL OR was_deleted)) AS absent
    FROM counted
"""

# The same into a resource that held no key when the upload began (its first load): every row is
# a new key (a file names a key once), so nothing is looked up, and the numbers follow the rows.
_APPLY_TO_EMPTY = """
    WITH staged AS MATERIALIZED (
        SELECT r.last_seq + n AS seq, o AS op, k COLLATE "C" AS key, nullif(j, 'null') AS row
        FROM ROWS FROM (unnest(%(ops)b::text[]), unnest(%(keys)b::text[]), jsonb_array_elements(%(rows)s))
            WITH ORDINALITY AS t(o, k, j, n), resource r
        WHERE r.id = %(resource)s
    ), kept AS (
        INSERT INTO upload_key (key) SELECT key FROM staged WHERE %(replace)s
    ), logged AS (
        INSERT INTO change (resource_id, seq, op, key, row, source_version, source_commit_time)
        SELECT %(resource)s, seq, 'u', key, row, 1, %(now)s FROM staged
    ), added AS (
        INSERT INTO current_key (resource_id, key, source_version, seq, deleted)
        SELECT %(resource)s, key, 1, seq, false FROM staged
    ), counted AS (
        SELECT count(*) AS applied, min(seq) AS first, max(seq) AS last FROM staged
    ), moved_on AS (
        UPDATE resource SET last_seq = counted.last, last_change_at = now()
        FROM counted WHERE id = %(resource)s AND counted.applied > 0
    )
    SELECT applied, first, last, 0, %(deletes)s::bigint FROM counted
"""

# A replacement's last step: every live key the file left out is deleted.
_DELETE_LEFT_OUT = """
    WITH gone AS MATERIALIZED (
        SELECT k.key, k.source_version AS held FROM current_key k
        WHERE k.resource_id = %(resource)s AND NOT k.deleted
            AND NOT EXISTS (SELECT FROM upload_key u WHERE u.key = k.key)
    ), numbered AS (
        SELECT g.*, r.last_seq + row_number() OVER (ORDER BY g.key) AS seq
        FROM gone g, resource r WHERE r.id = %(resource)s
    ), logged AS (
        INSERT INTO change (resource_id, seq, op, key, row, source_version, source_commit_time)
        SELECT %(resource)s, seq, 'd', key, NULL, held + 1, %(now)s FROM numbered
    ), moved AS (
        UPDATE current_key k SET source_version = n.held + 1, seq = n.seq, deleted = true
        FROM numbered n WHERE k.resource_id = %(resource)s AND k.key = n.key
    ), counted AS (
        SELECT count(*) AS applied, min(seq) AS first, max(seq) AS last FROM numbered
    ), moved_on AS (
        UPDATE resource SET last_seq = counted.last, last_change_at = now()
        FROM counted WHERE id = %(resource)s AND counted.applied > 0
    )
    SELECT applied, first, last FROM counted
"""


@dataclass
class Applied:
    upserted: int = 0
    unchanged: int = 0
    deleted: int = 0
    absent: int = 0
    first_seq: int | None = None
    last_seq: int | None = None

    def add(self, applied: int, first: int | None, last: int | None, deleted: int, absent: int, upserts: int) -> None:
        self.upserted += applied - deleted
        self.unchanged += upserts - (applied - deleted)
        self.deleted += deleted
        self.absent += absent
        if applied:
            self.first_seq = first if self.first_seq is None else self.first_seq
            self.last_seq = last


@dataclass(frozen=True)
class Received:
    """What is known of an upload before it is read: who sent which file, how."""

    stored: resources.StoredResource
    who: Principal
    spool: Spool
    mode: UploadMode
    zone: ZoneInfo


async def apply_file(conn: Conn, received: Received, limits: Limits) -> tuple[Upload, Tally]:
    """Apply the file in one transaction; Refused (rolled back) when any row is bad. ApiError for
    a file that cannot be read at all (format, encoding, header, too many rows)."""
    spool = received.spool
    sheet = open_sheet(spool)
    max_rows = limits.max_rows if sheet.format == "csv" else min(limits.max_rows, limits.max_workbook_rows)
    tally = Tally()
    async with conn.transaction():
        stored = await resources.load(conn, received.stored.code, for_update=True)
        reader = RowReader(stored.spec, deletions=received.mode is UploadMode.CHANGES, zone=received.zone)
        chunks = read_changes(sheet.rows, reader, tally, max_rows=max_rows, chunk_rows=CHUNK_ROWS)
        await conn.execute(_CREATE_KEYS)
        cur = await conn.execute("SELECT NOT EXISTS (SELECT FROM current_key WHERE resource_id = %s)", (stored.id,))
        statement = _APPLY_TO_EMPTY if (await cur.fetchone() or (False,))[0] else _APPLY
        applied = Applied()
        now = dt.datetime.now(dt.UTC)
        params = {"resource": stored.id, "replace": received.mode is UploadMode.REPLACE, "now": now}
        # The next chunk is read and checked in a thread while PostgreSQL applies this one.
        reading = asyncio.create_task(asyncio.to_thread(_next, chunks))
        try:
            while (chunk := await _read(reading)) is not None:
                reading = asyncio.create_task(asyncio.to_thread(_next, chunks))
                if tally.bad_rows:
                    continue  # nothing more is applied; the rest is read for the report
                deletes = chunk.ops.count("d")
                if statement is _APPLY_TO_EMPTY and deletes:
                    chunk = chunk.upserts()  # deleting what is not there: counted, not logged
                await files.check_named(conn, stored, list(zip(chunk.keys, chunk.rows, strict=True)))
                values = {"ops": chunk.ops, "keys": chunk.keys, "rows": Jsonb(chunk.rows), "deletes": deletes}
                cur = await conn.execute(statement, {**params, **values})
                row = await cur.fetchone()
                assert row is not None
                done, first, last, deleted, absent = row
                applied.add(done, first, last, deleted=deleted, absent=absent, upserts=chunk.ops.count("u"))
        finally:
            # A thread cannot be cancelled: the chunk being read is let finish before the file goes.
            with contextlib.suppress(Exception):
                await reading
        if tally.bad_rows:
            raise Refused(tally)
        if received.mode is UploadMode.REPLACE:
            await conn.execute("ANALYZE upload_key")
            cur = await conn.execute(_DELETE_LEFT_OUT, params)
            row = await cur.fetchone()
            assert row is not None
            applied.add(row[0], row[1], row[2], deleted=row[0], absent=0, upserts=0)
        counts = UploadCounts(
            rows=tally.rows, upserted=applied.upserted, unchanged=applied.unchanged, deleted=applied.deleted,
            absent=applied.absent, notes=tally.notes, blank=tally.blank,
        )  # fmt: skip
        upload = await _record(conn, received, sheet.format, sheet.encoding, "applied", counts=counts,
                               first_seq=applied.first_seq, last_seq=applied.last_seq)  # fmt: skip
        await audit.record(conn, received.who, "upload", resource=stored.code, scope=_scope(upload))
    return upload, tally


def _next(chunks: Iterator[Chunk]) -> Chunk | None:
    return next(chunks, None)


async def _read(reading: asyncio.Task[Chunk | None]) -> Chunk | None:
    try:
        return await reading
    except (FileError, HeaderError) as exc:
        raise ApiError(422, "invalid_file", str(exc)) from None
    except TooManyRows as exc:
        raise ApiError(413, "too_many_rows", str(exc)) from None


async def record_refusal(conn: Conn, received: Received, reason: str, tally: Tally | None = None) -> Upload:
    """Keep a refused upload, its problems and its bad rows, for the error report."""
    sheet_format = received.spool.format()
    async with conn.transaction():
        return await _record(conn, received, sheet_format, received.spool.encoding(), "refused", reason=reason,
                             tally=tally)  # fmt: skip


def _scope(upload: Upload) -> dict[str, Any]:
    return {
        "upload": upload.id, "mode": upload.mode.value, "format": upload.format, "sha256": upload.sha256,
        "bytes": upload.bytes, "rows": upload.counts.rows if upload.counts else None,
        "first_seq": upload.first_seq, "last_seq": upload.last_seq,
    }  # fmt: skip


_COLUMNS = """u.id, r.code AS resource, u.department, u.mode, u.format, u.encoding, u.timezone, u.sha256,
    u.bytes, u.outcome, u.counts, u.first_seq, u.last_seq, jsonb_array_length(u.problems) AS problems, u.reason,
    u.received_at"""


async def _record(
    conn: Conn,
    received: Received,
    sheet_format: str,
    encoding: str | None,
    outcome: str,
    *,
    counts: UploadCounts | None = None,
    first_seq: int | None = None,
    last_seq: int | None = None,
    reason: str | None = None,
    tally: Tally | None = None,
) -> Upload:
    spool = received.spool
    problems = [p.as_dict() for p in tally.problems] if tally else []
    bad_rows = [[number, cells] for number, cells in tally.bad_cells] if tally else []
    cur = await conn.execute(
        """
        INSERT INTO upload (resource_id, department, mode, format, encoding, timezone, sha256, bytes, outcome,
            counts, first_seq, last_seq, problems, bad_rows, header, reason)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id
        """,
        (
            received.stored.id, received.who.name, received.mode.value, sheet_format, encoding, str(received.zone),
            spool.sha256, spool.size, outcome, Jsonb(counts.model_dump()) if counts else None, first_seq, last_seq,
            Jsonb(problems), Jsonb(bad_rows), Jsonb(tally.header if tally else []), reason,
        ),
    )  # fmt: skip
    row = await cur.fetchone()
    assert row is not None
    found = await find(conn, row[0])
    assert found is not None
    return found


async def find(conn: Conn, upload_id: int) -> Upload | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {_COLUMNS} FROM upload u JOIN resource r ON r.id = u.resource_id WHERE u.id = %s",  # noqa: S608
            (upload_id,),
        )
        row = await cur.fetchone()
    return None if row is None else Upload.model_validate(row)


async def recent(conn: Conn, resource_id: int, limit: int) -> list[Upload]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {_COLUMNS} FROM upload u JOIN resource r ON r.id = u.resource_id "  # noqa: S608
            "WHERE u.resource_id = %s ORDER BY u.id DESC LIMIT %s",
            (resource_id, limit),
        )
        return [Upload.model_validate(row) for row in await cur.fetchall()]


async def report_of(conn: Conn, upload_id: int) -> tuple[list[dict[str, Any]], list[Any], list[str]] | None:
    cur = await conn.execute("SELECT problems, bad_rows, header FROM upload WHERE id = %s", (upload_id,))
    row = await cur.fetchone()
    return None if row is None else (row[0], row[1], row[2])


def fed_by_node(stored: resources.StoredResource, heartbeat_at: dt.datetime | None) -> str | None:
    """Why the resource takes no files, or None: a front-end node publishes it."""
    if heartbeat_at is None or dt.datetime.now(dt.UTC) - heartbeat_at > NODE_PUBLISHES_WITHIN:
        return None
    return (
        f"resource {stored.code!r} is published by {stored.provider}'s front-end node (its last heartbeat came "
        f"{heartbeat_at:%Y-%m-%d %H:%M:%S %Z}): change the rows at the source, or stop the node's publication "
        "for an hour before uploading files"
    )
