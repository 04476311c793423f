"""What the monitoring agent reads from the exchange (operators): the central hop's
heartbeats, the governance deadlines per department, and tallies for reconciliation."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query

from exchange import catalog_items, inbox, resources, share_requests
from exchange.deps import Pool
from exchange.errors import ApiError
from exchange.grants import EXPIRING_WITHIN_DAYS
from exchange.identity import Operator
from exchange.strict_json import StrictJsonRoute
from gdx.protocol import (
    CATALOG_REVIEW_PERIOD,
    CentralHeartbeat,
    DepartmentGovernance,
    MonitoringSummary,
    ResourceStatus,
    UpdatePeriod,
)
from gdx.reconcile import DEFAULT_RANGES, MAX_RANGES, Counter, Tally, paced
from gdx.workdays import today

router = APIRouter(prefix="/v1/monitoring", tags=["monitoring"], route_class=StrictJsonRoute)

_RESOURCES = """
SELECT r.code, r.provider, r.spec->>'update_period', r.last_seq, r.last_change_at, r.created_at,
       r.catalog_updated_at, r.heartbeat_seq, r.heartbeat_source_time, r.heartbeat_received_at,
       coalesce((SELECT array_agg(DISTINCT g.consumer ORDER BY g.consumer) FROM grants g
                 WHERE g.resource_id = r.id AND g.status = 'active' AND (g.expires_on IS NULL OR g.expires_on >= %s)),
                '{}')
FROM resource r ORDER BY r.code
"""
# Past a deadline, counted against the party that must act: the provider, for its reply, the
# negotiation and its explanation; the authority's decisions count under the provider too (the
# department whose data waits), with their own kind.
_OVERDUE = (
    """
SELECT r.provider, CASE
        WHEN q.status = 'pending' THEN 'reply' WHEN q.status = 'negotiating' THEN 'negotiation'
        WHEN q.explanation IS NULL AND q.explanation_due < %(today)s THEN 'explanation' ELSE 'decision' END,
    count(*)
FROM share_request q JOIN resource r ON r.id = q.resource_id
WHERE """
    + share_requests.OVERDUE_SQL
    + " GROUP BY 1, 2"
)
_CATALOG_OVERDUE = (
    """
