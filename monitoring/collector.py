"""The monitor's Prometheus series, built at scrape time from the last cycle's snapshot.

A custom collector rather than global gauges: a department removed from the inventory, or
a resource from the catalog, has no series on the next scrape instead of a stale value.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from gdx.protocol import Overdue

if TYPE_CHECKING:
    from monitoring.agent import Monitor

DEPT = ["department"]
HOP = ["resource", "provider", "hop", "department"]


def _gauge(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels)


class MonitorCollector(Collector):
    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor

    def collect(self) -> Iterator[Any]:
        yield from self._nodes()
        yield from self._hops()
        yield from self._governance()
        yield from self._reconciliation()
        yield from self._self()

    def _nodes(self) -> Iterator[Any]:
        snapshot = self.monitor.snapshot
        info = _gauge(
            "gdx_target_info",
            "A department's node in the inventory (always 1)",
            [*DEPT, "name", "jurisdiction", "host"],
        )
        reachable = _gauge("gdx_node_reachable", "1 when the agent's health port accepts TCP", DEPT)
        tls = _gauge(
            "gdx_node_tls_ok", "1 when the TLS handshake shows a CA-issued certificate naming the department", DEPT
        )
        up = _gauge("gdx_node_up", "1 when the node answered the probe (TCP, TLS and /healthz)", DEPT)
        healthy = _gauge("gdx_node_agent_healthy", "1 when the agent reports status ok", DEPT)
        state = _gauge(
            "gdx_node_agent_status",
            "The agent's status (ok, degraded, failing), 1 for the current one",
            [*DEPT, "status"],
        )
        db_up = _gauge("gdx_node_frontend_db_up", "1 when the node's front-end database answers its agent", DEPT)
        cert = _gauge(
            "gdx_node_certificate_expiry_seconds",
            "Time until the node's certificate expires (from the handshake)",
            DEPT,
        )
        offset = _gauge("gdx_node_clock_offset_seconds", "The node's clock minus the monitoring host's", DEPT)
        free = _gauge("gdx_node_disk_free_bytes", "Free space of a file system on the node", [*DEPT, "path"])
        size = _gauge("gdx_node_disk_size_bytes", "Size of a file system on the node", [*DEPT, "path"])
        pending = _gauge("gdx_node_outbox_rows", "Changes waiting at the node for the exchange", [*DEPT, "resource"])
        refilling = _gauge(
            "gdx_node_pull_refilling",
            "1 while a subscription reads its resource again for fields its table gained",
            [*DEPT, "resource"],
        )
        quarantined = _gauge(
            "gdx_node_quarantined_rows",
            "Source rows the node holds back for failing the resource's checks (its /healthz names them)",
            [*DEPT, "resource"],
        )
        ahead = _gauge(
            "gdx_node_source_rows_ahead",
            "Rows whose change column is ahead of the business database's clock: held back until it passes them",
            [*DEPT, "resource"],
        )
        retained = _gauge(
            "gdx_node_capture_retained_bytes",
            "WAL a log-capture publication's replication slot holds back on the business database's disk",
            [*DEPT, "resource"],
        )
        behind = _gauge(
            "gdx_node_capture_behind_bytes",
            "WAL written on the business database since the position the node's log capture confirmed",
            [*DEPT, "resource"],
        )
        lost = _gauge(
            "gdx_node_capture_slot_lost",
            "1 when a log-capture publication's replication slot lost WAL it needed (the table must be loaded again)",
            [*DEPT, "resource"],
        )
        started = _gauge(
            "gdx_node_agent_start_time_seconds", "When the node's agent process started (from /healthz)", DEPT
        )
        took = _gauge("gdx_probe_duration_seconds", "How long the last probe of the node took", DEPT)
        now = time.time()
        for target in self.monitor.targets:
            d = target.department
            info.add_metric([d, target.name, target.jurisdiction, target.host], 1)
            result = snapshot.probes.get(d)
            if result is None:
                continue  # not probed yet: no figures rather than zeros
            reachable.add_metric([d], int(result.reachable))
            tls.add_metric([d], int(result.tls_ok))
            up.add_metric([d], int(result.up))
            took.add_metric([d], result.seconds)
            if result.certificate_expiry is not None:
                cert.add_metric([d], result.certificate_expiry - now)
            if not result.answered:
                continue
            health = result.health
            status = str(health.get("status", "unknown"))
            healthy.add_metric([d], int(status == "ok"))
            for name in ("ok", "degraded", "failing"):
                state.add_metric([d, name], int(status == name))
            db_up.add_metric([d], int(health.get("front_end_db") == "up"))
            if isinstance(health.get("started"), int | float):
                started.add_metric([d], health["started"])
            if result.clock_offset_s is not None:
                offset.add_metric([d], result.clock_offset_s)
            for path, usage in (health.get("disks") or {}).items():
                free.add_metric([d, path], usage["free_bytes"])
                size.add_metric([d, path], usage["total_bytes"])
            for resource, count in (health.get("pending") or {}).items():
                pending.add_metric([d, resource], count)
            for resource, subscription in (health.get("subscriptions") or {}).items():
                refilling.add_metric([d, resource], int(bool(subscription.get("refilling"))))
            for resource, count in (health.get("quarantined") or {}).items():
                quarantined.add_metric([d, resource], count)
            for resource, count in (health.get("rows_ahead_of_source_clock") or {}).items():
                ahead.add_metric([d, resource], count)
            for resource, slot in (health.get("capture") or {}).items():
                retained.add_metric([d, resource], slot["retained_bytes"])
                behind.add_metric([d, resource], slot["behind_bytes"])
                lost.add_metric([d, resource], int(slot["wal_status"] == "lost"))
        yield from (info, reachable, tls, up, healthy, state, db_up, cert, offset, free, size, pending, refilling)
        yield from (quarantined, ahead, retained, behind, lost, started, took)

    def _hops(self) -> Iterator[Any]:
        tracker = self.monitor.lag
        lag = _gauge(
            "gdx_lag_seconds",
            "How far a hop is behind the business database (hop: extract, central, subscriber = end to end)",
            HOP,
        )
        stalled = _gauge("gdx_hop_stalled", "1 when the hop's heartbeat sequence stopped advancing", HOP)
        seq = _gauge("gdx_hop_heartbeat_seq", "Newest heartbeat sequence seen at the hop", HOP)
        now = time.time()
        for key in sorted(tracker.hops, key=lambda k: (k.resource, k.hop, k.department)):
            labels = [key.resource, key.provider, key.hop, key.department]
            stalled.add_metric(labels, int(tracker.stalled(key)))
            value = tracker.lag(key, now)
            if value is not None:
                lag.add_metric(labels, value)
                seq.add_metric(labels, tracker.seq(key) or 0)
        yield from (lag, stalled, seq)

    def _governance(self) -> Iterator[Any]:
        snapshot = self.monitor.snapshot
        exchange_up = _gauge("gdx_exchange_up", "1 when the monitor read the exchange's summary in the last cycle", [])
        exchange_up.add_metric([], int(not snapshot.exchange_error and snapshot.summary is not None))
        yield exchange_up
        if snapshot.summary is None:
            return
        families = {
            "overdue_requests": "Share requests to the department unanswered after their reply deadline",
            "catalog_review_overdue": "The department's catalog entries not reviewed within a year",
            "not_updated_resources": "The department's resources without data changes within their update period",
            "open_disputes": "Open disputes about the department's resources",
            "grants_expiring": "Grants the department holds that end within 30 days",
            "catalog_updates_overdue": "The department's catalog-update items (drift, duties, law) past their deadline",
            "inbox": "Items waiting for the department in its inbox (GET /v1/inbox)",
            "webhook_failing": "Inbox notices the department's webhook has not taken after retries",
        }
        gauges = {k: _gauge(f"gdx_governance_{k}", doc, DEPT) for k, doc in families.items()}
        overdue = _gauge(
            "gdx_governance_overdue_items",
            "The department's share requests past a deadline, by deadline: reply, negotiation, explanation, decision",
            [*DEPT, "deadline"],
        )
        for dept in snapshot.summary.departments:
            for k, gauge in gauges.items():
                gauge.add_metric([dept.department], getattr(dept, k))
            for deadline in Overdue:
                overdue.add_metric([dept.department, deadline.value], dept.overdue.get(deadline.value, 0))
        yield from gauges.values()
        yield overdue

    def _reconciliation(self) -> Iterator[Any]:
        reconciler = self.monitor.reconciler
        labels = ["resource", "department", "copy"]
        bad = _gauge(
            "gdx_reconcile_mismatched_ranges",
            "Key ranges whose copy differs from the exchange's in two rounds in a row",
            labels,
        )
        rows = _gauge("gdx_reconcile_rows", "Rows in the department's copy at the last check", labels)
        central = _gauge("gdx_reconcile_central_rows", "Rows at the exchange (same fields) at the last check", labels)
        failed = _gauge("gdx_reconcile_failed", "1 when the last check of the copy failed", labels)
        checked = _gauge("gdx_reconcile_last_check_timestamp_seconds", "When the copy was last compared", labels)
        for pair, result in sorted(reconciler.results.items(), key=lambda item: (item[0].resource, item[0].department)):
            values = [pair.resource, pair.department, pair.copy]
            failed.add_metric(values, int(bool(result.error)))
            if result.checked_at is None:
                continue
            bad.add_metric(values, len(result.mismatched))
            rows.add_metric(values, result.rows or 0)
            central.add_metric(values, result.central_rows or 0)
            checked.add_metric(values, result.checked_at)
        rounds = CounterMetricFamily("gdx_reconcile_rounds", "Reconciliation rounds done")
        rounds.add_metric([], reconciler.rounds)
        yield from (bad, rows, central, failed, checked, rounds)

    def _self(self) -> Iterator[Any]:
        snapshot = self.monitor.snapshot
        cycles = CounterMetricFamily("gdx_monitor_cycles", "Probe cycles done")
        cycles.add_metric([], snapshot.cycles)
        yield cycles
        if snapshot.finished_at is not None:
            yield GaugeMetricFamily(
                "gdx_monitor_cycle_seconds", "How long the last probe cycle took", value=snapshot.seconds
            )
            yield GaugeMetricFamily(
                "gdx_monitor_last_cycle_timestamp_seconds",
                "When the last probe cycle ended",
                value=snapshot.finished_at,
            )
