"""What the agent knows about itself: served as /healthz (JSON) and /metrics (Prometheus).

The loops report into AgentState; a refresher task reads the front-end database's figures
(pending rows, quarantine, heartbeats) every few seconds. Scrapes only read what is held in
memory, so a slow database never hangs a scrape.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import orjson
from cryptography import x509
from fastapi import Depends, FastAPI, Query, Request, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from front_end_node.store import Conn
from front_end_node.tally import BusinessTables, Side, TallyError, tally
from gdx import __version__
from gdx.peer_tls import peer_certificate_pem
from gdx.pki import Identity, PkiError, Role, identity_of
from gdx.reconcile import DEFAULT_RANGES, MAX_RANGES


class Waiting(Exception):
    """Not an error: a hop cannot start yet (no grant, resource not in the catalog); the message says why."""


@dataclass
class LoopStatus:
    state: str = "starting"  # starting | ok | waiting | error
    message: str = ""
    last_success: float | None = None
    rows: int = 0
    batches: int = 0
    errors: int = 0
    read: int = 0
    tidied: int = 0  # keys put into canonical form (extraction)


@dataclass
class DbFigures:
    up: bool = False
    pending: dict[str, int] = field(default_factory=dict)
    quarantined: dict[str, int] = field(default_factory=dict)
    heartbeats: dict[tuple[str, str], tuple[int, float, float]] = field(default_factory=dict)  # seq, source, seen
    cursors: dict[str, int] = field(default_factory=dict)
    # Subscriptions reading their resource again from 0 for fields their table gained.
    refilling: set[str] = field(default_factory=set)


class AgentState:
    def __init__(self, department: str, cert: Path, disks: tuple[Path, ...] = ()) -> None:
        self.department = department
        self.cert = cert
        self.disks = disks
        self.loops: dict[tuple[str, str], LoopStatus] = {}
        self.db = DbFigures()
        self.started = time.time()
        # Per published resource: rows whose change value is ahead of the business database's
        # clock, held back until it passes them (front_end_node.extract).
        self.rows_ahead: dict[str, int] = {}

    def loop(self, hop: str, resource: str) -> LoopStatus:
        return self.loops.setdefault((hop, resource), LoopStatus())

    def ok(self, hop: str, resource: str, *, rows: int = 0, batches: int = 0, read: int = 0, tidied: int = 0) -> None:
        status = self.loop(hop, resource)
        status.state, status.message, status.last_success = "ok", "", time.time()
        status.rows += rows
        status.batches += batches
        status.read += read
        status.tidied += tidied

    def waiting(self, hop: str, resource: str, message: str) -> None:
        status = self.loop(hop, resource)
        status.state, status.message = "waiting", message

    def failed(self, hop: str, resource: str, message: str) -> None:
        status = self.loop(hop, resource)
        status.state, status.message = "error", message
        status.errors += 1

    def cert_expiry(self) -> float | None:
        try:
            cert = x509.load_pem_x509_certificate(self.cert.read_bytes())
        except (OSError, ValueError):
            return None
        return cert.not_valid_after_utc.timestamp()

    def health(self) -> dict[str, Any]:
        loops = {
            f"{hop}/{resource}": {"state": s.state, "message": s.message, "last_success": s.last_success}
            for (hop, resource), s in sorted(self.loops.items())
        }
        if not self.db.up:
            status = "failing"
        elif any(s.state == "error" for s in self.loops.values()):
            status = "degraded"
        else:
            status = "ok"
        expiry = self.cert_expiry()
        return {
            "status": status,
            "department": self.department,
            "version": __version__,
            # When this process started: a value that keeps changing is an agent crash-looping.
            "started": self.started,
            "front_end_db": "up" if self.db.up else "down",
            "certificate_days_left": None if expiry is None else round((expiry - time.time()) / 86400, 1),
            "loops": loops,
            "pending": self.db.pending,
            "quarantined": self.db.quarantined,
            "rows_ahead_of_source_clock": dict(sorted(self.rows_ahead.items())),
            # Per subscription: the last change applied, and whether the resource is being read
            # again for fields the table gained (meanwhile the pull hop records no heartbeats).
            "subscriptions": {
                resource: {"after_seq": seq, "refilling": resource in self.db.refilling}
                for resource, seq in sorted(self.db.cursors.items())
            },
            # What the monitoring agent measures lag and clock offset from.
            "time": time.time(),
            "heartbeats": {
                f"{hop}/{resource}": {"seq": seq, "source_time": source, "seen_at": seen}
                for (hop, resource), (seq, source, seen) in sorted(self.db.heartbeats.items())
            },
            "disks": self.disk_usage(),
        }

    def disk_usage(self) -> dict[str, dict[str, int]]:
        usage = {}
        for path in self.disks:
            try:
                total, _used, free = shutil.disk_usage(path)
            except OSError:
                continue
            usage[str(path)] = {"total_bytes": total, "free_bytes": free}
        return usage

    async def refresh(self, conn: Conn) -> None:
        figures = DbFigures(up=True)
        cur = await conn.execute("SELECT resource, count(*) FROM gdx.outbox WHERE op <> 'h' GROUP BY resource")
        figures.pending = {r: int(n) for r, n in await cur.fetchall()}
        cur = await conn.execute("SELECT resource, count(*) FROM gdx.quarantine GROUP BY resource")
        figures.quarantined = {r: int(n) for r, n in await cur.fetchall()}
        cur = await conn.execute("SELECT hop, resource, seq, source_time, seen_at FROM gdx.heartbeat")
        figures.heartbeats = {
            (h, r): (int(s), t.timestamp(), seen.timestamp()) for h, r, s, t, seen in await cur.fetchall()
        }
        cur = await conn.execute("SELECT resource, after_seq, refilling FROM gdx.subscription_state")
        for resource, seq, refilling in await cur.fetchall():
            figures.cursors[resource] = int(seq)
            if refilling:
                figures.refilling.add(resource)
        self.db = figures

    def database_down(self) -> None:
        self.db = DbFigures(
            up=False,
            pending=self.db.pending,
            quarantined=self.db.quarantined,
            heartbeats=self.db.heartbeats,
            cursors=self.db.cursors,
            refilling=self.db.refilling,
        )


class _Collector(Collector):
    def __init__(self, state: AgentState) -> None:
        self.state = state

    def collect(self) -> Iterator[Any]:
        s = self.state
        info = GaugeMetricFamily("gdx_node_build_info", "The agent's version (always 1)", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        labels = ["hop", "resource"]
        heartbeat_seq = GaugeMetricFamily(
            "gdx_node_heartbeat_seq", "Newest heartbeat sequence seen at the hop", labels=labels
        )
        heartbeat_time = GaugeMetricFamily(
            "gdx_node_heartbeat_timestamp_seconds",
            "Source time of the newest heartbeat seen at the hop (lag = now - this)",
            labels=labels,
        )
        for (hop, resource), (seq, at, _seen) in sorted(s.db.heartbeats.items()):
            heartbeat_seq.add_metric([hop, resource], seq)
            heartbeat_time.add_metric([hop, resource], at)
        yield heartbeat_seq
        yield heartbeat_time

        rows = CounterMetricFamily("gdx_node_rows", "Rows moved by the hop since the agent started", labels=labels)
        batches = CounterMetricFamily("gdx_node_batches", "Batches or cycles that moved rows", labels=labels)
        errors = CounterMetricFamily("gdx_node_errors", "Failed attempts of the hop", labels=labels)
        read = CounterMetricFamily(
            "gdx_node_source_rows_read",
            "Rows read from the business database (settled ranges checked again for late commits included)",
            labels=["resource"],
        )
        tidied = CounterMetricFamily(
            "gdx_node_keys_tidied",
            "Source rows read whose key the agent put into its canonical form (case, surrounding white space, "
            "full-width characters) before sending it",
            labels=["resource"],
        )
        success = GaugeMetricFamily(
            "gdx_node_last_success_timestamp_seconds", "When the hop last completed a cycle", labels=labels
        )
        up = GaugeMetricFamily("gdx_node_hop_up", "1 when the hop's last attempt succeeded", labels=labels)
        for (hop, resource), status in sorted(s.loops.items()):
            rows.add_metric([hop, resource], status.rows)
            batches.add_metric([hop, resource], status.batches)
            errors.add_metric([hop, resource], status.errors)
            if hop == "extract":
                read.add_metric([resource], status.read)
                tidied.add_metric([resource], status.tidied)
            if status.last_success is not None:
                success.add_metric([hop, resource], status.last_success)
            up.add_metric([hop, resource], 1 if status.state == "ok" else 0)
        yield from (rows, batches, errors, read, tidied, success, up)

        pending = GaugeMetricFamily("gdx_node_pending_rows", "Changes waiting for the exchange", labels=["resource"])
        for resource, count in sorted(s.db.pending.items()):
            pending.add_metric([resource], count)
        yield pending
        quarantined = GaugeMetricFamily(
            "gdx_node_quarantined_rows", "Source rows held back for failing the resource's checks", labels=["resource"]
        )
        for resource, count in sorted(s.db.quarantined.items()):
            quarantined.add_metric([resource], count)
        yield quarantined
        ahead = GaugeMetricFamily(
            "gdx_node_source_rows_ahead",
            "Rows whose change column is ahead of the business database's clock: held back until it passes them",
            labels=["resource"],
        )
        for resource, count in sorted(s.rows_ahead.items()):
            ahead.add_metric([resource], count)
        yield ahead
        cursor = GaugeMetricFamily("gdx_node_pull_cursor", "Last change sequence applied", labels=["resource"])
        refilling = GaugeMetricFamily(
            "gdx_node_pull_refilling",
            "1 while the subscription reads its resource again for fields its table gained",
            labels=["resource"],
        )
        for resource, seq in sorted(s.db.cursors.items()):
            cursor.add_metric([resource], seq)
            refilling.add_metric([resource], int(resource in s.db.refilling))
        yield cursor
        yield refilling
        yield GaugeMetricFamily("gdx_node_front_end_db_up", "1 when the front-end database answers", value=int(s.db.up))
        expiry = s.cert_expiry()
        if expiry is not None:
            yield GaugeMetricFamily(
                "gdx_node_certificate_expiry_timestamp_seconds",
                "When the node's client certificate expires",
                value=expiry,
            )
        info = GaugeMetricFamily("gdx_node_info", "The agent", labels=["department"])
        info.add_metric([s.department], 1)
        yield info


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
    registry.register(_Collector(state))
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


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
