"""The front-end database (前置库): the agent's state and the data waiting at each hop.

Every function that changes data takes a connection inside a transaction the caller holds,
so that rows and the position they advance (watermark, cursor, outbox) commit together.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources as package_files
from typing import Any

import orjson
import psycopg
from psycopg.types.json import Jsonb

from front_end_node.sources import KEY_BUCKET_POSTGRES, KEY_TALLY_POSTGRES, KeyTally, key_range
from front_end_node.wire import encode
from gdx.attachments import SNIFF_BYTES, media_type_of
from gdx.fields import RowError, RowSchema
from gdx.protocol import ResourceSpec

Conn = psycopg.AsyncConnection[tuple[Any, ...]]
_SCHEMA_LOCK = 0x6764785F6665  # "gdx_fe": one migrating agent at a time


def quote(identifier: str) -> str:
    """A table name, optionally schema-qualified, as a quoted SQL identifier."""
    return ".".join(f'"{part}"' for part in identifier.split("."))


async def connect(url: str) -> Conn:
    # autocommit: a bare query commits at once, and every `transaction()` block is a real transaction
    # (not a savepoint inside an implicit one that would never commit).
    return await psycopg.AsyncConnection.connect(
        url, connect_timeout=10, application_name="gdx-front-end-agent", autocommit=True
    )


async def migrate(conn: Conn) -> None:
    sql = package_files.files("front_end_node").joinpath("schema.sql").read_text(encoding="utf-8")
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
        await conn.execute(sql.encode())


async def cache_spec(conn: Conn, code: str, spec: ResourceSpec) -> None:
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO gdx.resource_cache (resource, spec) VALUES (%s, %s) "
            "ON CONFLICT (resource) DO UPDATE SET spec = EXCLUDED.spec, fetched_at = now()",
            (code, Jsonb(spec.model_dump(mode="json"))),
        )


async def cached_spec(conn: Conn, code: str) -> ResourceSpec | None:
    cur = await conn.execute("SELECT spec FROM gdx.resource_cache WHERE resource = %s", (code,))
    row = await cur.fetchone()
    return ResourceSpec.model_validate(row[0]) if row else None


async def lock_resource(conn: Conn, code: str) -> None:
    """Extraction, comparison and a full load of one resource may run in different
    processes; they take turns, so that a key's version is never handed out twice."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('gdx.mirror'), hashtext(%s))", (code,))


class FieldsChanged(Exception):
    """The resource's fields changed in the catalog after these rows were made: nothing of
    them was recorded, and whoever made them makes them again with the new fields."""

    def __init__(self, code: str) -> None:
        super().__init__(f"the fields of {code} changed in the catalog while its rows were being read")


def field_record(spec: ResourceSpec) -> list[list[str]]:
    """The fields a resource's rows are made with (name and type), as kept with its extraction."""
    return [[f.name, f.type.value] for f in spec.fields]


@dataclass(frozen=True)
class FieldsChange:
    added: list[str]  # fields new or of a new type: the rows recorded before lack them
    dropped: list[str]


async def _recorded_fields(conn: Conn, code: str) -> list[list[str]] | None:
    cur = await conn.execute("SELECT fields FROM gdx.extract_state WHERE resource = %s", (code,))
    row = await cur.fetchone()
    return row[0] if row else None


async def follow_fields(conn: Conn, code: str, spec: ResourceSpec) -> FieldsChange | None:
    """Record that the rows of ``code`` are made with ``spec``'s fields from now on; the change
    from the fields recorded before, if any. Rows waiting in the outbox lose the dropped fields
    (the exchange would refuse them); when fields were added, the extraction's watermark is
    cleared, so that the table is read again and every row gets them."""
    fields = field_record(spec)
    async with conn.transaction():
        await lock_resource(conn, code)  # no rows of the old fields are recorded meanwhile
        await conn.execute("INSERT INTO gdx.extract_state (resource) VALUES (%s) ON CONFLICT DO NOTHING", (code,))
        held = await _recorded_fields(conn, code)
        if held == fields:
            return None
        change = None
        if held is not None:  # else the first record: a new publication, or an agent from before records
            old, new = dict(held), dict(fields)
            change = FieldsChange(
                added=[name for name, ftype in fields if old.get(name) != ftype],
                dropped=[name for name in old if name not in new],
            )
        await conn.execute(
            "UPDATE gdx.extract_state SET fields = %s, watermark = CASE WHEN %s THEN NULL ELSE watermark END "
            "WHERE resource = %s",
            (Jsonb(fields), bool(change and change.added), code),
        )
        if change and change.dropped:
            await conn.execute(
                "UPDATE gdx.outbox SET row = row - %(dropped)s::text[] WHERE resource = %(code)s "
                "AND row ?| %(dropped)s::text[]",
                {"dropped": change.dropped, "code": code},
            )
    return change


