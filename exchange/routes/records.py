"""Online lookup of one record by key (联机查询) and bulk download of a granted resource."""

from __future__ import annotations

import asyncio
import codecs
import csv
import io
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Query, Response
from fastapi.responses import FileResponse, StreamingResponse
from starlette.background import BackgroundTask

from exchange import access, audit, resources
from exchange.deps import Pool, refused
from exchange.errors import ApiError, not_found
from exchange.identity import Anyone
from exchange.spreadsheets.template import label
from exchange.spreadsheets.write import LAST_ROW, XLSX_MEDIA_TYPE, RowsWorkbook
from exchange.strict_json import StrictJsonRoute
from gdx.fields import RowError
from gdx.protocol import Purpose, Record, ShareMethod

router = APIRouter(prefix="/v1/resources/{code}/records", tags=["records"], route_class=StrictJsonRoute)
PurposeQuery = Annotated[Purpose, Query(description="Must be the purpose of your grant")]


@router.get("/{key}", response_model=Record, summary="Look up one record by its key (联机查询)")
async def lookup(code: str, key: str, who: Anyone, pool: Pool, purpose: PurposeQuery) -> Record:
    async with pool.connection() as conn:
        stored = await resources.load(conn, code)
    typed_key: str | int = key
    if stored.integer_key:
        try:
            typed_key = int(key)
        except ValueError:
            raise ApiError(422, "invalid_key", f"resource {code!r} has integer keys; {key!r} is not one") from None
    try:
        stored.schema.check_key(typed_key)
    except RowError as exc:
        raise ApiError(422, "invalid_key", str(exc)) from None
    fields = await access.granted_fields(pool, who, stored, purpose, ShareMethod.API, "lookup")
    async with pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            "SELECT c.row, c.seq, c.source_version FROM current_key k "
            "JOIN change c ON c.resource_id = k.resource_id AND c.seq = k.seq "
            "WHERE k.resource_id = %s AND k.key = %s AND NOT k.deleted",
            (stored.id, str(typed_key)),
        )
        found = await cur.fetchone()
        await audit.record(
            conn,
            who,
            "lookup",
            resource=code,
            purpose=purpose,
            scope={"key": key, "found": found is not None, "fields": fields},
        )
    if found is None:
        raise not_found(f"record {key!r} of {code!r}")
    row = access.project(found[0], fields, stored.spec.primary_key)
    assert row is not None
    return Record(resource=code, key=typed_key, row=row, seq=found[1], source_version=found[2])


@router.get(
    "",
    summary="Download every current record: newline-delimited JSON, CSV or a workbook (granted fields only)",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/x-ndjson": {}, "text/csv": {}, XLSX_MEDIA_TYPE: {}},
                     "description": "One record a line, or a row"}},
)  # fmt: skip
async def download(
    code: str,
    who: Anyone,
    pool: Pool,
    purpose: PurposeQuery,
    format: Annotated[
        Literal["ndjson", "csv", "xlsx"],
        Query(description="ndjson (the download method), or csv / xlsx for people (the file method where offered)"),
    ] = "ndjson",
    encoding: Annotated[
        Literal["utf-8", "gb18030"], Query(description="CSV's encoding: UTF-8 with a BOM, or GB18030 for old Excel")
    ] = "utf-8",
) -> Response:
    async with pool.connection() as conn:
        stored = await resources.load(conn, code)
    method = ShareMethod.DOWNLOAD
    if format != "ndjson" and ShareMethod.FILE in stored.spec.share_methods:
        method = ShareMethod.FILE
    fields = await access.granted_fields(pool, who, stored, purpose, method, "download")
    if format == "xlsx":
        async with pool.connection() as conn:
            cur = await conn.execute(
                "SELECT count(*) FROM current_key WHERE resource_id = %s AND NOT deleted", (stored.id,)
            )
            rows = (await cur.fetchone() or (0,))[0]
        if rows > LAST_ROW:
            message = f"{code!r} has {rows:,} rows, more than a worksheet holds ({LAST_ROW:,}): use format=csv"
            raise await refused(pool, who, "download", ApiError(413, "too_many_rows", message), resource=code,
                                purpose=purpose)  # fmt: skip
    async with pool.connection() as conn, conn.transaction():
        await audit.record(
            conn,
            who,
            "download",
            resource=code,
            purpose=purpose,
            scope={"fields": fields, "up_to_seq": stored.last_seq, "format": format},
        )
    key_field = stored.spec.primary_key
    columns = access.columns(stored, fields)

    async def pages() -> AsyncIterator[list[tuple[Any, ...]]]:
        async with pool.connection() as conn, conn.transaction(), conn.cursor(name="download") as cur:
            await cur.execute(
                "SELECT c.row FROM current_key k JOIN change c ON c.resource_id = k.resource_id AND c.seq = k.seq "
                "WHERE k.resource_id = %s AND NOT k.deleted AND k.seq <= %s ORDER BY k.key",
                (stored.id, stored.last_seq),
            )
            while rows := await cur.fetchmany(2000):
                yield rows

    if format == "xlsx":
        return await _workbook(code, stored, columns, pages())
    if format == "csv":
        disposition = {"content-disposition": f'attachment; filename="{code}.csv"'}
        body = _csv_lines(stored, columns, pages(), encoding)
        return StreamingResponse(body, media_type=f"text/csv; charset={encoding}", headers=disposition)

    async def lines() -> AsyncIterator[bytes]:
        async for rows in pages():
            yield b"".join(orjson.dumps(access.project(r[0], fields, key_field)) + b"\n" for r in rows)

    return StreamingResponse(lines(), media_type="application/x-ndjson")


def _cells(rows: list[tuple[Any, ...]], columns: list[str]) -> list[list[Any]]:
    return [[row[0].get(name) for name in columns] for row in rows]


async def _csv_lines(
    stored: resources.StoredResource, columns: list[str], pages: AsyncIterator[list[tuple[Any, ...]]], encoding: str
) -> AsyncIterator[bytes]:
    by_name = {f.name: f for f in stored.spec.fields}
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\r\n")
    writer.writerow([label(by_name[name]) for name in columns])
    yield (codecs.BOM_UTF8 if encoding == "utf-8" else b"") + text.getvalue().encode(encoding)
    async for rows in pages:
        text.seek(0)
        text.truncate()
        writer.writerows([["" if v is None else ("是" if v else "否") if isinstance(v, bool) else v for v in values]
                          for values in _cells(rows, columns)])  # fmt: skip
        yield text.getvalue().encode(encoding)


async def _workbook(
    code: str, stored: resources.StoredResource, columns: list[str], pages: AsyncIterator[list[tuple[Any, ...]]]
) -> FileResponse:
    path = Path(tempfile.mkstemp(prefix="gdx-download-", suffix=".xlsx")[1])
    try:
        book = await asyncio.to_thread(RowsWorkbook, path, stored.spec, columns)
        async for rows in pages:
            await asyncio.to_thread(book.add, _cells(rows, columns))
        await asyncio.to_thread(book.close)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return FileResponse(path, media_type=XLSX_MEDIA_TYPE, filename=f"{code}.xlsx",
                        background=BackgroundTask(path.unlink, missing_ok=True))  # fmt: skip
