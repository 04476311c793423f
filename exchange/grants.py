"""Grants and their life: given by a subscription, an approval or the authority's decision;
ended by revocation, expiry, or a reclassification of the resource (docs/exchange.md, "Grants").

A grant row says active, suspended or revoked; "expired" is read from its expiry date against
today (Beijing), so that a grant ends on its day without a job having to run.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg
from psycopg.rows import dict_row

from exchange import audit
from exchange.identity import Principal
from gdx.protocol import Grant, GrantStatus, GrantTerms, OnRevoke, ShareType
from gdx.workdays import today

Conn = psycopg.AsyncConnection[Any]

# The governance metric counts the grants that end within this many days (issue: 30).
EXPIRING_WITHIN_DAYS = 30

SELECT = """
    SELECT g.id, r.code AS resource, r.provider, g.consumer, g.purpose, g.fields, g.request_id, g.granted_at,
           g.status, g.expires_on, g.on_revoke, g.ended_at, g.ended_by, g.end_reason
    FROM grants g JOIN resource r ON r.id = g.resource_id
"""


def from_row(row: dict[str, Any], *, as_of: dt.date | None = None) -> Grant:
    """The grant as the API shows it: an active grant past its expiry date is expired."""
    values = {k: v for k, v in row.items() if k != "provider"}
    expires_on = values["expires_on"]
    if values["status"] == GrantStatus.ACTIVE and expires_on is not None and expires_on < (as_of or today()):
        values["status"] = GrantStatus.EXPIRED
    return Grant.model_validate(values)


def expires_within(grant: Grant, days: int, as_of: dt.date | None = None) -> bool:
    """An active grant whose last day is within ``days`` from today."""
    if grant.status is not GrantStatus.ACTIVE or grant.expires_on is None:
        return False
    return grant.expires_on <= (as_of or today()) + dt.timedelta(days=days)


async def load(conn: Conn, grant_id: int, *, lock: bool = False) -> Grant | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(SELECT + " WHERE g.id = %s" + (" FOR UPDATE OF g" if lock else ""), (grant_id,))
        row = await cur.fetchone()
    return from_row(row) if row else None


async def provider_of(conn: Conn, grant_id: int) -> str | None:
    cur = await conn.execute("SELECT r.provider FROM grants g JOIN resource r ON r.id = g.resource_id WHERE g.id = %s",
                             (grant_id,))  # fmt: skip
    row = await cur.fetchone()
    return row[0] if row else None


async def give(
    conn: Conn,
    resource_id: int,
    consumer: str,
    purpose: str,
    fields: list[str] | None,
    request_id: int | None,
    terms: GrantTerms | None = None,
) -> Grant:
    """Grant (or grant again: a suspended, revoked or expired grant for the same purpose lives again)."""
    terms = terms or GrantTerms()
    cur = await conn.execute(
        """
        INSERT INTO grants (resource_id, consumer, purpose, fields, request_id, expires_on, on_revoke)
        VALUES (%s, %s, %s, %s, %s, %s, %s)
        ON CONFLICT (resource_id, consumer, purpose) DO UPDATE SET fields = EXCLUDED.fields,
            request_id = EXCLUDED.request_id, granted_at = now(), expires_on = EXCLUDED.expires_on,
            on_revoke = EXCLUDED.on_revoke, status = 'active', ended_at = NULL, ended_by = NULL, end_reason = NULL
        RETURNING id
        """,
        (resource_id, consumer, purpose, fields, request_id, terms.expires_on, terms.on_revoke.value),
    )
    row = await cur.fetchone()
    assert row is not None
    found = await load(conn, row[0])
    assert found is not None
    return found


async def end(
    conn: Conn,
    who: Principal,
    grant: Grant,
    status: GrantStatus,
    reason: str,
    *,
    on_revoke: OnRevoke | None = None,
    scope: dict[str, Any] | None = None,
) -> Grant:
    """Revoke or suspend ``grant``, audited as grant.revoke / grant.suspend."""
    await conn.execute(
        "UPDATE grants SET status = %s, ended_at = now(), ended_by = %s, end_reason = %s, "
        "on_revoke = coalesce(%s, on_revoke) WHERE id = %s",
        (status.value, who.name, reason, on_revoke.value if on_revoke else None, grant.id),
    )
    action = "grant.revoke" if status is GrantStatus.REVOKED else "grant.suspend"
    ended = await load(conn, grant.id)
    assert ended is not None
    await audit.record(
        conn, who, action, resource=grant.resource, purpose=grant.purpose,
        scope={"grant": grant.id, "consumer": grant.consumer, "reason": reason, "on_revoke": ended.on_revoke.value,
               **(scope or {})},
    )  # fmt: skip
    return ended


async def of_resource(conn: Conn, resource_id: int, statuses: tuple[str, ...]) -> list[Grant]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            SELECT + " WHERE g.resource_id = %s AND g.status = ANY(%s) ORDER BY g.id FOR UPDATE OF g",
            (resource_id, list(statuses)),
        )
        return [from_row(row) for row in await cur.fetchall()]


async def reclassified(
    conn: Conn, who: Principal, resource_id: int, before: ShareType, after: ShareType, version: int
) -> tuple[list[Grant], list[Grant]]:
    """A new catalog version changed the share type: act on the grants held (ZJG Art. 10, Wushen
    Art. 9-10). To not-shared: every grant is revoked. Unconditional to conditional: grants given
    by subscription (no approved request) are suspended, each until a request is approved.
    Conditional to unconditional: suspended grants live again. Returns (ended, revived)."""
    why = f"catalog version {version} made the resource {after.value.replace('_', '-')} (was {before.value})"
    ended: list[Grant] = []
    revived: list[Grant] = []
    if after is ShareType.NOT_SHARED:
        for grant in await of_resource(conn, resource_id, ("active", "suspended")):
            ended.append(await end(conn, who, grant, GrantStatus.REVOKED, why, scope={"reclassified": version}))
    elif before is ShareType.UNCONDITIONAL and after is ShareType.CONDITIONAL:
        for grant in await of_resource(conn, resource_id, ("active",)):
            if grant.request_id is None:
                ended.append(await end(conn, who, grant, GrantStatus.SUSPENDED, why, scope={"reclassified": version}))
    elif after is ShareType.UNCONDITIONAL:
        for grant in await of_resource(conn, resource_id, ("suspended",)):
            revived.append(await resume(conn, who, grant, why))
    return ended, revived


async def resume(conn: Conn, who: Principal, grant: Grant, reason: str) -> Grant:
    """A suspended or revoked grant lives again, audited as grant.resume."""
    await conn.execute(
        "UPDATE grants SET status = 'active', ended_at = NULL, ended_by = NULL, end_reason = NULL WHERE id = %s",
        (grant.id,),
    )
    await audit.record(
        conn, who, "grant.resume", resource=grant.resource, purpose=grant.purpose,
        scope={"grant": grant.id, "consumer": grant.consumer, "reason": reason, "was": grant.status.value},
    )  # fmt: skip
    resumed = await load(conn, grant.id)
    assert resumed is not None
    return resumed
