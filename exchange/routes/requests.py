"""Share requests and their coordination (ZJG Art. 20, Ningxia Art. 11, Hebei Art. 13, Wushen
Art. 21): a request for a conditional resource is answered by its provider within the reply
deadline; a request for a not-shared resource opens a negotiation, in which the provider may
grant an exception with its legal basis; either party takes a refusal, a failed negotiation or
an unanswered request to the coordinating authority (the administrator role), whose decision is
final. docs/exchange.md, "Requests and coordination", has the rules and their timers."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from fastapi import APIRouter

from exchange import grants, resources, share_requests
from exchange.deps import Calendar, Pool
from exchange.errors import ApiError, conflict, forbidden, not_found
from exchange.identity import Admin, Anyone, Department, Principal
from exchange.share_requests import Conn, Timers
from exchange.strict_json import StrictJsonRoute
from exchange.transitions import NOW, step
from gdx.pki import Role
from gdx.protocol import (
    Approve,
    Decision,
    Escalate,
    Explanation,
    GrantStatus,
    GrantTerms,
    Refuse,
    RequestKind,
    RequestStatus,
    ShareRequest,
    ShareRequestIn,
    ShareType,
)
from gdx.workdays import today

router = APIRouter(prefix="/v1/requests", tags=["requests"], route_class=StrictJsonRoute)

ANSWERABLE = (RequestStatus.PENDING, RequestStatus.NEGOTIATING)


def unknown_fields(stored: resources.StoredResource, fields: list[str] | None) -> None:
    if fields is None:
        return
    known = {f.name for f in stored.spec.fields}
    unknown = [f for f in fields if f not in known]
    if unknown:
        raise ApiError(422, "unknown_fields", f"resource {stored.code!r} has no field(s) {', '.join(unknown)}")
    if not fields:
        raise ApiError(422, "no_fields", "an empty field list grants nothing; omit it to mean all fields")


async def file(
    conn: Conn,
    who: Principal,
    calendar: Calendar,
    stored: resources.StoredResource,
    purpose: str,
    fields: list[str] | None,
    kind: RequestKind,
    *,
    grant_id: int | None = None,
    reason: str | None = None,
) -> ShareRequest:
    """Open a request with the deadlines of the provider's jurisdiction, audited as request.file."""
    timers = await Timers.of(conn, stored.provider)
    start = today()
    due, estimated = timers.reply_due(calendar, start)
    values: dict[str, Any] = {
        "resource_id": stored.id, "consumer": who.name, "purpose": purpose, "fields": fields, "kind": kind.value,
        "grant_id": grant_id, "due_date": due, "due_date_estimated": estimated,
    }  # fmt: skip
    if kind is RequestKind.EXCEPTION:
        # No reply deadline: the parties negotiate, within the window where one is set.
        values.update(status="negotiating", due_date=None, due_date_estimated=False,
                      negotiation_due=timers.negotiation_due(calendar, start))  # fmt: skip
    return await step(
        conn, who, "request.file", "request", values, load=share_requests.load, resource=stored.code,
        purpose=purpose, scope={"kind": kind.value, "fields": fields, "grant": grant_id, "reason": reason,
                                "due_date": due.isoformat() if due else None},
    )  # fmt: skip


@router.post("", status_code=201, response_model=ShareRequest, summary="Request a conditional or not-shared resource")
async def request_access(body: ShareRequestIn, who: Department, pool: Pool, calendar: Calendar) -> ShareRequest:
    async with pool.connection() as conn, conn.transaction():
        stored = await resources.load(conn, body.resource)
        if stored.provider == who.name:
            raise conflict("you provide this resource; you cannot request it")
        if stored.spec.share_type is ShareType.UNCONDITIONAL:
            raise conflict(f"resource {body.resource!r} is shared unconditionally; subscribe instead")
        unknown_fields(stored, body.fields)
        cur = await conn.execute(
            "SELECT id, status, expires_on FROM grants WHERE resource_id = %s AND consumer = %s AND purpose = %s",
            (stored.id, who.name, body.purpose),
        )
        held = await cur.fetchone()
        if held and held[1] == "active" and (held[2] is None or held[2] >= today()):
            raise conflict(
                f"you hold grant {held[0]} on {body.resource!r} for this purpose; to widen it, "
                f"POST /v1/grants/{held[0]}/amend"
            )
        kind = RequestKind.EXCEPTION if stored.spec.share_type is ShareType.NOT_SHARED else RequestKind.ACCESS
        return await file(conn, who, calendar, stored, body.purpose, body.fields, kind)


