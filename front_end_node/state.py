"""What the agent knows about itself: each hop's last outcome, the front-end database's figures
(pending rows, quarantine, heartbeats, cursors), its certificate and disks.

The loops report into AgentState; a refresher task reads the database's figures every few
seconds. /healthz and /metrics (health.py, metrics.py) only read what is held here, so a slow
database never hangs a scrape.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509

from front_end_node.store import Conn
from gdx import __version__


@dataclass
class LoopStatus:
    state: str = "starting"  # starting | ok | waiting | withdrawn | error
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


@dataclass(frozen=True)
class SlotFigures:
    """A log-capture publication's replication slot on the business database."""

    wal_status: str  # reserved | extended | unreserved | lost
    retained_bytes: int  # WAL the slot holds back on the business database's disk
    behind_bytes: int  # WAL written since the position the agent confirmed


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
        # Per log-capture publication: its replication slot (front_end_node.log_capture).
        self.capture: dict[str, SlotFigures] = {}
        # Subscriptions stopped because their grant ended: resource -> status, rows, why.
        self.withdrawn: dict[str, dict[str, str]] = {}

    def loop(self, hop: str, resource: str) -> LoopStatus:
        return self.loops.setdefault((hop, resource), LoopStatus())

    def ok(self, hop: str, resource: str, *, rows: int = 0, batches: int = 0, read: int = 0, tidied: int = 0) -> None:
        status = self.loop(hop, resource)
        status.state, status.message, status.last_success = "ok", "", time.time()
        if hop == "pull":
            self.withdrawn.pop(resource, None)
        status.rows += rows
        status.batches += batches
        status.read += read
        status.tidied += tidied

    def waiting(self, hop: str, resource: str, message: str) -> None:
        status = self.loop(hop, resource)
        status.state, status.message = "waiting", message

    def stopped(self, hop: str, resource: str, message: str, grant_status: str, rows: str) -> None:
        """The grant of the subscription ended; not a fault of the node."""
        status = self.loop(hop, resource)
        status.state, status.message = "withdrawn", message
        self.withdrawn[resource] = {"grant": grant_status, "rows": rows, "message": message}

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
            # Log capture: the WAL each slot holds back on the business database, and how far behind it is.
            "capture": {resource: dataclasses.asdict(slot) for resource, slot in sorted(self.capture.items())},
            # Subscriptions whose grant was revoked, suspended or has expired: stopped, rows kept or purged.
            "withdrawn": dict(sorted(self.withdrawn.items())),
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


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