async def extract_position(conn: Conn, code: str) -> tuple[Any, int]:
    """The resource's extraction watermark (as saved) and its last heartbeat number; the row made if new."""
    async with conn.transaction():
        await conn.execute("INSERT INTO gdx.extract_state (resource) VALUES (%s) ON CONFLICT DO NOTHING", (code,))
        cur = await conn.execute("SELECT watermark, heartbeat_seq FROM gdx.extract_state WHERE resource = %s", (code,))
        row = await cur.fetchone()
    assert row is not None
    return row[0], int(row[1])


async def save_watermark(conn: Conn, code: str, watermark: dict[str, Any], fields: list[list[str]]) -> None:
    """Where extraction goes on from, saved by an extractor reading ``fields``: FieldsChanged
    if they are no longer the recorded ones, so that a watermark cleared for fields added
    (follow_fields) is not set back."""
    cur = await conn.execute(
        "UPDATE gdx.extract_state SET watermark = %s WHERE resource = %s AND (fields IS NULL OR fields = %s)",
        (Jsonb(watermark), code, Jsonb(fields)),
    )
    if cur.rowcount == 0:
        raise FieldsChanged(code)


@dataclass(frozen=True)
class Recorded:
    changed: int
    quarantined: int


async def record_rows(
    conn: Conn,
    code: str,
    schema: RowSchema,
    rows: list[tuple[dict[str, Any], dt.datetime]],
    fields: list[list[str]],
    *,
    files: Mapping[str, bytes] | None = None,
    refused: Mapping[str, str] | None = None,
) -> Recorded:
    """Compare source rows, made with ``fields``, with the mirror; the new and changed ones go
    to the mirror and the outbox with the key's next version, and the files they name (``files``,
    by SHA-256) to gdx.file. Rows failing the schema, or whose key ``refused`` gives a reason,
    go to quarantine instead. FieldsChanged if the resource's fields are no longer ``fields``."""
    await lock_resource(conn, code)
    if await _recorded_fields(conn, code) not in (None, fields):
        raise FieldsChanged(code)
    latest: dict[str, tuple[dict[str, Any], dt.datetime]] = {}
    bad: list[tuple[str, str, str]] = []
    for row, commit_time in rows:
        key = str(row.get(schema.primary_key))
        try:
            if refused and key in refused:
                raise RowError(refused[key])
            schema.check_row(row)
        except RowError as exc:
            bad.append((key, orjson.dumps(row, default=str).decode(), str(exc)))
            latest.pop(key, None)
            continue
        latest[key] = (row, commit_time)
    if bad:
        await conn.cursor().executemany(
            "INSERT INTO gdx.quarantine (resource, key, row, reason) VALUES (%s, %s, %s::jsonb, %s) "
            "ON CONFLICT (resource, key) DO UPDATE SET row = EXCLUDED.row, reason = EXCLUDED.reason, seen_at = now()",
            [(code, key, row, reason) for key, row, reason in bad],
        )
    if not latest:
        return Recorded(0, len(bad))
    # Arrays go in binary (%b): a text array of JSON rows would be escaped character by
    # character, which was half of a full load's time in the agent.
    cur = await conn.execute(
        "SELECT key, digest, version, deleted FROM gdx.mirror WHERE resource = %s AND key = ANY(%b::text[])",
        (code, list(latest)),
    )
    held = {key: (dig, version, deleted) for key, dig, version, deleted in await cur.fetchall()}
    keys, texts, digests, versions, times = [], [], [], [], []
    for key, (row, commit_time) in latest.items():
        text, row_digest = encode(row)
        old = held.get(key)
        if old is not None and not old[2] and old[0] == row_digest:
            continue
        keys.append(key)
        texts.append(text.decode())
        digests.append(row_digest)
        versions.append(old[1] + 1 if old else 1)
        times.append(commit_time)
    if keys:
        # One statement: the rows are sent and parsed once for the mirror, the outbox (in the
        # source's order) and clearing any quarantine of the same keys.
        await conn.execute(
            """
            WITH changed AS MATERIALIZED (
                SELECT k, r::jsonb AS r, d, v, c, n FROM unnest(%(k)b::text[], %(r)b::text[], %(d)b::bytea[],
                    %(v)b::bigint[], %(c)b::timestamptz[]) WITH ORDINALITY AS t(k, r, d, v, c, n)
            ), mirrored AS (
                INSERT INTO gdx.mirror (resource, key, row, digest, version, deleted, changed_at)
                SELECT %(code)s, k, r, d, v, false, c FROM changed
                ON CONFLICT (resource, key) DO UPDATE
                    SET row = EXCLUDED.row, digest = EXCLUDED.digest, version = EXCLUDED.version, deleted = false,
                        changed_at = EXCLUDED.changed_at
            ), cleared AS (
                DELETE FROM gdx.quarantine q USING changed WHERE q.resource = %(code)s AND q.key = changed.k
            )
            INSERT INTO gdx.outbox (resource, op, key, row, source_version, source_commit_time)
            SELECT %(code)s, 'u', k, r, v, c FROM changed ORDER BY n
            """,
            {"code": code, "k": keys, "r": texts, "d": digests, "v": versions, "c": times},
        )
        if files and schema.file_field is not None:
            named = {latest[key][0].get(schema.file_field) for key in keys}
            await store_files(conn, code, {sha: data for sha, data in files.items() if sha in named})
    return Recorded(len(keys), len(bad))