SELECT i.department, count(*) FROM catalog_item i
WHERE """
    + catalog_items.OVERDUE_SQL
    + " GROUP BY 1"
)
# Notices a webhook has refused or not answered, still undelivered.
_WEBHOOK_FAILING = """
SELECT department, count(*) FROM inbox_notice WHERE delivered_at IS NULL AND attempts > 0 GROUP BY department
"""
_EXPIRING = """
SELECT consumer, count(*) FROM grants
WHERE status = 'active' AND expires_on BETWEEN %(today)s AND %(until)s GROUP BY consumer
"""
_DISPUTES = """
SELECT r.provider, count(*) FROM dispute d JOIN resource r ON r.id = d.resource_id
WHERE d.status = 'open' GROUP BY r.provider
"""


@router.get("/summary", response_model=MonitoringSummary, summary="Heartbeats and deadlines (operators)")
async def summary(_: Operator, pool: Pool) -> MonitoringSummary:
    async with pool.connection() as conn:
        now = (await (await conn.execute("SELECT now()")).fetchone() or [dt.datetime.now(dt.UTC)])[0]
        day = today()
        rows = await (await conn.execute(_RESOURCES, (day,))).fetchall()
        overdue: dict[str, dict[str, int]] = {}
        for dept, kind, count in await (await conn.execute(_OVERDUE, {"today": day})).fetchall():
            overdue.setdefault(dept, {})[kind] = int(count)
        until = day + dt.timedelta(days=EXPIRING_WITHIN_DAYS)
        expiring = dict(await (await conn.execute(_EXPIRING, {"today": day, "until": until})).fetchall())
        catalog_late = dict(await (await conn.execute(_CATALOG_OVERDUE, {"today": day})).fetchall())
        failing = dict(await (await conn.execute(_WEBHOOK_FAILING)).fetchall())
        disputes = dict(await (await conn.execute(_DISPUTES)).fetchall())
        departments = [r[0] for r in await (await conn.execute("SELECT id FROM department WHERE active")).fetchall()]
        waiting = {}
        for dept in departments:  # the same reading as GET /v1/inbox, counted
            items = await (await conn.execute(inbox.DEPARTMENT_SQL, inbox.params(dept, day))).fetchall()
            waiting[dept] = len(items)
    statuses = []
    for code, provider, period, last_seq, last_change, created, reviewed, hb_seq, hb_source, hb_received, subs in rows:
        period = UpdatePeriod(period)
        heartbeat = None
        if hb_seq is not None:
            heartbeat = CentralHeartbeat(seq=hb_seq, source_time=hb_source, received_at=hb_received)
        statuses.append(
            ResourceStatus(
                code=code,
                provider=provider,
                update_period=period,
                last_seq=last_seq,
                last_change_at=last_change,
                catalog_updated_at=reviewed,
                heartbeat=heartbeat,
                not_updated=now - (last_change or created) > period.max_age(),
                catalog_review_overdue=now - reviewed > CATALOG_REVIEW_PERIOD,
                subscribers=list(subs),
            )
        )
    governance = [
        DepartmentGovernance(
            department=dept,
            overdue_requests=overdue.get(dept, {}).get("reply", 0),
            overdue=overdue.get(dept, {}),
            grants_expiring=int(expiring.get(dept, 0)),
            catalog_updates_overdue=int(catalog_late.get(dept, 0)),
            inbox=waiting.get(dept, 0),
            webhook_failing=int(failing.get(dept, 0)),
            catalog_review_overdue=sum(s.catalog_review_overdue for s in statuses if s.provider == dept),
            not_updated_resources=sum(s.not_updated for s in statuses if s.provider == dept),
            open_disputes=int(disputes.get(dept, 0)),
        )
        for dept in departments
    ]
    return MonitoringSummary(as_of=now, resources=statuses, departments=governance)


@router.get("/tally/{code}", response_model=Tally, summary="Counts and checksums by key range (reconciliation)")
async def tally(
    code: str,
    _: Operator,
    pool: Pool,
    ranges: Annotated[int, Query(ge=1, le=MAX_RANGES)] = DEFAULT_RANGES,
    fields: Annotated[str | None, Query(description="Comma-separated, e.g. a subscriber's granted fields")] = None,
    rows_per_s: Annotated[float, Query(gt=0, le=1_000_000)] = 50_000,
) -> Tally:
    async with pool.connection() as conn:
        stored = await resources.load(conn, code)
    types = {f.name: f.type for f in stored.spec.fields}
    wanted = fields.split(",") if fields else list(types)
    unknown = [f for f in wanted if f not in types]
    if unknown:
        raise ApiError(422, "unknown_field", f"{code} has no field(s) {', '.join(unknown)}")
    key = stored.spec.primary_key
    chosen = [key] + [f for f in types if f in wanted and f != key]
    counter = Counter(code, [(f, types[f]) for f in chosen], ranges)
    async with pool.connection() as conn:
        async for row_key, row in paced(_current_rows(conn, stored.id), rows_per_s):
            counter.add(row_key, [row.get(f) for f in chosen])
    return counter.tally()


async def _current_rows(conn: Any, resource_id: int) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    async with conn.transaction(), conn.cursor(name="gdx_tally") as cur:
        await cur.execute(
            "SELECT k.key, c.row FROM current_key k JOIN change c ON c.resource_id = k.resource_id AND c.seq = k.seq "
            "WHERE k.resource_id = %s AND NOT k.deleted",
            (resource_id,),
        )
        while rows := await cur.fetchmany(1000):
            for row in rows:
                yield row
