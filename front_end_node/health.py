"""The agent's health port: /healthz (JSON), /metrics (Prometheus) and the reconciliation tallies,
each for the callers allowed to read it."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any

import orjson
from cryptography import x509
from fastapi import Depends, FastAPI, Query, Request, Response
from prometheus_client import CollectorRegistry, generate_latest

from front_end_node.metrics import AgentCollector
from front_end_node.state import AgentState
from front_end_node.tally import BusinessTables, Side, TallyError, tally
from gdx.peer_tls import peer_certificate_pem
from gdx.pki import Identity, PkiError, Role, identity_of
from gdx.reconcile import DEFAULT_RANGES, MAX_RANGES

# Who may ask the health port what (docs/front-end-node.md, "The health port"). The port
# requests a platform certificate and the handshake verifies it; a caller that sends none is
# let through to /healthz and /metrics only from this machine (Ansible's checks, an operator's
# curl on the node). The tallies are derived from the data: only the monitoring's identity.
_STAFF = (Role.OPERATOR, Role.ADMIN)


def _caller(request: Request) -> Identity | None:
    pem = peer_certificate_pem(request.scope)
    if pem is None:
        return None
    try:
        return identity_of(x509.load_pem_x509_certificate(pem.encode()))
    except (PkiError, ValueError):
        return None


def _from_this_machine(request: Request) -> bool:
    try:
        return request.client is not None and ipaddress.ip_address(request.client.host).is_loopback
    except ValueError:
        return False


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def create_app(state: AgentState, front_end_db: str, business: BusinessTables | None = None) -> FastAPI:
    registry = CollectorRegistry()
    registry.register(AgentCollector(state))
    app = FastAPI(title="GDX front-end agent", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(_Refused)
    async def _refused(_: Request, exc: _Refused) -> Response:
        return _json(
            {"error": "unauthenticated" if exc.status == 401 else "forbidden", "message": exc.message}, exc.status
        )

    async def health_reader(request: Request) -> None:
        who = _caller(request)
        if who is None:
            if _from_this_machine(request):
                return
            raise _Refused(401, "a platform certificate is required (the monitoring's, or this department's)")
        if who.role not in _STAFF and who.name != state.department:
            raise _Refused(403, f"{who.name} ({who.role.value}) may not read {state.department}'s health")

    async def monitoring_only(request: Request) -> None:
        who = _caller(request)
        if who is None:
            raise _Refused(401, "the tallies need the monitoring's certificate (role operator or admin)")
        if who.role not in _STAFF:
            raise _Refused(403, f"the tallies are for the monitoring (operator or admin), not {who.role.value}")

    @app.get("/healthz", dependencies=[Depends(health_reader)])
    def healthz() -> Response:
        body = state.health()
        return _json(body, 503 if body["status"] == "failing" else 200)

    @app.get("/metrics", dependencies=[Depends(health_reader)])
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/v1/tally/{resource}", dependencies=[Depends(monitoring_only)])
    async def tally_endpoint(
        resource: str,
        side: Side,
        ranges: Annotated[int, Query(ge=1, le=MAX_RANGES)] = DEFAULT_RANGES,
        fields: Annotated[str | None, Query(description="Comma-separated; default: all of this copy's")] = None,
        rows_per_s: Annotated[float, Query(gt=0, le=1_000_000)] = 20_000,
    ) -> Response:
        """Counts and checksums by key range of this node's copy of a resource (reconciliation)."""
        try:
            result = await tally(
                front_end_db,
                resource,
                side,
                ranges=ranges,
                fields=fields.split(",") if fields else None,
                rows_per_s=rows_per_s,
                business=business,
            )
        except TallyError as exc:
            return _json({"error": "not_found", "message": str(exc)}, 404)
        return _json(result.model_dump())

    return app


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")