async def store_files(conn: Conn, code: str, files: Mapping[str, bytes], *, sent: bool = False) -> None:
    """The files of resource ``code``, by SHA-256, into gdx.file (those it holds are left as they are)."""
    if not files:
        return
    await conn.cursor().executemany(
        "INSERT INTO gdx.file (resource, sha256, data, media_type, sent_at) VALUES (%s, %s, %b, %s, "
        "CASE WHEN %s THEN now() END) ON CONFLICT (resource, sha256) DO NOTHING",
        [(code, sha, data, media_type_of(data[:SNIFF_BYTES]), sent) for sha, data in files.items()],
    )


async def files_held(conn: Conn, code: str, digests: Sequence[str]) -> set[str]:
    cur = await conn.execute(
        "SELECT sha256 FROM gdx.file WHERE resource = %s AND sha256 = ANY(%s)", (code, list(digests))
    )
    return {sha for (sha,) in await cur.fetchall()}


async def unsent_files(conn: Conn, code: str, digests: Sequence[str]) -> list[str]:
    cur = await conn.execute(
        "SELECT sha256 FROM gdx.file WHERE resource = %s AND sha256 = ANY(%s) AND sent_at IS NULL ORDER BY sha256",
        (code, list(digests)),
    )
    return [sha for (sha,) in await cur.fetchall()]


async def file_data(conn: Conn, code: str, sha256: str) -> bytes | None:
    cur = await conn.execute("SELECT data FROM gdx.file WHERE resource = %s AND sha256 = %s", (code, sha256))
    row = await cur.fetchone()
    return bytes(row[0]) if row else None


async def prune_files(conn: Conn, code: str, table: str | None, file_field: str | None) -> int:
    """A subscription's files that no row of its table names any more (a file replaced, a row
    deleted); all of them when the grant no longer covers the file field (``file_field`` None)."""
    if file_field is None or table is None:
        cur = await conn.execute("DELETE FROM gdx.file WHERE resource = %s", (code,))
    else:
        cur = await conn.execute(
            f"DELETE FROM gdx.file f WHERE f.resource = %s AND NOT EXISTS (SELECT FROM {quote(table)} t "  # noqa: S608
            f'WHERE t."{file_field}" = f.sha256)',
            (code,),
        )
    return cur.rowcount


