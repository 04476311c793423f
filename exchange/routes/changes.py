"""The change log's API: providers push batches of changes; consumers read them after a cursor.
The SQL is in exchange/change_log.py."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request, Response

from exchange import access, audit, change_log, files, metrics, push_body, resources
from exchange.deps import Pool, refused
from exchange.errors import ApiError, forbidden, not_found
from exchange.identity import Anyone, Department
from exchange.strict_json import StrictJsonRoute
from gdx.protocol import (
    MAX_PAGE_CHANGES,
    MAX_SEQ,
    BatchReceipt,
    ChangeBatch,
    ChangePage,
    Purpose,
    ShareMethod,
)

router = APIRouter(prefix="/v1/resources/{code}/changes", tags=["change log"], route_class=StrictJsonRoute)


def _check_provider(stored: resources.StoredResource, who: Department) -> None:
    if stored.provider != who.name:
        raise forbidden(f"resource {stored.code!r} is provided by {stored.provider}; you cannot push to it")


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
        newest = change_log.newest_per_key(batch.changes)
        # In pipeline mode, statements whose results are not needed go out with the next one
        # that is: three round trips (claim; stage, lock and apply; audit and commit). The lock
        # is taken in the second and held through the third; every wait for a reply meanwhile
        # is a wait for every other batch of the resource.
        async with pool.connection() as conn, conn.pipeline(), conn.transaction():
            # The batch id is claimed first: a batch sent twice is answered before any work.
            if not await change_log.claim(conn, batch, checked.id):
                metrics.BATCHES.labels("duplicate").inc()
                return await change_log.existing_receipt(conn, batch, code)
            if checked.spec.file_field is not None:
                await files.check_pushed(conn, checked, batch)
            await change_log.stage(conn, newest)
            await resources.lock(conn, checked.id)
            numbered = await change_log.apply(conn, checked, batch, newest)
            if numbered is None:
                # The schema changed in between: check again against the one now in force.
                stored = await resources.load(conn, code)
                _check_provider(stored, who)
                await push_body.check_rows(stored.schema, await push_body.read(body, stored.reader))
                numbered = await change_log.apply(conn, stored, batch, newest)
                assert numbered is not None, "the resource is locked: its schema cannot change again"
            applied, first = numbered
            if batch.heartbeat is not None:
                await change_log.append_heartbeat(conn, checked.id, batch.heartbeat)
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
        rows = await change_log.read_page(conn, stored.id, after=after, limit=limit + 1, allowed=allowed, latest=latest)
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
