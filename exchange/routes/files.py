"""Attachments (附件): the files of resources of format `file`, uploaded and read by their SHA-256.
The storing is in exchange/files.py."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import StreamingResponse

from exchange import access, audit, files, resources
from exchange.deps import Pool, refused
from exchange.errors import ApiError, forbidden, not_found
from exchange.identity import Anyone, Department, Principal
from exchange.strict_json import StrictJsonRoute
from gdx.protocol import SHA256_PATTERN, DataFormat, Purpose, StoredFile

router = APIRouter(prefix="/v1/resources/{code}/files", tags=["files"], route_class=StrictJsonRoute)
FILE_PATH = r"^/v1/resources/[^/]+/files/[0-9a-f]{64}$"
Digest = Annotated[str, Path(pattern=SHA256_PATTERN, description="The SHA-256 of the file's bytes, in hex")]


async def _file_resource(pool: Pool, code: str) -> resources.StoredResource:
    async with pool.connection() as conn:
        stored = await resources.load(conn, code)
    if stored.spec.format is not DataFormat.FILE:
        why = f"resource {code!r} is of format {stored.spec.format.value}: its records carry no files"
        raise ApiError(422, "not_a_file_resource", why)
    return stored


async def _linked(pool: Pool, stored: resources.StoredResource, sha256: str) -> StoredFile | None:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT b.bytes, b.media_type, f.uploaded_by, f.uploaded_at FROM resource_file f "
            "JOIN file_blob b USING (sha256) WHERE f.resource_id = %s AND f.sha256 = %s",
            (stored.id, sha256),
        )
        row = await cur.fetchone()
    if row is None:
        return None
    return StoredFile(resource=stored.code, sha256=sha256, bytes=row[0], media_type=row[1], uploaded_by=row[2],
                      uploaded_at=row[3], new=False)  # fmt: skip


@router.put(
    "/{sha256}",
    response_model=StoredFile,
    summary="Upload a file to a resource of format file, named by its SHA-256 (providers)",
    responses={200: {"description": "The resource held these bytes already"}, 201: {"description": "Stored"}},
    openapi_extra={"requestBody": {"required": True,
                                   "content": {"application/octet-stream": {"schema": {"type": "string",
                                                                                       "format": "binary"}}}}},
)  # fmt: skip
async def put_file(code: str, sha256: Digest, request: Request, response: Response, who: Department,
                   pool: Pool) -> StoredFile:  # fmt: skip
    scope: dict[str, Any] = {"sha256": sha256}
    try:
        stored = await _file_resource(pool, code)
        if stored.provider != who.name:
            raise forbidden(f"resource {code!r} is provided by {stored.provider}; only it uploads its files")
        async with pool.connection() as conn, conn.transaction():
            store: files.FileStore = request.app.state.file_store
            blob, new_bytes = await store.store(conn, sha256, request.stream(), stored.spec.file_types)
            cur = await conn.execute(
                "INSERT INTO resource_file (resource_id, sha256, uploaded_by) VALUES (%s, %s, %s) "
                "ON CONFLICT DO NOTHING RETURNING uploaded_at",
                (stored.id, sha256, who.name),
            )
            linked = await cur.fetchone()
            scope |= {"bytes": blob.bytes, "media_type": blob.media_type, "new": linked is not None,
                      "stored_before": not new_bytes}  # fmt: skip
            await audit.record(conn, who, "file_upload", resource=code, scope=scope)
    except ApiError as error:
        raise await refused(pool, who, "file_upload", error, resource=code, scope=scope) from None
    held = await _linked(pool, stored, sha256)
    assert held is not None
    response.status_code = 201 if linked is not None else 200
    return held.model_copy(update={"new": linked is not None})


async def _readable(pool: Pool, who: Principal, code: str, sha256: str, purpose: str | None, action: str) -> StoredFile:
    """The file, if the caller may read it: the provider, or a department granted the file field
    for this purpose. A refusal is audited."""
    try:
        stored = await _file_resource(pool, code)
    except ApiError as error:
        raise await refused(pool, who, action, error, resource=code, purpose=purpose) from None
    if not (who.is_department and who.name == stored.provider):
        if purpose is None:
            asked = ApiError(422, "purpose_required", "say what the file is for: ?purpose= (that of your grant)")
            raise await refused(pool, who, action, asked, resource=code)
        # Any way the resource is shared carries its files; the grant and its fields decide.
        fields = await access.granted_fields(pool, who, stored, purpose, stored.spec.share_methods[0], action)
        if fields is not None and stored.spec.file_field not in fields:
            narrow = forbidden(f"your grant on {code!r} does not include {stored.spec.file_field!r}, "
                              "the field that carries its files")  # fmt: skip
            raise await refused(pool, who, action, narrow, resource=code, purpose=purpose)
    held = await _linked(pool, stored, sha256)
    if held is None:
        raise not_found(f"file {sha256} of {code!r}")
    return held


def _headers(held: StoredFile) -> dict[str, str]:
    return {
        "content-length": str(held.bytes),
        "etag": f'"{held.sha256}"',
        "x-gdx-sha256": held.sha256,
        "cache-control": "private, max-age=31536000, immutable",  # its name is its content
    }


@router.head("/{sha256}", summary="Whether the resource holds a file, and its size and type")
async def head_file(code: str, sha256: Digest, who: Anyone, pool: Pool,
                    purpose: Annotated[Purpose | None, Query()] = None) -> Response:  # fmt: skip
    held = await _readable(pool, who, code, sha256, purpose, "file_check")
    async with pool.connection() as conn, conn.transaction():
        await audit.record(conn, who, "file_check", resource=code, purpose=purpose, scope={"sha256": sha256})
    return Response(status_code=200, media_type=held.media_type, headers=_headers(held))


@router.get(
    "/{sha256}",
    summary="Read a file of a resource of format file, streamed (the provider, or a consumer granted its file field)",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}, "description": "The file's bytes"}},
)
async def get_file(
    code: str,
    sha256: Digest,
    request: Request,
    who: Anyone,
    pool: Pool,
    purpose: Annotated[Purpose | None, Query(description="Must be the purpose of your grant (not for the provider)")]
    = None,
) -> Response:  # fmt: skip
    held = await _readable(pool, who, code, sha256, purpose, "file_download")
    async with pool.connection() as conn, conn.transaction():
        blob = await files.find(conn, sha256)
        await audit.record(conn, who, "file_download", resource=code, purpose=purpose,
                           scope={"sha256": sha256, "bytes": held.bytes})  # fmt: skip
    assert blob is not None
    headers = _headers(held) | {"content-disposition": f'attachment; filename="{code}-{sha256[:16]}"'}
    store: files.FileStore = request.app.state.file_store
    return StreamingResponse(store.chunks(pool, blob), media_type=held.media_type, headers=headers)
