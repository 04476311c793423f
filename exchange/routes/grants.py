"""Who may use what: subscriptions to unconditional resources, share requests for
conditional ones (reply within N working days, refusal with a reason, escalation to the
competent authority), and the grants they produce."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

import psycopg
from fastapi import APIRouter
from psycopg.rows import dict_row

from exchange import audit, resources
from exchange.deps import Calendar, Pool
from exchange.errors import ApiError, conflict, forbidden, not_found
from exchange.identity import Admin, Anyone, Department, Principal
from exchange.strict_json import StrictJsonRoute
from exchange.transitions import NOW, step
from gdx.pki import Role
from gdx.protocol import (
    Approve,
    Decision,
    Escalate,
    Grant,
    Refuse,
    RequestStatus,
    ShareRequest,
    ShareRequestIn,
    ShareType,
    Subscribe,
)
from gdx.workdays import today

router = APIRouter(tags=["grants"], route_class=StrictJsonRoute)

_REQUEST_SELECT = """
    SELECT q.id, r.code AS resource, q.consumer, r.provider, q.purpose, q.fields, q.status, q.requested_at,
           q.due_date, q.due_date_estimated, q.replied_at, q.reply_reason, q.approved_fields,
           q.escalation_reason, q.decision, q.decision_reason, q.decided_by
    FROM share_request q JOIN resource r ON r.id = q.resource_id
"""
_GRANT_SELECT = """
    SELECT g.id, r.code AS resource, g.consumer, g.purpose, g.fields, g.request_id, g.granted_at
    FROM grants g JOIN resource r ON r.id = g.resource_id