async def prune_sent_files(conn: Conn, code: str, file_field: str) -> int:
    """A provider's files that the exchange has and that neither a live row of the mirror nor a change
    waiting in the outbox names: the business database keeps the bytes, the exchange its copy."""
    cur = await conn.execute(
        "DELETE FROM gdx.file f WHERE f.resource = %(code)s AND f.sent_at IS NOT NULL "
        "AND NOT EXISTS (SELECT FROM gdx.mirror m WHERE m.resource = %(code)s AND NOT m.deleted "
        "AND m.row ->> %(field)s = f.sha256) "
        "AND NOT EXISTS (SELECT FROM gdx.outbox o WHERE o.resource = %(code)s AND o.row ->> %(field)s = f.sha256)",
        {"code": code, "field": file_field},
    )
    return cur.rowcount


async def mark_unsent(conn: Conn, code: str, digests: Sequence[str]) -> None:
    await conn.execute(
        "UPDATE gdx.file SET sent_at = NULL WHERE resource = %s AND sha256 = ANY(%s)", (code, list(digests))
    )


async def mark_sent(conn: Conn, code: str, sha256: str) -> None:
    await conn.execute(
        "UPDATE gdx.file SET sent_at = now() WHERE resource = %s AND sha256 = %s AND sent_at IS NULL", (code, sha256)
    )


async def mirrored_at(conn: Conn, code: str, keys: Sequence[str]) -> dict[str, dt.datetime]:
    """The change-column value each of ``keys`` had when its row was last written to the
    mirror (live keys that have one)."""
    cur = await conn.execute(
        "SELECT key, changed_at FROM gdx.mirror WHERE resource = %s AND key = ANY(%b::text[]) "
        "AND NOT deleted AND changed_at IS NOT NULL",
        (code, list(keys)),
    )
    return dict(await cur.fetchall())


async def live_keys(conn: Conn, code: str, keys: Sequence[str]) -> set[str]:
    """Those of ``keys`` the mirror holds, not deleted."""
    cur = await conn.execute(
        "SELECT key FROM gdx.mirror WHERE resource = %s AND key = ANY(%b::text[]) AND NOT deleted", (code, list(keys))
    )
    return {key for (key,) in await cur.fetchall()}


async def mirror_keys(
    conn: Conn, code: str, buckets: Sequence[str] | None = None, lower: str | None = None, upper: str | None = None
) -> dict[str, tuple[bytes | None, int]]:
    """The live keys of the mirror with their digest and version (a snapshot for comparison),
    all of them or those of some key buckets (see sources.KEY_TALLY_POSTGRES), in
    lower < key <= upper (see sources.key_range)."""
    where, params = key_range("key", lower, upper)
    sql = f"SELECT key, digest, version FROM gdx.mirror WHERE resource = %s AND NOT deleted AND {where}"  # noqa: S608
    params = [code, *params]
    if buckets is not None:
        sql += f" AND {KEY_BUCKET_POSTGRES.format(key='key')} = ANY(%s)"
        params.append(list(buckets))
    cur = await conn.execute(sql, params)
    return {key: (dig, version) for key, dig, version in await cur.fetchall()}


async def mirror_key_after(conn: Conn, code: str, lower: str | None, skip: int) -> str | None:
    """As Source.key_after, for the mirror's live keys."""
    where, params = key_range("key", lower, None)
    cur = await conn.execute(
        f"SELECT key FROM gdx.mirror WHERE resource = %s AND NOT deleted AND {where} "  # noqa: S608
        "ORDER BY key LIMIT 1 OFFSET %s",
        [code, *params, skip],
    )
    row = await cur.fetchone()
    return row[0] if row else None