@router.get("", response_model=list[ShareRequest], summary="Share requests you may see")
async def list_requests(
    who: Anyone,
    pool: Pool,
    status: RequestStatus | None = None,
    side: Literal["consumer", "provider", "any"] = "any",
) -> list[ShareRequest]:
    where, params = _scope_filter(who, side)
    if status is not None:
        where.append("q.status = %(status)s")
        params["status"] = status.value
    async with pool.connection() as conn:
        return await share_requests.query(conn, where, params)


@router.get(
    "/overdue",
    response_model=list[ShareRequest],
    summary="Requests past a deadline: reply, negotiation, explanation or decision (field `overdue` says which)",
)
async def overdue(who: Anyone, pool: Pool, as_of: dt.date | None = None) -> list[ShareRequest]:
    where, params = _scope_filter(who, "any")
    async with pool.connection() as conn:
        return await share_requests.query(conn, [*where, share_requests.OVERDUE_SQL], params, as_of=as_of)


def _scope_filter(who: Principal, side: str) -> tuple[list[str], dict[str, Any]]:
    if who.role is not Role.DEPARTMENT:
        return [], {}
    clause = {"consumer": "q.consumer = %(me)s", "provider": "r.provider = %(me)s"}.get(
        side, "(q.consumer = %(me)s OR r.provider = %(me)s)"
    )
    return [clause], {"me": who.name}


@router.get("/{request_id}", response_model=ShareRequest, summary="One share request")
async def get_request(request_id: int, who: Anyone, pool: Pool) -> ShareRequest:
    async with pool.connection() as conn:
        found = await share_requests.load(conn, request_id)
    if who.role is Role.DEPARTMENT and who.name not in (found.consumer, found.provider):
        raise not_found(f"share request {request_id}")
    return found


async def _move(conn: Conn, who: Principal, action: str, found: ShareRequest, changes: dict[str, Any],
                scope: dict[str, Any]) -> ShareRequest:  # fmt: skip
    return await step(
        conn, who, action, "request", changes, record_id=found.id, load=share_requests.load,
        resource=found.resource, purpose=found.purpose, scope=scope,
    )  # fmt: skip


async def _grant_for(
    conn: Conn, found: ShareRequest, fields: list[str] | None, terms: GrantTerms, terms_set: bool
) -> None:
    """Give the grant a request asked for; an amendment widens the grant it names, which must still live."""
    if terms.expires_on is not None and terms.expires_on < today():
        raise ApiError(
            422, "expired_terms", f"expires_on {terms.expires_on} has passed: a grant's last day is today or later"
        )
    stored = await resources.load(conn, found.resource)
    if found.kind is RequestKind.AMENDMENT:
        assert found.grant_id is not None
        held = await grants.load(conn, found.grant_id, lock=True)
        if held is None or held.status is not GrantStatus.ACTIVE:
            why = held.ended_because() if held else "it no longer exists"
            raise conflict(f"the amendment widens grant {found.grant_id}, which has ended: {why}")
        if not terms_set:
            terms = GrantTerms(expires_on=held.expires_on, on_revoke=held.on_revoke)
    await grants.give(conn, stored.id, found.consumer, found.purpose, fields, found.id, terms)


@router.post("/{request_id}/approve", response_model=ShareRequest, summary="Approve a request (the provider)")
async def approve(request_id: int, body: Approve, who: Department, pool: Pool) -> ShareRequest:
    async with pool.connection() as conn, conn.transaction():
        found = await _answerable_by_provider(conn, request_id, who)
        unknown_fields(await resources.load(conn, found.resource), body.fields)
        if found.kind is RequestKind.EXCEPTION and body.legal_basis is None:
            raise ApiError(
                422, "legal_basis_required",
                f"{found.resource!r} is not shared: an exception states its legal or policy basis (legal_basis)",
            )  # fmt: skip
        fields = body.fields if body.fields is not None else found.fields
        if found.fields is not None and body.fields is not None:
            extra = sorted(set(body.fields) - set(found.fields))
            if extra:
                raise ApiError(422, "fields_not_requested", f"field(s) {', '.join(extra)} were not requested")
        terms = GrantTerms(expires_on=body.expires_on, on_revoke=body.on_revoke)
        await _grant_for(conn, found, fields, terms, bool({"expires_on", "on_revoke"} & body.model_fields_set))
        return await _move(
            conn, who, "request.approve", found,
            {"status": "approved", "replied_at": NOW, "approved_fields": fields, "legal_basis": body.legal_basis},
            {"consumer": found.consumer, "fields": fields, "kind": found.kind.value, "legal_basis": body.legal_basis,
             "expires_on": body.expires_on.isoformat() if body.expires_on else None},
        )  # fmt: skip


@router.post("/{request_id}/refuse", response_model=ShareRequest, summary="Refuse a request, with a reason")
async def refuse(request_id: int, body: Refuse, who: Department, pool: Pool) -> ShareRequest:
    async with pool.connection() as conn, conn.transaction():
        found = await _answerable_by_provider(conn, request_id, who)
        return await _move(
            conn, who, "request.refuse", found,
            {"status": "refused", "replied_at": NOW, "reply_reason": body.reason},
            {"consumer": found.consumer, "reason": body.reason},
        )  # fmt: skip