"""


def _unknown_fields(stored: resources.StoredResource, fields: list[str] | None) -> None:
    if fields is None:
        return
    known = {f.name for f in stored.spec.fields}
    unknown = [f for f in fields if f not in known]
    if unknown:
        raise ApiError(422, "unknown_fields", f"resource {stored.code!r} has no field(s) {', '.join(unknown)}")
    if not fields:
        raise ApiError(422, "no_fields", "an empty field list grants nothing; omit it to mean all fields")


async def _grant(
    conn: psycopg.AsyncConnection[Any],
    resource_id: int,
    consumer: str,
    purpose: str,
    fields: list[str] | None,
    request_id: int | None,
) -> Grant:
    cur = await conn.execute(
        """
        INSERT INTO grants (resource_id, consumer, purpose, fields, request_id) VALUES (%s, %s, %s, %s, %s)
        ON CONFLICT (resource_id, consumer, purpose)
            DO UPDATE SET fields = EXCLUDED.fields, request_id = EXCLUDED.request_id, granted_at = now()
        RETURNING id
        """,
        (resource_id, consumer, purpose, fields, request_id),
    )
    row = await cur.fetchone()
    assert row is not None
    return await _load_grant(conn, row[0])


async def _load_grant(conn: psycopg.AsyncConnection[Any], grant_id: int) -> Grant:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_GRANT_SELECT + " WHERE g.id = %s", (grant_id,))
        row = await cur.fetchone()
    assert row is not None
    return Grant.model_validate(row)


async def _load_request(conn: psycopg.AsyncConnection[Any], request_id: int, *, lock: bool = False) -> ShareRequest:
    suffix = " FOR UPDATE OF q" if lock else ""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_REQUEST_SELECT + " WHERE q.id = %s" + suffix, (request_id,))
        row = await cur.fetchone()
    if row is None:
        raise not_found(f"share request {request_id}")
    return ShareRequest.model_validate(row)


async def _move(
    conn: psycopg.AsyncConnection[Any],
    who: Principal,
    action: str,
    found: ShareRequest,
    changes: dict[str, Any],
    scope: dict[str, Any],
) -> ShareRequest:
    return await step(
        conn, who, action, "request", changes, record_id=found.id, load=_load_request, resource=found.resource,
        purpose=found.purpose, scope=scope,
    )  # fmt: skip


def _visible(who: Principal, request: ShareRequest) -> bool:
    return who.role is not Role.DEPARTMENT or who.name in (request.consumer, request.provider)


@router.post(
    "/v1/resources/{code}/subscriptions",
    status_code=201,
    response_model=Grant,
    summary="Subscribe to an unconditionally shared resource (granted at once)",
)
async def subscribe(code: str, body: Subscribe, who: Department, pool: Pool) -> Grant:
    async with pool.connection() as conn, conn.transaction():
        stored = await resources.load(conn, code)
        if stored.provider == who.name:
            raise conflict("you provide this resource; you need no subscription to it")
        if stored.spec.share_type is ShareType.NOT_SHARED:
            raise forbidden(f"resource {code!r} is not shared: {stored.spec.legal_basis}")
        if stored.spec.share_type is ShareType.CONDITIONAL:
            raise conflict(f"resource {code!r} is shared on conditions; file a request: POST /v1/requests")
        grant = await _grant(conn, stored.id, who.name, body.purpose, None, None)
        await audit.record(conn, who, "grant.subscribe", resource=code, purpose=body.purpose)
    return grant


@router.post("/v1/requests", status_code=201, response_model=ShareRequest, summary="Request a conditional resource")
async def request_access(body: ShareRequestIn, who: Department, pool: Pool, calendar: Calendar) -> ShareRequest:
    async with pool.connection() as conn, conn.transaction():
        stored = await resources.load(conn, body.resource)
        if stored.provider == who.name:
            raise conflict("you provide this resource; you cannot request it")
        if stored.spec.share_type is ShareType.NOT_SHARED:
            raise forbidden(f"resource {body.resource!r} is not shared: {stored.spec.legal_basis}")
        if stored.spec.share_type is ShareType.UNCONDITIONAL:
            raise conflict(f"resource {body.resource!r} is shared unconditionally; subscribe instead")
        _unknown_fields(stored, body.fields)
        cur = await conn.execute("SELECT reply_working_days FROM department WHERE id = %s", (stored.provider,))
        days_row = await cur.fetchone()
        assert days_row is not None
        deadline = calendar.add_working_days(today(), days_row[0])
        filed = {
            "resource_id": stored.id, "consumer": who.name, "purpose": body.purpose, "fields": body.fields,
            "due_date": deadline.due, "due_date_estimated": deadline.estimated,
        }  # fmt: skip
        return await step(
            conn, who, "request.file", "request", filed, load=_load_request, resource=body.resource,
            purpose=body.purpose, scope={"fields": body.fields, "due_date": deadline.due.isoformat()},
        )  # fmt: skip


@router.get("/v1/requests", response_model=list[ShareRequest], summary="Share requests you may see")
async def list_requests(
    who: Anyone,
    pool: Pool,
    status: RequestStatus | None = None,
    side: Literal["consumer", "provider", "any"] = "any",
) -> list[ShareRequest]:
    where, params = _scope_filter(who, side)
    if status is not None:
        where.append("q.status = %s")
        params.append(status.value)
    return await _query_requests(pool, where, params)


@router.get(
    "/v1/requests/overdue",
    response_model=list[ShareRequest],
    summary="Requests still unanswered after their reply deadline",
)
async def overdue(who: Anyone, pool: Pool, as_of: dt.date | None = None) -> list[ShareRequest]:
    where, params = _scope_filter(who, "any")
    where.append("q.status = 'pending' AND q.due_date < %s")
    params.append(as_of or today())
    return await _query_requests(pool, where, params)


def _scope_filter(who: Principal, side: str) -> tuple[list[str], list[Any]]:
    if who.role is not Role.DEPARTMENT:
        return [], []
    if side == "consumer":
        return ["q.consumer = %s"], [who.name]
    if side == "provider":
        return ["r.provider = %s"], [who.name]
    return ["(q.consumer = %s OR r.provider = %s)"], [who.name, who.name]


async def _query_requests(pool: Pool, where: list[str], params: list[Any]) -> list[ShareRequest]:
    clause = (" WHERE " + " AND ".join(where)) if where else ""
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_REQUEST_SELECT + clause + " ORDER BY q.id", params)
        return [ShareRequest.model_validate(row) for row in await cur.fetchall()]


@router.get("/v1/requests/{request_id}", response_model=ShareRequest, summary="One share request")
async def get_request(request_id: int, who: Anyone, pool: Pool) -> ShareRequest:
    async with pool.connection() as conn:
        found = await _load_request(conn, request_id)
    if not _visible(who, found):
        raise not_found(f"share request {request_id}")
    return found


@router.post("/v1/requests/{request_id}/approve", response_model=ShareRequest, summary="Approve a request")
async def approve(request_id: int, body: Approve, who: Department, pool: Pool) -> ShareRequest:
    async with pool.connection() as conn, conn.transaction():
        found = await _pending_for_provider(conn, request_id, who)
        stored = await resources.load(conn, found.resource)
        _unknown_fields(stored, body.fields)
        fields = body.fields if body.fields is not None else found.fields
        if found.fields is not None and body.fields is not None:
            extra = sorted(set(body.fields) - set(found.fields))
            if extra:
                raise ApiError(422, "fields_not_requested", f"field(s) {', '.join(extra)} were not requested")
        await _grant(conn, stored.id, found.consumer, found.purpose, fields, request_id)
        return await _move(
            conn, who, "request.approve", found,
            {"status": "approved", "replied_at": NOW, "approved_fields": fields},
            {"consumer": found.consumer, "fields": fields},
        )  # fmt: skip


@router.post("/v1/requests/{request_id}/refuse", response_model=ShareRequest, summary="Refuse a request, with a reason")
async def refuse(request_id: int, body: Refuse, who: Department, pool: Pool) -> ShareRequest:
    async with pool.connection() as conn, conn.transaction():
        found = await _pending_for_provider(conn, request_id, who)
        return await _move(
            conn, who, "request.refuse", found,
            {"status": "refused", "replied_at": NOW, "reply_reason": body.reason},
            {"consumer": found.consumer, "reason": body.reason},
        )  # fmt: skip


async def _pending_for_provider(conn: psycopg.AsyncConnection[Any], request_id: int, who: Principal) -> ShareRequest:
    found = await _load_request(conn, request_id, lock=True)
    if found.provider != who.name:
        if found.consumer == who.name:
            raise forbidden("only the providing department answers a request")
        raise not_found(f"share request {request_id}")
    if found.status is not RequestStatus.PENDING:
        raise conflict(f"request {request_id} was already answered ({found.status.value})")
    return found


@router.post(
    "/v1/requests/{request_id}/escalate",
    response_model=ShareRequest,
    summary="Take a refused or overdue request to the competent authority",
)
async def escalate(request_id: int, body: Escalate, who: Department, pool: Pool) -> ShareRequest:
    async with pool.connection() as conn, conn.transaction():
        found = await _load_request(conn, request_id, lock=True)
        if found.consumer != who.name:
            raise not_found(f"share request {request_id}")
        overdue_now = found.status is RequestStatus.PENDING and found.due_date < today()
        if found.status is not RequestStatus.REFUSED and not overdue_now:
            raise conflict(
                f"only a refused request, or one unanswered after its due date {found.due_date}, can be escalated"
            )
        return await _move(
            conn, who, "request.escalate", found,
            {"status": "escalated", "escalation_reason": body.reason, "escalated_at": NOW},
            {"reason": body.reason},
        )  # fmt: skip


@router.post(
    "/v1/requests/{request_id}/decision",
    response_model=ShareRequest,
    summary="Record the competent authority's coordination decision (administrators)",
)
async def decide(request_id: int, body: Decision, who: Admin, pool: Pool) -> ShareRequest:
    async with pool.connection() as conn, conn.transaction():
        found = await _load_request(conn, request_id, lock=True)
        if found.status is RequestStatus.DECIDED:
            raise conflict(f"request {request_id} already has a decision ({found.decision})")
        stored = await resources.load(conn, found.resource)
        _unknown_fields(stored, body.fields)
        fields = body.fields if body.fields is not None else found.fields
        approved = body.outcome == "approve"
        if approved:
            await _grant(conn, stored.id, found.consumer, found.purpose, fields, request_id)
        return await _move(
            conn, who, "request.decision", found,
            {
                "status": "decided", "decision": body.outcome, "decision_reason": body.reason, "decided_by": who.name,
                "decided_at": NOW, "approved_fields": fields if approved else None,
            },
            {"outcome": body.outcome, "reason": body.reason, "fields": fields},
        )  # fmt: skip


@router.get("/v1/grants", response_model=list[Grant], summary="Grants you hold (or, as provider, have given)")
async def list_grants(who: Anyone, pool: Pool, side: Literal["consumer", "provider"] = "consumer") -> list[Grant]:
    where, params = "", []
    if who.role is Role.DEPARTMENT:
        where = "WHERE g.consumer = %s" if side == "consumer" else "WHERE r.provider = %s"
        params = [who.name]
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_GRANT_SELECT + where + " ORDER BY g.id", params)
        return [Grant.model_validate(row) for row in await cur.fetchall()]