async def mirror_key_tally(conn: Conn, code: str, lower: str | None = None, upper: str | None = None) -> KeyTally:
    """The mirror's live keys per bucket, as Source.key_tally gives a table's."""
    where, params = key_range("key", lower, upper)
    sql = KEY_TALLY_POSTGRES.format(key="key", source="gdx.mirror", where=f"resource = %s AND NOT deleted AND {where}")
    cur = await conn.execute(sql, [code, *params])
    return {bucket: (int(count), int(checksum)) for bucket, count, checksum in await cur.fetchall()}


async def clear_quarantine(conn: Conn, code: str, *, keep: set[str], before: dt.datetime) -> int:
    """Take out of quarantine the rows of ``code`` quarantined before ``before`` whose key is
    neither in ``keep`` nor live in the mirror; how many. (A row quarantined later may have
    come after ``keep`` was read.)"""
    cur = await conn.execute("SELECT key FROM gdx.quarantine WHERE resource = %s AND seen_at < %s", (code, before))
    gone = [key for (key,) in await cur.fetchall() if key not in keep]
    if gone:
        # A key the mirror holds is at the source (else the comparison deleted it): its newer
        # row is the one quarantined, and stays so.
        gone = sorted(set(gone) - await live_keys(conn, code, gone))
    if gone:
        await conn.execute(
            "DELETE FROM gdx.quarantine WHERE resource = %s AND key = ANY(%s) AND seen_at < %s", (code, gone, before)
        )
    return len(gone)


async def record_deletes(conn: Conn, code: str, gone: dict[str, int], commit_time: dt.datetime) -> int:
    """Mark keys deleted that were missing at the source, unless the key changed since the
    snapshot said so (then the next comparison decides again)."""
    if not gone:
        return 0
    await lock_resource(conn, code)
    cur = await conn.execute(
        """
        UPDATE gdx.mirror m SET deleted = true, row = NULL, digest = NULL, version = m.version + 1
        FROM unnest(%b::text[], %b::bigint[]) AS g(k, v)
        WHERE m.resource = %s AND m.key = g.k AND m.version = g.v AND NOT m.deleted
        RETURNING m.key, m.version
        """,
        (list(gone), list(gone.values()), code),
    )
    deleted = await cur.fetchall()
    if deleted:
        await conn.execute(
            """
            INSERT INTO gdx.outbox (resource, op, key, row, source_version, source_commit_time)
            SELECT %s, 'd', k, NULL, v, %s FROM unnest(%b::text[], %b::bigint[]) AS t(k, v)
            """,
            (code, commit_time, [k for k, _ in deleted], [v for _, v in deleted]),
        )
    return len(deleted)


async def record_key_deletes(conn: Conn, code: str, keys: Sequence[str], commit_time: dt.datetime) -> int:
    """Mark these keys deleted (a deletion the source's log reported), whatever their version."""
    cur = await conn.execute(
        "SELECT key, version FROM gdx.mirror WHERE resource = %s AND key = ANY(%b::text[]) AND NOT deleted",
        (code, list(keys)),
    )
    return await record_deletes(conn, code, dict(await cur.fetchall()), commit_time)


async def full_sync_moving(conn: Conn, code: str) -> bool:
    """True while `gdx node sync --full` of the resource is unfinished and started or copied a
    page lately (a load that stalled for 2 minutes no longer holds the agent back)."""
    cur = await conn.execute(
        "SELECT 1 FROM gdx.full_sync WHERE resource = %s AND finished_at IS NULL "
        "AND progressed_at > now() - interval '2 minutes'",
        (code,),
    )
    return await cur.fetchone() is not None


async def record_heartbeat(conn: Conn, hop: str, code: str, seq: int, source_time: dt.datetime) -> None:
    await conn.execute(
        "INSERT INTO gdx.heartbeat (hop, resource, seq, source_time) VALUES (%s, %s, %s, %s) "
        "ON CONFLICT (hop, resource) DO UPDATE SET seq = EXCLUDED.seq, source_time = EXCLUDED.source_time, "
        "seen_at = now() WHERE gdx.heartbeat.seq <= EXCLUDED.seq",
        (hop, code, seq, source_time),
    )


