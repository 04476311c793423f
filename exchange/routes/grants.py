"""Grants: subscriptions to unconditional resources, the grants held or given, and their life
(revocation, amendment, expiry; docs/exchange.md, "Grants"). Requests are in routes/requests.py."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from psycopg.rows import dict_row

from exchange import audit, grants, resources
from exchange.deps import Calendar, Pool
from exchange.errors import conflict, forbidden, not_found
from exchange.identity import Anyone, Department, Principal
from exchange.routes.requests import file, unknown_fields
from exchange.strict_json import StrictJsonRoute
from gdx.pki import Role
from gdx.protocol import (
    Amend,
    Grant,
    GrantStatus,
    RequestKind,
    Restore,
    Revoke,
    ShareRequest,
    ShareType,
    Subscribe,
)

router = APIRouter(tags=["grants"], route_class=StrictJsonRoute)


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
            raise forbidden(
                f"resource {code!r} is not shared: {stored.spec.legal_basis}; to ask for an exception, "
                "file a request (POST /v1/requests), which opens a negotiation with the provider"
            )
        if stored.spec.share_type is ShareType.CONDITIONAL:
            raise conflict(f"resource {code!r} is shared on conditions; file a request: POST /v1/requests")
        cur = await conn.execute(
            "SELECT id FROM grants WHERE resource_id = %s AND consumer = %s AND purpose = %s AND status = 'revoked'",
            (stored.id, who.name, body.purpose),
        )
        revoked = await cur.fetchone()
        if revoked:
            # A revocation is not undone by subscribing again: the provider or an administrator restores.
            held = await grants.load(conn, revoked[0])
            assert held is not None
            raise forbidden(
                f"{held.ended_because()}; only the provider or an administrator restores it "
                f"(POST /v1/grants/{held.id}/restore)"
            )
        grant = await grants.give(conn, stored.id, who.name, body.purpose, None, None)
        await audit.record(conn, who, "grant.subscribe", resource=code, purpose=body.purpose)
    return grant


@router.get("/v1/grants", response_model=list[Grant], summary="Grants you hold (or, as provider, have given)")
async def list_grants(
    who: Anyone,
    pool: Pool,
    side: Literal["consumer", "provider"] = "consumer",
    status: GrantStatus | None = None,
    expiring_within_days: Annotated[
        int | None, Query(ge=0, le=3660, description="Only active grants whose last day is within this many days")
    ] = None,
) -> list[Grant]:
    where, params = "", []
    if who.role is Role.DEPARTMENT:
        where = "WHERE g.consumer = %s" if side == "consumer" else "WHERE r.provider = %s"
        params = [who.name]
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(grants.SELECT + where + " ORDER BY g.id", params)
        found = [grants.from_row(row) for row in await cur.fetchall()]
    if status is not None:
        found = [g for g in found if g.status is status]
    if expiring_within_days is not None:
        found = [g for g in found if grants.expires_within(g, expiring_within_days)]
    return found


@router.post("/v1/grants/{grant_id}/revoke", response_model=Grant, summary="Revoke a grant, with a reason")
async def revoke(grant_id: int, body: Revoke, who: Anyone, pool: Pool) -> Grant:
    """The resource's provider or an administrator (Hebei Art. 14, Wushen Art. 14 and 22). Every
    read path refuses the grant from this moment; the subscriber's node stops and keeps or purges
    the rows it holds, as the grant (or this call) says."""
    async with pool.connection() as conn, conn.transaction():
        grant = await _ended_by_provider_or_admin(conn, grant_id, who)
        if grant.status is GrantStatus.REVOKED:
            raise conflict(f"grant {grant_id} was already revoked: {grant.end_reason}")
        return await grants.end(conn, who, grant, GrantStatus.REVOKED, body.reason, on_revoke=body.on_revoke)


@router.post("/v1/grants/{grant_id}/restore", response_model=Grant, summary="Restore a revoked grant, with a reason")
async def restore(grant_id: int, body: Restore, who: Anyone, pool: Pool) -> Grant:
    """The provider or an administrator lifts a revocation (a suspension ends by an approved
    request instead). The subscriber's node reads on from where it stopped, or from the start
    if it purged its rows."""
    async with pool.connection() as conn, conn.transaction():
        grant = await _ended_by_provider_or_admin(conn, grant_id, who)
        if grant.status is not GrantStatus.REVOKED:
            raise conflict(f"grant {grant_id} is {grant.status.value}, not revoked")
        return await grants.resume(conn, who, grant, body.reason)


async def _ended_by_provider_or_admin(conn: grants.Conn, grant_id: int, who: Principal) -> Grant:
    grant = await grants.load(conn, grant_id, lock=True)
    provider = await grants.provider_of(conn, grant_id)
    if grant is None or (who.role is Role.DEPARTMENT and who.name not in (provider, grant.consumer)):
        raise not_found(f"grant {grant_id}")
    if who.role is not Role.ADMIN and who.name != provider:
        raise forbidden(f"only the provider of {grant.resource!r} ({provider}) or an administrator may do this")
    return grant


@router.post(
    "/v1/grants/{grant_id}/amend",
    status_code=201,
    response_model=ShareRequest,
    summary="Ask for more fields on a grant you hold (an amendment, approved like a request)",
)
async def amend(grant_id: int, body: Amend, who: Department, pool: Pool, calendar: Calendar) -> ShareRequest:
    async with pool.connection() as conn, conn.transaction():
        grant = await grants.load(conn, grant_id)
        if grant is None or grant.consumer != who.name:
            raise not_found(f"grant {grant_id}")
        if grant.status is not GrantStatus.ACTIVE:
            raise conflict(f"{grant.ended_because()}; file a new request instead")
        if grant.fields is None:
            raise conflict(f"grant {grant_id} covers every field of {grant.resource!r} already")
        stored = await resources.load(conn, grant.resource)
        unknown_fields(stored, body.fields)
        wider = sorted(set(grant.fields) | set(body.fields))
        if len(wider) == len(grant.fields):
            raise conflict(f"grant {grant_id} covers {', '.join(body.fields)} already: nothing to amend")
        return await file(
            conn, who, calendar, stored, grant.purpose, wider, RequestKind.AMENDMENT, grant_id=grant_id,
            reason=body.reason,
        )  # fmt: skip
