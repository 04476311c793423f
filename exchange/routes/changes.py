"""The change log: providers push batches of changes; consumers read them after a cursor.

A batch is applied in one transaction or not at all. Within it, each key's newest change
(by source_version) is kept; a change no newer than what the exchange already holds for its
key is stale and skipped, so a batch sent twice, or an old change arriving late, changes
nothing. Applied changes are numbered per resource without gaps. The resource row is locked
while numbering, so numbers commit in order and a reader never skips a number that
commits later.

Everything that does not need the lock happens before it: the rows are checked, and the
batch's newest change per key is copied into the connection's staging table (STAGING_TABLE);
under the lock, one statement numbers the fresh changes, logs them and moves the keys on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import msgspec
import orjson
import psycopg
from fastapi import APIRouter, Query, Request, Response
from psycopg.types.json import Jsonb

from exchange import access, audit, metrics, push_body, resources
from exchange.deps import Pool, refused
from exchange.errors import ApiError, conflict, forbidden, not_found
from exchange.identity import Anyone, Department
from exchange.push_body import PushedBatch, PushedChange
from exchange.strict_json import StrictJsonRoute
from gdx.protocol import (
    MAX_PAGE_CHANGES,
    MAX_SEQ,
    BatchReceipt,
    ChangeBatch,
    ChangePage,
    Heartbeat,
    Purpose,
    ShareMethod,
)

STAGING_TABLE = "staged_change"


async def create_staging_table(conn: psycopg.AsyncConnection[Any]) -> None:
    """Made once for each pooled connection (the pool's configure hook): a temporary table, so
    concurrent pushes never see each other's rows; emptied when each transaction ends."""
    await conn.execute(
        f'CREATE TEMPORARY TABLE IF NOT EXISTS {STAGING_TABLE} (ord integer, op text, key text COLLATE "C", '
        "row jsonb, source_version bigint, source_commit_time timestamptz) ON COMMIT DELETE ROWS"
    )
    await conn.commit()


router = APIRouter(prefix="/v1/resources/{code}/changes", tags=["change log"], route_class=StrictJsonRoute)


def _key_text(key: str | int) -> str:
    return str(key)


def _check_provider(stored: resources.StoredResource, who: Department) -> None:
    if stored.provider != who.name:
        raise forbidden(f"resource {stored.code!r} is provided by {stored.provider}; you cannot push to it")


def _newest_per_key(changes: Sequence[PushedChange]) -> dict[str, PushedChange]:
    newest: dict[str, PushedChange] = {}
    for change in changes:
        key = _key_text(change.key)
        held = newest.get(key)
        if held is None or change.source_version >= held.source_version:
            newest[key] = change
    return newest


async def _claim(conn: psycopg.AsyncConnection[Any], batch: PushedBatch, resource_id: int) -> bool:
    """Claim the batch id for this push; False when an earlier push has it."""
    cur = await conn.execute(
        "INSERT INTO change_batch (batch_id, resource_id, received, applied, stale) "
        "VALUES (%s, %s, %s, 0, 0) ON CONFLICT (batch_id) DO NOTHING RETURNING true",
        (batch.batch_id, resource_id, len(batch.changes)),
    )
    return await cur.fetchone() is not None


async def _existing_receipt(conn: psycopg.AsyncConnection[Any], batch: PushedBatch, code: str) -> BatchReceipt:
    cur = await conn.execute(
        """
        SELECT r.code, b.received, b.applied, b.stale, b.first_seq, b.last_seq
        FROM change_batch b JOIN resource r ON r.id = b.resource_id WHERE b.batch_id = %s
        """,
        (batch.batch_id,),
    )
    row = await cur.fetchone()
    assert row is not None
    if row[0] != code:
        raise conflict(f"batch {batch.batch_id} was already used for resource {row[0]!r}; use a new batch id")
    return BatchReceipt(
        batch_id=batch.batch_id,
        resource=code,
        received=row[1],
        applied=row[2],
        stale=row[3],
        first_seq=row[4],
        last_seq=row[5],
        duplicate=True,
    )


async def _resource_or_none(pool: Pool, code: str) -> resources.StoredResource | None:
    async with pool.connection() as conn:
        try:
            return await resources.load(conn, code)
        except ApiError:
            return None


@router.post(
    "",
    response_model=BatchReceipt,
    summary="Push a batch of changes (providers)",
    openapi_extra=push_body.documented_body(ChangeBatch),
)
async def push(code: str, request: Request, who: Department, pool: Pool) -> BatchReceipt:
    body = await push_body.body_of(request)
    # Read before anything else, as FastAPI reads a declared body: a malformed one is refused
    # first, whoever sends it and wherever.
    checked = await _resource_or_none(pool, code)
    batch = await push_body.read(body, checked.reader if checked else None)
    try:
        if checked is None:
            raise not_found(f"resource {code!r}")
        # Checked before the resource is locked: the checks are most of a batch's work, and
        # meanwhile other batches of the resource are applied.
        _check_provider(checked, who)
        await push_body.check_rows(checked.schema, batch)
        newest = _newest_per_key(batch.changes)
        # In pipeline mode, statements whose results are not needed go out with the next one
        # that is: three round trips (claim; stage, lock and apply; audit and commit). The lock
        # is taken in the second and held through the third; every wait for a reply meanwhile
        # is a wait for every other batch of the resource.
        async with pool.connection() as conn, conn.pipeline(), conn.transaction():
            # The batch id is claimed first: a batch sent twice is answered before any work.
            if not await _claim(conn, batch, checked.id):
                metrics.BATCHES.labels("duplicate").inc()
                return await _existing_receipt(conn, batch, code)
            await _stage(conn, newest)
            await resources.lock(conn, checked.id)
            numbered = await _apply(conn, checked, batch, newest)
            if numbered is None:
                # The schema changed in between: check again against the one now in force.
                stored = await resources.load(conn, code)
                _check_provider(stored, who)
                await push_body.check_rows(stored.schema, await push_body.read(body, stored.reader))
                numbered = await _apply(conn, stored, batch, newest)
                assert numbered is not None, "the resource is locked: its schema cannot change again"
            applied, first = numbered
            if batch.heartbeat is not None:
                await _append_heartbeat(conn, checked.id, batch.heartbeat)
            receipt = BatchReceipt(
                batch_id=batch.batch_id,
                resource=code,
                received=len(batch.changes),
                applied=applied,
                stale=len(batch.changes) - applied,
                first_seq=first if applied else None,
                last_seq=first + applied - 1 if applied else None,
                duplicate=False,
            )
            if not batch.changes:
                # A heartbeat alone carries no data: not an access to audit, and it comes
                # every few seconds from every node.
                return receipt
            await audit.record(
                conn,
                who,
                "push",
                resource=code,
                scope={
                    "batch": str(batch.batch_id),
                    "received": receipt.received,
                    "applied": receipt.applied,
                    "first_seq": receipt.first_seq,
                    "last_seq": receipt.last_seq,
                },
            )
    except ApiError as error:
        metrics.BATCHES.labels("rejected").inc()
        raise await refused(pool, who, "push", error, resource=code, scope={"batch": str(batch.batch_id)}) from None
    metrics.BATCHES.labels("applied").inc()
    metrics.CHANGES.labels("applied").inc(receipt.applied)
    metrics.CHANGES.labels("stale").inc(receipt.stale)
    return receipt


async def _stage(conn: psycopg.AsyncConnection[Any], newest: dict[str, PushedChange]) -> None:
    """Copy the batch's newest change per key into the staging table (PostgreSQL parses the
    rows here, before the resource is locked). The changes go as one JSON document, which
    msgspec writes in C (the fast reader's rows are its structs) and the server takes apart:
    a COPY row by row spent ~6 ms of Python per 1,000 changes, the document well under 1 ms."""
    if not newest:
        return
    staged = [
        (ord_, "u" if change.op == "upsert" else "d", key, change.row, change.source_version, change.source_commit_time)
        for ord_, (key, change) in enumerate(newest.items())
    ]
    await conn.execute(_STAGE, (Jsonb(staged, dumps=msgspec.json.encode),))  # the datetimes too


_STAGE = f"""
    INSERT INTO {STAGING_TABLE} (ord, op, key, row, source_version, source_commit_time)
    SELECT (c->>0)::integer, c->>1, c->>2, nullif(c->3, 'null'), (c->>4)::bigint, (c->>5)::timestamptz
    FROM jsonb_array_elements(%s) AS c
"""  # noqa: S608 - the table name is a constant


# Under the resource's lock: the staged changes newer than what the exchange holds for their
# key get the next numbers (in batch order), go into the change log, and become their keys'
# current versions; the resource's last number and the batch's receipt move with them. One
# statement, no row passing through Python. It runs after the statement that takes the lock, so
# it reads the resource, and the keys' current versions, as the batches before it left them. If
# the resource's schema is no longer the one the batch was checked against, it writes nothing.
_APPLY = f"""
    WITH resource_now AS (
        SELECT last_seq + 1 AS first, schema_version = %(version)s AS checked FROM resource WHERE id = %(resource)s
    ), staged AS (
        -- A lookup per staged row, not a join: the temporary table has no statistics, and the
        -- planner's join choice (a scan of every current key) grew with the resource. LIMIT 1
        -- keeps the planner from turning the LATERAL lookup into that join; a subquery in the
        -- select list instead was copied into the filter below, and each key looked up twice.
        SELECT s.*, k.source_version AS held
        FROM {STAGING_TABLE} s LEFT JOIN LATERAL (
            SELECT k.source_version FROM current_key k WHERE k.resource_id = %(resource)s AND k.key = s.key LIMIT 1
        ) k ON true
    ), fresh AS (
        SELECT s.*, r.first + row_number() OVER (ORDER BY ord) - 1 AS seq
        FROM staged s, resource_now r WHERE r.checked AND s.source_version > coalesce(s.held, -1)
    ), logged AS (
        INSERT INTO change (resource_id, seq, op, key, row, source_version, source_commit_time)
        SELECT %(resource)s, seq, op, key, row, source_version, source_commit_time FROM fresh
    ), added AS (
        -- New keys go in plainly: half the cost of ON CONFLICT's speculative insertion. No other
        -- push can add them meanwhile: it waits for the resource's lock.
        INSERT INTO current_key (resource_id, key, source_version, seq, deleted)
        SELECT %(resource)s, key, source_version, seq, op = 'd' FROM fresh WHERE held IS NULL
    ), moved AS (
        INSERT INTO current_key (resource_id, key, source_version, seq, deleted)
        SELECT %(resource)s, key, source_version, seq, op = 'd' FROM fresh WHERE held IS NOT NULL
        ON CONFLICT (resource_id, key) DO UPDATE
            SET source_version = EXCLUDED.source_version, seq = EXCLUDED.seq, deleted = EXCLUDED.deleted
    ), counted AS (
        SELECT count(*) AS applied FROM fresh
    ), numbered AS (
        UPDATE resource SET last_seq = r.first + applied - 1, last_change_at = now()
        FROM counted, resource_now r WHERE id = %(resource)s AND applied > 0
    ), receipt AS (
        UPDATE change_batch SET applied = counted.applied, stale = %(received)s - counted.applied,
            first_seq = CASE WHEN counted.applied > 0 THEN r.first END,
            last_seq = CASE WHEN counted.applied > 0 THEN r.first + counted.applied - 1 END
        FROM counted, resource_now r WHERE batch_id = %(batch)s AND r.checked
    )
    SELECT counted.applied, r.first, r.checked FROM counted, resource_now r
"""  # noqa: S608 - the table name is a constant


async def _apply(
    conn: psycopg.AsyncConnection[Any],
    checked: resources.StoredResource,
    batch: PushedBatch,
    newest: dict[str, PushedChange],
) -> tuple[int, int] | None:
    """Apply the staged changes: how many got numbers, and the first of them (0, 0 for a
    heartbeat alone); None, with nothing applied, when the resource's schema is no longer the
    version ``checked`` was read with."""
    if not newest:
        # change_batch keeps what it was claimed with: nothing applied, nothing stale.
        return 0, 0
    params = {
        "resource": checked.id,
        "version": checked.schema_version,
        "received": len(batch.changes),
        "batch": batch.batch_id,
    }
    cur = await conn.execute(_APPLY, params)
    row = await cur.fetchone()
    assert row is not None
    applied, first, still_checked = row
    return (applied, first) if still_checked else None


# Heartbeats kept per resource in the change log: an hour of them at the agent's default
# interval (5 s). Older ones only measured lag that has long been measured, and every node
# sends one per resource every few seconds, for ever; the newest is also kept on the resource.
HEARTBEATS_KEPT = 720

_APPEND_HEARTBEAT = """
    WITH next AS (
        SELECT last_seq + 1 AS seq FROM resource WHERE id = %(resource)s
    ), logged AS (
        INSERT INTO change (resource_id, seq, op, key, row, source_version, source_commit_time)
        SELECT %(resource)s, seq, 'h', NULL, NULL, %(beat)s, %(time)s FROM next
    ), noted AS (
        UPDATE resource SET last_seq = next.seq, heartbeat_seq = %(beat)s, heartbeat_source_time = %(time)s,
            heartbeat_received_at = now()
        FROM next WHERE id = %(resource)s
    )
    -- The statement does not see the heartbeat it adds: of the others, the newest kept - 1 stay.
    DELETE FROM change WHERE resource_id = %(resource)s AND op = 'h' AND seq < (
        SELECT seq FROM change WHERE resource_id = %(resource)s AND op = 'h'
        ORDER BY seq DESC OFFSET %(kept)s - 2 LIMIT 1
    )
"""


async def _append_heartbeat(conn: psycopg.AsyncConnection[Any], resource_id: int, beat: Heartbeat) -> None:
    """The heartbeat takes the next number after the batch's changes: a consumer that has
    applied it has applied them too. The oldest heartbeats beyond HEARTBEATS_KEPT go."""
    await conn.execute(
        _APPEND_HEARTBEAT,
        {"resource": resource_id, "beat": beat.seq, "time": beat.source_time, "kept": HEARTBEATS_KEPT},
    )


@router.get("", response_model=ChangePage, summary="Read changes after a cursor (granted fields only)")
async def pull(
    code: str,
    who: Anyone,
    pool: Pool,
    purpose: Annotated[Purpose, Query(description="Must be the purpose of your grant")],
    after: Annotated[int, Query(ge=0, le=MAX_SEQ, description="The last sequence number you applied")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_CHANGES)] = 1000,
    latest: Annotated[
        bool,
        Query(
            description="Only the changes that are still their key's newest, no heartbeats: to read a "
            "resource again from 0 (say, for fields a grant gained) without going back in time"
        ),
    ] = False,
) -> Response:
    async with pool.connection() as conn:
        stored = await resources.load(conn, code)
    fields = await access.granted_fields(pool, who, stored, purpose, ShareMethod.FRONT_END, "pull")
    # The database keeps only the granted fields (and the key) and hands each row over as JSON
    # text, which goes into the page as it is: a page of 5,000 rows is never parsed here.
    allowed = None if fields is None else [stored.spec.primary_key, *fields]
    async with pool.connection() as conn:
        cur = await conn.execute(
            """
            SELECT seq, op, key,
                CASE WHEN %(allowed)s::text[] IS NULL THEN row::text ELSE (row - ARRAY(
                    SELECT k FROM jsonb_object_keys(row) AS k WHERE NOT k = ANY(%(allowed)s::text[])))::text END,
                source_version, source_commit_time
            FROM change c
            WHERE c.resource_id = %(id)s AND c.seq > %(after)s AND (NOT %(latest)s OR c.op <> 'h' AND EXISTS (
                SELECT FROM current_key k WHERE k.resource_id = c.resource_id AND k.key = c.key AND k.seq = c.seq))
            ORDER BY c.seq LIMIT %(limit)s
            """,
            {"allowed": allowed, "id": stored.id, "after": after, "limit": limit + 1, "latest": latest},
        )
        rows = await cur.fetchall()
        integer_key = stored.integer_key
        page = [_change_out(integer_key, *row) for row in rows[:limit]]
        if any(change["op"] != "heartbeat" for change in page):
            # Polls that return no data (nothing, or heartbeats only) are not audited; every page with data is.
            async with conn.transaction():
                await audit.record(
                    conn,
                    who,
                    "pull",
                    resource=code,
                    purpose=purpose,
                    scope={
                        "after": after,
                        "first_seq": page[0]["seq"],
                        "last_seq": page[-1]["seq"],
                        "count": len(page),
                        "fields": fields,
                        "latest": latest,
                    },
                )
    metrics.PULLED.inc(len(page))
    body = {
        "resource": code,
        "changes": page,
        "next_after": page[-1]["seq"] if page else after,
        "has_more": len(rows) > limit,
    }
    return Response(orjson.dumps(body), media_type="application/json")


def _change_out(
    integer_key: bool, seq: int, op: str, key: str | None, row: str | None, version: int, commit_time: Any
) -> dict[str, Any]:
    """One change as ChangeOut's JSON (the response model the OpenAPI document shows)."""
    if op == "h":
        return {
            "seq": seq,
            "op": "heartbeat",
            "key": None,
            "row": None,
            "source_version": version,
            "source_commit_time": commit_time,
            "heartbeat": {"seq": version, "source_time": commit_time},
        }
    assert key is not None
    return {
        "seq": seq,
        "op": "upsert" if op == "u" else "delete",
        "key": int(key) if integer_key else key,
        "row": None if row is None else orjson.Fragment(row),
        "source_version": version,
        "source_commit_time": commit_time,
        "heartbeat": None,
    }