async def record_source_heartbeat(conn: Conn, code: str, seq: int, source_time: dt.datetime) -> None:
    """A heartbeat the extract hop read: queued for the exchange, and its number kept as the last."""
    async with conn.transaction():
        await queue_heartbeat(conn, code, seq, source_time)
        await conn.execute("UPDATE gdx.extract_state SET heartbeat_seq = %s WHERE resource = %s", (seq, code))


async def queue_heartbeat(conn: Conn, code: str, seq: int, source_time: dt.datetime) -> None:
    await conn.execute(
        "INSERT INTO gdx.outbox (resource, op, key, row, source_version, source_commit_time) "
        "VALUES (%s, 'h', NULL, NULL, %s, %s)",
        (code, seq, source_time),
    )
    await record_heartbeat(conn, "extract", code, seq, source_time)


@dataclass(frozen=True)
class Outgoing:
    batch_id: uuid.UUID
    ids: list[int]
    rows: list[tuple[int, str, str | None, str | None, int, dt.datetime]]  # id, op, key, row text, version, time


async def next_batch(conn: Conn, code: str, limit: int) -> Outgoing | None:
    """The batch to send: the one fixed before (unacknowledged, maybe sent before a crash),
    else the oldest pending rows under a new batch id, fixed before anything is sent."""
    columns = "id, op, key, row::text, source_version, source_commit_time"
    async with conn.transaction():
        cur = await conn.execute("SELECT batch_id, ids FROM gdx.push_batch WHERE resource = %s", (code,))
        fixed = await cur.fetchone()
        if fixed is not None:
            cur = await conn.execute(
                f"SELECT {columns} FROM gdx.outbox WHERE id = ANY(%b::bigint[]) ORDER BY id",  # noqa: S608
                (fixed[1],),
            )
            rows = await cur.fetchall()
            if rows:
                return Outgoing(fixed[0], [r[0] for r in rows], rows)
            await conn.execute("DELETE FROM gdx.push_batch WHERE resource = %s", (code,))
        cur = await conn.execute(
            f"SELECT {columns} FROM gdx.outbox WHERE resource = %s ORDER BY id LIMIT %s",  # noqa: S608
            (code, limit),
        )
        rows = await cur.fetchall()
        if not rows:
            return None
        batch = Outgoing(uuid.uuid4(), [r[0] for r in rows], rows)
        await conn.execute(
            "INSERT INTO gdx.push_batch (resource, batch_id, ids) VALUES (%s, %s, %b::bigint[])",
            (code, batch.batch_id, batch.ids),
        )
    return batch


async def acknowledge(conn: Conn, code: str, batch: Outgoing, heartbeat: tuple[int, dt.datetime] | None) -> None:
    async with conn.transaction():
        # A join with the ids, one index probe each, whatever the outbox's statistics say.
        await conn.execute(
            "DELETE FROM gdx.outbox o USING unnest(%b::bigint[]) AS acked(id) WHERE o.id = acked.id", (batch.ids,)
        )
        await conn.execute("DELETE FROM gdx.push_batch WHERE resource = %s", (code,))
        if heartbeat is not None:
            await record_heartbeat(conn, "push", code, *heartbeat)


async def unfix(conn: Conn, batch: Outgoing, quarantined: dict[int, str], code: str) -> None:
    """The exchange refused some rows of a batch: quarantine them and free the rest for a new
    batch (a refused batch id was never recorded by the exchange)."""
    async with conn.transaction():
        for outbox_id, reason in quarantined.items():
            cur = await conn.execute("DELETE FROM gdx.outbox WHERE id = %s RETURNING key, row::text", (outbox_id,))
            gone = await cur.fetchone()
            if gone is not None:
                await conn.execute(
                    "INSERT INTO gdx.quarantine (resource, key, row, reason) VALUES (%s, %s, %s::jsonb, %s) "
                    "ON CONFLICT (resource, key) DO UPDATE SET row = EXCLUDED.row, reason = EXCLUDED.reason, "
                    "seen_at = now()",
                    (code, gone[0] or "", gone[1], f"refused by the exchange: {reason}"),
                )
        await conn.execute("DELETE FROM gdx.push_batch WHERE resource = %s AND batch_id = %s", (code, batch.batch_id))