async def _answerable_by_provider(conn: Conn, request_id: int, who: Principal) -> ShareRequest:
    found = await share_requests.load(conn, request_id, lock=True)
    if found.provider != who.name:
        if found.consumer == who.name:
            raise forbidden("only the providing department answers a request")
        raise not_found(f"share request {request_id}")
    if found.status not in ANSWERABLE:
        raise conflict(f"request {request_id} was already answered ({found.status.value})")
    return found


@router.post(
    "/{request_id}/escalate",
    response_model=ShareRequest,
    summary="Take a request to the coordinating authority (either party)",
)
async def escalate(request_id: int, body: Escalate, who: Department, pool: Pool) -> ShareRequest:
    """The consumer or the provider: a refusal, a negotiation that did not agree, or a request
    unanswered after its reply deadline (or with none: Hebei) goes to the authority."""
    async with pool.connection() as conn, conn.transaction():
        found = await share_requests.load(conn, request_id, lock=True)
        if who.name not in (found.consumer, found.provider):
            raise not_found(f"share request {request_id}")
        status = found.status
        unanswered = status is RequestStatus.PENDING and (found.due_date is None or found.due_date < today())
        if status not in (RequestStatus.REFUSED, RequestStatus.NEGOTIATING) and not unanswered:
            raise conflict(
                f"request {request_id} is {status.value}: only a refused request, a negotiation, or a request "
                f"unanswered after its due date ({found.due_date}) can be escalated"
            )
        explanation_due, decision_due = (await Timers.of(conn, found.provider)).escalation_dues(today())
        return await _move(
            conn, who, "request.escalate", found,
            {"status": "escalated", "escalation_reason": body.reason, "escalated_at": NOW, "escalated_by": who.name,
             "explanation_due": explanation_due, "decision_due": decision_due},
            {"reason": body.reason, "explanation_due": explanation_due and explanation_due.isoformat(),
             "decision_due": decision_due and decision_due.isoformat()},
        )  # fmt: skip


@router.post(
    "/{request_id}/explanation",
    response_model=ShareRequest,
    summary="The provider's written explanation to the authority (Hebei Art. 13)",
)
async def explain(request_id: int, body: Explanation, who: Department, pool: Pool) -> ShareRequest:
    async with pool.connection() as conn, conn.transaction():
        found = await share_requests.load(conn, request_id, lock=True)
        if found.provider != who.name:
            raise (
                not_found(f"share request {request_id}")
                if who.name != found.consumer
                else forbidden("the providing department explains its position to the authority")
            )
        if found.status is not RequestStatus.ESCALATED or found.explanation is not None:
            raise conflict(f"request {request_id} awaits no explanation ({found.status.value})")
        decision_due = (await Timers.of(conn, found.provider)).decision_due(today())
        return await _move(
            conn, who, "request.explain", found,
            {"explanation": body.text, "explained_at": NOW, "decision_due": decision_due},
            {"decision_due": decision_due and decision_due.isoformat()},
        )  # fmt: skip


@router.post(
    "/{request_id}/decision",
    response_model=ShareRequest,
    summary="Record the coordinating authority's final decision on an escalated request (administrators)",
)
async def decide(request_id: int, body: Decision, who: Admin, pool: Pool) -> ShareRequest:
    async with pool.connection() as conn, conn.transaction():
        found = await share_requests.load(conn, request_id, lock=True)
        if found.status is not RequestStatus.ESCALATED:
            hint = {
                RequestStatus.DECIDED: f"it already has a decision ({found.decision}), which is final",
                RequestStatus.APPROVED: "to withdraw what was approved, revoke the grant: POST /v1/grants/ID/revoke",
            }.get(found.status, "the authority decides only what a party escalated")
            raise conflict(f"request {request_id} is {found.status.value}: {hint}")
        unknown_fields(await resources.load(conn, found.resource), body.fields)
        fields = body.fields if body.fields is not None else found.fields
        approved = body.outcome == "approve"
        if approved:
            terms = GrantTerms(expires_on=body.expires_on, on_revoke=body.on_revoke)
            await _grant_for(conn, found, fields, terms, bool({"expires_on", "on_revoke"} & body.model_fields_set))
        return await _move(
            conn, who, "request.decision", found,
            {
                "status": "decided", "decision": body.outcome, "decision_reason": body.reason, "decided_by": who.name,
                "decided_at": NOW, "approved_fields": fields if approved else None,
            },
            {"outcome": body.outcome, "reason": body.reason, "fields": fields},
        )  # fmt: skip
