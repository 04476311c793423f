"""Attachments: the files of resources of format `file`, stored once per content (SHA-256) in chunks.

A provider uploads a file to its resource under the file's digest, then pushes the record whose
file field holds that digest; a consumer with a grant on the resource reads the file by it. The
bytes go through in chunks of CHUNK_BYTES both ways: a 500 MiB scan never sits in memory whole.
They are kept in PostgreSQL, or in an S3-compatible object store where one is configured.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from exchange.errors import ApiError
from exchange.object_store import ObjectStore
from exchange.push_body import PushedBatch
from exchange.resources import StoredResource
from gdx.attachments import SNIFF_BYTES, is_sha256, type_problem

CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class Blob:
    sha256: str
    bytes: int
    media_type: str
    chunks: int  # in file_chunk; 0 for a file in the object store
    location: str  # postgresql | s3


async def find(conn: AsyncConnection[Any], sha256: str) -> Blob | None:
    cur = await conn.execute(
        "SELECT sha256, bytes, media_type, chunks, location FROM file_blob WHERE sha256 = %s", (sha256,)
    )
    row = await cur.fetchone()
    return Blob(*row) if row else None


class FileStore:
    """Where files' bytes are kept: in PostgreSQL (1 MiB rows of file_chunk), or in the object store
    where the exchange has one (exchange/object_store.py); their records are in PostgreSQL either way."""

    def __init__(self, objects: ObjectStore | None = None, scratch: Path | None = None) -> None:
        self.objects = objects
        self.scratch = scratch  # where a file is spooled, checked, before it goes to the object store

    async def store(
        self, conn: AsyncConnection[Any], claimed: str, body: AsyncIterator[bytes], allowed: Sequence[str]
    ) -> tuple[Blob, bool]:
        """Read a file's bytes and keep them under ``claimed``, in the caller's transaction; the blob
        and whether it is new. Refused (422/415) when the bytes are not what the digest says or not of
        an allowed type: the caller's transaction then rolls back every chunk written (an object is
        written only once the bytes were found right)."""
        # Two uploads of the same bytes at once: the second waits, then finds them stored.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 7))", (claimed,))
        held = await find(conn, claimed)
        if held is not None or self.objects is None:
            chunks = 0

            async def into_rows(block: bytes) -> None:
                nonlocal chunks
                if held is None:
                    await conn.execute(
                        "INSERT INTO file_chunk (sha256, n, data) VALUES (%s, %s, %s)", (claimed, chunks, block)
                    )
                chunks += 1

            size, media_type = await _receive(claimed, body, allowed, into_rows)
            if held is not None:
                return held, False
            blob = Blob(claimed, size, media_type, chunks, "postgresql")
        else:
            with tempfile.NamedTemporaryFile(prefix="gdx-file-", dir=self.scratch) as spool:

                async def into_spool(block: bytes) -> None:
                    spool.write(block)

                size, media_type = await _receive(claimed, body, allowed, into_spool)
                spool.flush()
                await self.objects.put(claimed, Path(spool.name), media_type)
            blob = Blob(claimed, size, media_type, 0, "s3")
        await conn.execute(
            "INSERT INTO file_blob (sha256, bytes, media_type, chunks, location) VALUES (%s, %s, %s, %s, %s)",
            (blob.sha256, blob.bytes, blob.media_type, blob.chunks, blob.location),
        )
        return blob, True

    async def chunks(self, pool: AsyncConnectionPool[Any], blob: Blob) -> AsyncIterator[bytes]:
        """A stored file's bytes, a chunk at a time, each read on its own (no transaction held open
        while a slow client reads)."""
        if blob.location == "s3":
            if self.objects is None:
                raise RuntimeError(f"file {blob.sha256} is in the object store, and this exchange has none configured")
            async for block in self.objects.chunks(blob.sha256, CHUNK_BYTES):
                yield block
            return
        for n in range(blob.chunks):
            async with pool.connection() as conn:
                cur = await conn.execute("SELECT data FROM file_chunk WHERE sha256 = %s AND n = %s", (blob.sha256, n))
                row = await cur.fetchone()
            if row is None:  # the blob row and its chunks are written in one transaction, never apart
                raise RuntimeError(f"chunk {n} of file {blob.sha256} is missing")
            yield bytes(row[0])


async def _receive(
    claimed: str, body: AsyncIterator[bytes], allowed: Sequence[str], sink: Callable[[bytes], Awaitable[None]]
) -> tuple[int, str]:
    """Hand the body to ``sink`` in CHUNK_BYTES blocks, checking its type on the way and its digest
    at the end; its size and media type."""
    digest = hashlib.sha256()
    pending = bytearray()
    size = 0
    media_type: str | None = None
    async for part in body:
        digest.update(part)
        size += len(part)
        pending += part
        if media_type is None and len(pending) >= SNIFF_BYTES:
            media_type = _checked_type(bytes(pending), allowed)
        while len(pending) >= CHUNK_BYTES:
            await sink(bytes(pending[:CHUNK_BYTES]))
            del pending[:CHUNK_BYTES]
    if media_type is None:
        media_type = _checked_type(bytes(pending), allowed)
    if pending:
        await sink(bytes(pending))
    found = digest.hexdigest()
    if found != claimed:
        raise ApiError(422, "digest_mismatch", (
            f"the bytes received ({size:,}) have the SHA-256 {found}, not {claimed}: the file changed or was cut "
            "short on the way; send it again"
        ))  # fmt: skip
    return size, media_type


def _checked_type(head: bytes, allowed: Sequence[str]) -> str:
    media_type, problem = type_problem(head, allowed)
    if problem is not None:
        raise ApiError(422 if not head else 415, "empty_file" if not head else "file_type_not_allowed", problem)
    return media_type


async def check_pushed(conn: AsyncConnection[Any], stored: StoredResource, batch: PushedBatch) -> None:
    """Every upserted record of a file resource names, in its file field, a file uploaded to the
    resource before it: a subscriber must be able to read what the record names."""
    # The fast reader's rows are structs (exchange.push_body); as builtins they name their fields.
    rows = [(change.key, row if isinstance(row, dict) else msgspec.to_builtins(row))
            for change in batch.changes if (row := change.row) is not None]  # fmt: skip
    await check_named(conn, stored, rows)


async def check_named(conn: AsyncConnection[Any], stored: StoredResource, rows: Sequence[tuple[Any, Any]]) -> None:
    """The files that (key, row) pairs name were uploaded to the resource (422 otherwise)."""
    name = stored.spec.file_field
    if name is None:
        return
    named: dict[str, str] = {}
    for key, row in rows:
        value = row.get(name) if row is not None else None
        if value is None:
            continue
        if not is_sha256(value):
            raise ApiError(422, "invalid_file_digest", (
                f"record {key!r}: field {name!r} holds {str(value)[:80]!r}, not the SHA-256 of a file "
                "(64 lower-case hex digits)"
            ))  # fmt: skip
        named.setdefault(value, str(key))
    if not named:
        return
    cur = await conn.execute(
        "SELECT sha256 FROM resource_file WHERE resource_id = %s AND sha256 = ANY(%s)", (stored.id, list(named))
    )
    missing = sorted(set(named) - {row[0] for row in await cur.fetchall()})
    if missing:
        examples = ", ".join(f"{named[d]!r} ({d[:12]}…)" for d in missing[:5])
        raise ApiError(422, "file_not_uploaded", (
            f"{len(missing)} record(s) name files not uploaded to {stored.code!r}, e.g. {examples}: "
            f"upload them first (PUT /v1/resources/{stored.code}/files/SHA256, or gdx file put), then the records"
        ))  # fmt: skip
