"""The administrator's view: one row per department with what needs attention, worst first
within each column. Shared by the status page and /api/status."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from monitoring.agent import Monitor

HOPS = ("extract", "central", "subscriber")
CERT_WARN_DAYS, CERT_CRIT_DAYS = 30, 7
# The threshold of the GdxCaptureSlotRetainingWal alert (monitoring/rules/alerts.yml).
RETAINED_WAL_WARN_BYTES = 4 * 2**30


@dataclass
class DepartmentRow:
    department: str
    name: str
    state: str  # ok | warning | critical | unknown: the row's colour
    health: str  # the agent's status, or why the probe failed
    lag: dict[str, float | None] = field(default_factory=dict)  # worst per hop
    stalled: list[str] = field(default_factory=list)  # "hop resource" that stopped
    certificate_days: float | None = None
    clock_offset_s: float | None = None
    disk_free_ratio: float | None = None
    overdue_requests: int = 0
    catalog_review_overdue: int = 0
    not_updated_resources: int = 0
    open_disputes: int = 0
    inbox: int = 0  # items waiting for the department (GET /v1/inbox)
    overdue_coordination: int = 0  # negotiations, explanations and decisions past their deadline
    catalog_updates_overdue: int = 0
    mismatched_ranges: int = 0
    quarantined_rows: int = 0  # held back at the node for failing the catalog's checks
    rows_ahead: int = 0  # stamped ahead of the business database's clock, waiting for it
    lost_slots: list[str] = field(default_factory=list)  # log capture that lost WAL it needed
    retained_wal_bytes: int = 0  # WAL the node's replication slots hold back on the business database
    problems: list[str] = field(default_factory=list)


def rows(monitor: Monitor, lag_warn_s: float = 60.0) -> list[DepartmentRow]:
    snapshot = monitor.snapshot
    governance = {g.department: g for g in snapshot.summary.departments} if snapshot.summary else {}
    now = time.time()
    result = []
    for target in monitor.targets:
        d = target.department
        probe = snapshot.probes.get(d)
        row = DepartmentRow(d, target.name, "unknown", "not probed yet")
        if probe is not None:
            row.health = str(probe.health.get("status", "unknown")) if probe.answered else probe.error
            if probe.certificate_expiry is not None:
                row.certificate_days = round((probe.certificate_expiry - now) / 86400, 1)
            row.clock_offset_s = None if probe.clock_offset_s is None else round(probe.clock_offset_s, 3)
            disks = probe.health.get("disks") or {}
            if disks:
                row.disk_free_ratio = round(min(u["free_bytes"] / u["total_bytes"] for u in disks.values()), 3)
            row.quarantined_rows = sum((probe.health.get("quarantined") or {}).values())
            row.rows_ahead = sum((probe.health.get("rows_ahead_of_source_clock") or {}).values())
            slots = probe.health.get("capture") or {}
            row.lost_slots = sorted(r for r, slot in slots.items() if slot.get("wal_status") == "lost")
            row.retained_wal_bytes = sum(int(slot.get("retained_bytes") or 0) for slot in slots.values())
        for key in monitor.lag.hops:
            mine = key.department == d or (key.hop == "central" and key.provider == d)
            if not mine:
                continue
            value = monitor.lag.lag(key, now)
            if value is not None:
                row.lag[key.hop] = round(max(row.lag.get(key.hop) or 0.0, value), 1)
            else:
                row.lag.setdefault(key.hop, None)
            if monitor.lag.stalled(key):
                row.stalled.append(f"{key.hop} {key.resource}")
        row.stalled.sort()
        if d in governance:
            g = governance[d]
            row.overdue_requests, row.open_disputes = g.overdue_requests, g.open_disputes
            row.catalog_review_overdue, row.not_updated_resources = g.catalog_review_overdue, g.not_updated_resources
            row.inbox, row.catalog_updates_overdue = g.inbox, g.catalog_updates_overdue
            row.overdue_coordination = sum(n for kind, n in g.overdue.items() if kind != "reply")
        row.mismatched_ranges = sum(
            len(r.mismatched) for p, r in monitor.reconciler.results.items() if p.department == d
        )
        row.problems, row.state = _judge(row, probe is not None and probe.up, probe is None, lag_warn_s)
        result.append(row)
    return result


def _judge(row: DepartmentRow, up: bool, unprobed: bool, lag_warn_s: float) -> tuple[list[str], str]:
    if unprobed:
        return [], "unknown"
    critical, warning = [], []
    if not up:
        critical.append(f"node down: {row.health}")
    elif row.health == "failing":
        critical.append("agent failing (front-end database down)")
    elif row.health != "ok":
        warning.append(f"agent {row.health}")
    if row.stalled:
        critical.append("stalled: " + ", ".join(row.stalled))
    late = [hop for hop, value in row.lag.items() if value is not None and value > lag_warn_s]
    if late:
        warning.append("late at " + ", ".join(late))
    if row.certificate_days is not None and row.certificate_days < CERT_WARN_DAYS:
        (critical if row.certificate_days < CERT_CRIT_DAYS else warning).append(
            f"certificate expires in {row.certificate_days:g} days"
        )
    if row.lost_slots:
        critical.append("log capture lost WAL (load again): " + ", ".join(row.lost_slots))
    if row.retained_wal_bytes > RETAINED_WAL_WARN_BYTES:
        held = row.retained_wal_bytes / 2**30
        warning.append(f"replication slots hold back {held:.1f} GiB of the business database's WAL")
    if row.mismatched_ranges:
        critical.append(f"{row.mismatched_ranges} mismatched key ranges")
    if row.quarantined_rows:
        warning.append(f"{row.quarantined_rows} source rows quarantined at the node")
    if row.rows_ahead:
        warning.append(f"{row.rows_ahead} source rows stamped ahead of the business database's clock")
    overdue = (
        row.overdue_requests + row.overdue_coordination + row.catalog_review_overdue + row.catalog_updates_overdue
        + row.not_updated_resources
    )  # fmt: skip
    if overdue:
        warning.append(f"{overdue} overdue governance items")
    return critical + warning, "critical" if critical else "warning" if warning else "ok"


def as_json(monitor: Monitor) -> dict[str, Any]:
    snapshot = monitor.snapshot
    return {
        "as_of": snapshot.finished_at,
        "cycle_seconds": round(snapshot.seconds, 3),
        "exchange": "up" if snapshot.summary is not None and not snapshot.exchange_error else snapshot.exchange_error,
        "departments": [asdict(row) for row in rows(monitor)],
    }
