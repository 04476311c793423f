"""The status page's judgement of one department, from what its node's /healthz said."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gdx.pki import Role, init_ca, issue
from monitoring.agent import Monitor, Snapshot
from monitoring.collector import MonitorCollector
from monitoring.probes import ProbeResult
from monitoring.settings import Settings, Target
from monitoring.status import rows
from monitoring.web import render


def _monitor(tmp_path: Path, health: dict[str, Any]) -> Monitor:
    init_ca(tmp_path)
    cert, key = issue(tmp_path, "monitor", role=Role.OPERATOR)
    target = Target(
        "zjg-gaj", "张家港市公安局", "zhangjiagang", "fe-gaj", "192.0.2.10", 9470, ("zjg-gaj.population",), ()
    )
    monitor = Monitor(Settings((target,), "https://127.0.0.1:8443", tmp_path / "ca.crt", cert, key))
    probe = ProbeResult("zjg-gaj", reachable=True, tls_ok=True, answered=True, health={"status": "ok", **health})
    monitor.snapshot = Snapshot(probes={"zjg-gaj": probe}, finished_at=0.0, cycles=1)
    return monitor


def test_quarantined_rows_and_rows_ahead_of_the_clock_need_attention(tmp_path: Path) -> None:
    monitor = _monitor(
        tmp_path,
        {"quarantined": {"zjg-gaj.population": 3}, "rows_ahead_of_source_clock": {"zjg-gaj.population": 1}},
    )
    (row,) = rows(monitor)
    assert (row.state, row.quarantined_rows, row.rows_ahead) == ("warning", 3, 1)
    assert row.problems == [
        "3 source rows quarantined at the node",
        "1 source rows stamped ahead of the business database's clock",
    ]
    page = render(monitor)
    assert "<th>quarantined rows</th>" in page
    assert '<td class="num warn">3</td>' in page


def test_a_node_with_nothing_held_back_is_ok(tmp_path: Path) -> None:
    (row,) = rows(_monitor(tmp_path, {"quarantined": {}, "rows_ahead_of_source_clock": {"zjg-gaj.population": 0}}))
    assert (row.state, row.quarantined_rows, row.problems) == ("ok", 0, [])


def test_the_agents_start_time_is_exported_for_the_crash_loop_alert(tmp_path: Path) -> None:
    monitor = _monitor(tmp_path, {"started": 1_765_000_000.5})
    families = {family.name: family for family in MonitorCollector(monitor).collect()}
    (sample,) = families["gdx_node_agent_start_time_seconds"].samples
    assert (sample.labels, sample.value) == ({"department": "zjg-gaj"}, 1_765_000_000.5)


def test_a_replication_slot_that_lost_wal_or_holds_back_much_is_shown_and_exported(tmp_path: Path) -> None:
    capture = {
        "zjg-gaj.population": {"wal_status": "lost", "retained_bytes": 0, "behind_bytes": 0},
        "zjg-gaj.household": {"wal_status": "extended", "retained_bytes": 5 * 2**30, "behind_bytes": 2**20},
    }
    monitor = _monitor(tmp_path, {"capture": capture})
    (row,) = rows(monitor)
    assert row.state == "critical"
    assert row.problems == [
        "log capture lost WAL (load again): zjg-gaj.population",
        "replication slots hold back 5.0 GiB of the business database's WAL",
    ]
    families = {family.name: family for family in MonitorCollector(monitor).collect()}
    lost = {s.labels["resource"]: s.value for s in families["gdx_node_capture_slot_lost"].samples}
    retained = {s.labels["resource"]: s.value for s in families["gdx_node_capture_retained_bytes"].samples}
    assert lost == {"zjg-gaj.population": 1, "zjg-gaj.household": 0}
    assert retained == {"zjg-gaj.population": 0, "zjg-gaj.household": 5 * 2**30}
