"""Templates and file uploads (模板导入, 文件上传): the fallback channel of a department without a
front-end node, or whose data is not in a database. The applying is in exchange/uploads.py, the
reading and writing of spreadsheets in exchange/spreadsheets/."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from exchange import resources, uploads
from exchange.deps import Pool, refused
from exchange.errors import ApiError, forbidden, not_found
from exchange.identity import Anyone, Department, Principal
from exchange.spreadsheets import template, write
from exchange.spreadsheets.read import Spool
from exchange.spreadsheets.rows import Problem
from exchange.strict_json import StrictJsonRoute
from gdx.pki import Role
from gdx.protocol import DataFormat, Upload, UploadMode

router = APIRouter(tags=["files"], route_class=StrictJsonRoute)
UPLOAD_PATH = r"^/v1/resources/[^/]+/uploads$"
DEFAULT_ZONE = "Asia/Shanghai"

ModeQuery = Annotated[
    UploadMode,
    Query(description="changes: upserts, and deletions marked in the _delete column; replace: the file is the "
          "whole resource, and keys it leaves out are deleted"),
]  # fmt: skip


def _stored_file(path: Path, filename: str, media_type: str) -> FileResponse:
    return FileResponse(path, media_type=media_type, filename=filename,
                        background=BackgroundTask(path.unlink, missing_ok=True))  # fmt: skip


@router.get("/v1/resources/{code}/template.xlsx", summary="The resource's template as a workbook",
            response_class=FileResponse, responses={200: {"content": {write.XLSX_MEDIA_TYPE: {}}}})  # fmt: skip
async def template_xlsx(code: str, who: Anyone, pool: Pool, mode: ModeQuery = UploadMode.CHANGES) -> FileResponse:
    async with pool.connection() as conn:
        stored = await resources.load(conn, code)
    path = Path(tempfile.mkstemp(prefix="gdx-template-", suffix=".xlsx")[1])
    await asyncio.to_thread(write.write_template, stored.spec, path, deletions=mode is UploadMode.CHANGES)
    return _stored_file(path, f"{code}.xlsx", write.XLSX_MEDIA_TYPE)


@router.get("/v1/resources/{code}/template.csv", summary="The resource's template as CSV (UTF-8)",
            responses={200: {"content": {"text/csv": {}}}})  # fmt: skip
async def template_csv(code: str, who: Anyone, pool: Pool, mode: ModeQuery = UploadMode.CHANGES) -> Response:
    async with pool.connection() as conn:
        stored = await resources.load(conn, code)
    body = template.as_csv(stored.spec, deletions=mode is UploadMode.CHANGES)
    disposition = f'attachment; filename="{code}.csv"'
    return Response(body, media_type="text/csv; charset=utf-8", headers={"content-disposition": disposition})


@router.post(
    "/v1/resources/{code}/uploads",
    response_model=Upload,
    status_code=201,
    summary="Upload a filled template (XLSX or CSV, UTF-8 or GB18030): applied whole, or refused whole",
    openapi_extra={"requestBody": {"required": True, "content": {
        "text/csv": {"schema": {"type": "string", "format": "binary"}},
        write.XLSX_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}}}},
)  # fmt: skip
async def upload(
    code: str,
    request: Request,
    who: Department,
    pool: Pool,
    mode: ModeQuery = UploadMode.CHANGES,
    timezone: Annotated[str, Query(description="The zone of timestamps written without an offset")] = DEFAULT_ZONE,
) -> Upload:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    scope: dict[str, Any] = {"mode": mode.value}
    try:
        if media_type.startswith("multipart/"):
            raise ApiError(415, "unsupported_media_type",
                           "send the file itself as the body (curl --data-binary @FILE), not as a form")  # fmt: skip
        try:
            zone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ApiError(
                422, "invalid_timezone", f"no time zone {timezone!r}; name one such as Asia/Shanghai"
            ) from None
        async with pool.connection() as conn:
            stored = await resources.load(conn, code)
            cur = await conn.execute("SELECT heartbeat_received_at FROM resource WHERE id = %s", (stored.id,))
            heartbeat_at = (await cur.fetchone() or (None,))[0]
        if stored.provider != who.name:
            raise forbidden(f"resource {code!r} is provided by {stored.provider}; only it uploads its rows")
        if stored.spec.format is DataFormat.API:
            raise ApiError(422, "not_a_table", f"resource {code!r} is of format api: it holds no rows to upload")
        why_not = uploads.fed_by_node(stored, heartbeat_at)
        if why_not:
            raise ApiError(409, "published_by_node", why_not)
    except ApiError as error:
        raise await refused(pool, who, "upload", error, resource=code, scope=scope) from None
    spool = Spool(request.app.state.upload_dir)
    try:
        async for chunk in request.stream():
            spool.write(chunk)
        spool.finish()
        received = uploads.Received(stored, who, spool, mode, zone)
        return await _apply(pool, received, request.app.state.upload_limits)
    finally:
        spool.discard()


async def _apply(pool: Pool, received: uploads.Received, limits: uploads.Limits) -> Upload:
    code = received.stored.code
    scope = {"mode": received.mode.value, "sha256": received.spool.sha256, "bytes": received.spool.size}
    if received.spool.size == 0:
        error = ApiError(422, "invalid_file", "the body is empty: send the file (curl --data-binary @FILE)")
        raise await refused(pool, received.who, "upload", error, resource=code, scope=scope)
    async with pool.connection() as conn:
        try:
            applied, _ = await uploads.apply_file(conn, received, limits)
            return applied
        except uploads.Refused as refusal:
            tally = refusal.tally
            first = tally.problems[0]
            reason = (
                f"{tally.bad_rows:,} of {tally.rows:,} row(s) have problems, the first at row {first.row}, column "
                f"{first.column} ({first.field or 'no field'}): {first.problem}; nothing was applied"
            )
            kept = await uploads.record_refusal(conn, received, reason, tally)
            error = ApiError(422, "invalid_rows", f"{reason}. The report: GET /v1/uploads/{kept.id}/report.xlsx",
                             [p.as_dict() for p in tally.problems])  # fmt: skip
        except ApiError as exc:
            kept = await uploads.record_refusal(conn, received, exc.message)
            error = exc
    raise await refused(pool, received.who, "upload", error, resource=code, scope={**scope, "upload": kept.id})


async def _visible_upload(pool: Pool, who: Principal, upload_id: int) -> Upload:
    async with pool.connection() as conn:
        found = await uploads.find(conn, upload_id)
    if found is None or not (who.name == found.department or who.role in (Role.ADMIN, Role.AUDITOR)):
        raise not_found(f"upload {upload_id}")
    return found


@router.get("/v1/uploads/{upload_id}", response_model=Upload, summary="An upload: how it was applied or why refused")
async def read_upload(upload_id: int, who: Anyone, pool: Pool) -> Upload:
    return await _visible_upload(pool, who, upload_id)


@router.get("/v1/uploads/{upload_id}/report.xlsx", summary="A refused upload's problems, the bad cells marked",
            response_class=FileResponse, responses={200: {"content": {write.XLSX_MEDIA_TYPE: {}}}})  # fmt: skip
async def report(upload_id: int, who: Anyone, pool: Pool) -> FileResponse:
    found = await _visible_upload(pool, who, upload_id)
    async with pool.connection() as conn:
        kept = await uploads.report_of(conn, found.id)
    assert kept is not None
    problems, bad_rows, header = kept
    path = Path(tempfile.mkstemp(prefix="gdx-report-", suffix=".xlsx")[1])
    await asyncio.to_thread(write.write_report, path, header, [Problem(**p) for p in problems],
                            [(number, cells) for number, cells in bad_rows])  # fmt: skip
    return _stored_file(path, f"upload-{found.id}-report.xlsx", write.XLSX_MEDIA_TYPE)


@router.get("/v1/resources/{code}/uploads", response_model=list[Upload], summary="The resource's uploads, newest first")
async def list_uploads(
    code: str, who: Anyone, pool: Pool, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> list[Upload]:
    async with pool.connection() as conn:
        stored = await resources.load(conn, code)
        if not (who.name == stored.provider or who.role in (Role.ADMIN, Role.AUDITOR)):
            raise forbidden(f"the uploads of {code!r} are its provider's ({stored.provider})")
        return await uploads.recent(conn, stored.id, limit)
