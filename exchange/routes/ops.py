"""Health, readiness, metrics and the department registry."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from exchange import metrics, migrate
from exchange.deps import Pool
from exchange.identity import Anyone, Operator
from exchange.strict_json import StrictJsonRoute
from gdx.protocol import Department

router = APIRouter(tags=["operations"], route_class=StrictJsonRoute)


@router.get("/healthz", summary="The process is alive (no client certificate needed)")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Ready to serve: the database answers and is migrated")
async def readyz(request: Request, pool: Pool) -> JSONResponse:
    try:
        async with pool.connection(timeout=2) as conn:
            cur = await conn.execute("SELECT coalesce(max(version), 0) FROM schema_migration")
            row = await cur.fetchone()
    except Exception as exc:  # any failure means "not ready"; the reason goes to the probe's log
        return JSONResponse({"status": "unavailable", "reason": f"database: {type(exc).__name__}"}, 503)
    want = len(migrate.available())
    have = row[0] if row else 0
    if have < want:
        return JSONResponse(
            {"status": "unavailable", "reason": f"schema at version {have}, need {want}: run `gdx exchange migrate`"},
            503,
        )
    return JSONResponse({"status": "ready", "schema_version": have})


@router.get("/metrics", summary="Prometheus metrics (operators)")
async def metrics_endpoint(_: Operator) -> Response:
    return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


@router.get("/openapi.json", include_in_schema=False)
async def openapi_document(request: Request, _: Anyone) -> JSONResponse:
    return JSONResponse(request.app.openapi())


@router.get("/docs", include_in_schema=False)
async def api_docs(_: Anyone) -> HTMLResponse:
    return get_swagger_ui_html(openapi_url="/openapi.json", title="GDX central exchange")


@router.get("/v1/departments", response_model=list[Department], summary="The department registry")
async def departments(_: Anyone, pool: Pool) -> list[dict[str, Any]]:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT id, name, jurisdiction FROM department WHERE active ORDER BY id")
        return [{"id": i, "name": n, "jurisdiction": j} for i, n, j in await cur.fetchall()]


@router.get("/v1/whoami", summary="The identity your certificate gives you")
async def whoami(who: Anyone) -> dict[str, str]:
    return {"name": who.name, "role": who.role.value}
