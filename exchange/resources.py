"""Reading catalog entries, shared by every route that names a resource."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import psycopg

from exchange.errors import not_found
from exchange.push_body import BatchReader
from gdx.fields import FieldType, RowSchema
from gdx.protocol import Resource, ResourceSpec

_COLUMNS = "id, code, provider, spec, schema_version, last_seq, created_at, catalog_updated_at, last_change_at"


@dataclass(frozen=True)
class StoredResource:
    id: int
    code: str
    provider: str
    spec: ResourceSpec
    schema_version: int
    last_seq: int
    created_at: dt.datetime
    catalog_updated_at: dt.datetime
    last_change_at: dt.datetime | None

    @property
    def schema(self) -> RowSchema:
        return _checkers(self).schema

    @property
    def reader(self) -> BatchReader:
        """Reads pushed batches of this schema version in one pass (exchange.push_body)."""
        return _checkers(self).reader

    @property
    def integer_key(self) -> bool:
        return self.schema.fields[self.spec.primary_key][0] is FieldType.INTEGER

    def key_out(self, key: str) -> str | int:
        """Keys are stored as text; give integer keys back as integers."""
        return int(key) if self.integer_key else key

    def public(self) -> Resource:
        return Resource(
            **self.spec.model_dump(),
            provider=self.provider,
            schema_version=self.schema_version,
            created_at=self.created_at,
            catalog_updated_at=self.catalog_updated_at,
        )


@dataclass(frozen=True)
class _Checkers:
    schema: RowSchema
    reader: BatchReader


_checkers_of: dict[tuple[str, dt.datetime, int], _Checkers] = {}


def _checkers(stored: StoredResource) -> _Checkers:
    # Built once per schema version. Keyed by (code, created_at, version): a new schema version
    # gets new checkers, and two databases served by one process (tests do this) never share
    # them. Versions are few, so the cache is bounded by the catalog's size.
    identity = (stored.code, stored.created_at, stored.schema_version)
    checkers = _checkers_of.get(identity)
    if checkers is None:
        schema = stored.spec.row_schema()
        checkers = _checkers_of[identity] = _Checkers(schema, BatchReader(schema))
    return checkers


def _from_row(row: tuple[Any, ...]) -> StoredResource:
    return StoredResource(
        id=row[0],
        code=row[1],
        provider=row[2],
        spec=ResourceSpec.model_validate(row[3]),
        schema_version=row[4],
        last_seq=row[5],
        created_at=row[6],
        catalog_updated_at=row[7],
        last_change_at=row[8],
    )


async def load(conn: psycopg.AsyncConnection[Any], code: str, *, for_update: bool = False) -> StoredResource:
    # NO KEY UPDATE: it orders the writers of a resource (pushes, catalog changes) without
    # waiting for, or blocking, rows that merely reference the resource (a push's change_batch
    # row is inserted before its writer takes this lock).
    lock = " FOR NO KEY UPDATE" if for_update else ""
    cur = await conn.execute(f"SELECT {_COLUMNS} FROM resource WHERE code = %s{lock}", (code,))  # noqa: S608
    row = await cur.fetchone()
    if row is None:
        raise not_found(f"resource {code!r}")
    return _from_row(row)


async def lock(conn: psycopg.AsyncConnection[Any], resource_id: int) -> None:
    """Take the resource's writer lock (see load); it is held until the transaction ends. No
    result is read, so in pipeline mode the statement goes out with the next one."""
    await conn.execute("SELECT FROM resource WHERE id = %s FOR NO KEY UPDATE", (resource_id,))


async def load_all(conn: psycopg.AsyncConnection[Any], provider: str | None = None) -> list[StoredResource]:
    where, params = ("WHERE provider = %s", (provider,)) if provider else ("", ())
    cur = await conn.execute(f"SELECT {_COLUMNS} FROM resource {where} ORDER BY code", params)  # noqa: S608
    return [_from_row(row) for row in await cur.fetchall()]
