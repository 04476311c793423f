"""Grafana dashboards, generated with grafana-foundation-sdk: the platform overview, and one
department in detail. `gdx monitor dashboards --out DIR` writes them as JSON (for Grafana's
provisioning, or the ConfigMaps the Pulumi program makes); the tests run every query."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import dashboard, prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import BigValueColorMode
from grafana_foundation_sdk.models.dashboard import DataSourceRef, Threshold, ThresholdsMode, VariableRefresh
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")


def _query(expr: str, legend: str = "", *, instant: bool = False) -> prometheus.Dataquery:
    query = prometheus.Dataquery().expr(expr).datasource(DATASOURCE)
    if legend:
        query = query.legend_format(legend)
    if instant:
        query = query.instant()
    return query


def _table_query(expr: str, ref: str) -> prometheus.Dataquery:
    return _query(expr, instant=True).format(PromQueryFormat.TABLE).ref_id(ref)


def _thresholds(*steps: tuple[float | None, str]) -> dashboard.ThresholdsConfig:
    return (
        dashboard.ThresholdsConfig()
        .mode(ThresholdsMode.ABSOLUTE)
        .steps([Threshold(value=v, color=c) for v, c in steps])
    )


def _stat(title: str, expr: str, unit: str, w: int, *steps: tuple[float | None, str]) -> stat.Panel:
    panel = stat.Panel().title(title).with_target(_query(expr, instant=True)).unit(unit).span(w).height(4)
    panel = panel.color_mode(BigValueColorMode.BACKGROUND)
    return panel.thresholds(_thresholds(*steps)) if steps else panel


def _series(title: str, unit: str, w: int, *queries: tuple[str, str]) -> timeseries.Panel:
    panel = timeseries.Panel().title(title).unit(unit).span(w).height(8)
    for expr, legend in queries:
        panel = panel.with_target(_query(expr, legend))
    return panel


def _variables(board: dashboard.Dashboard, *, department: bool) -> dashboard.Dashboard:
    board = board.with_variable(dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus"))
    if department:
        board = board.with_variable(
            dashboard.QueryVariable("department")
            .label("Department")
            .datasource(DATASOURCE)
            .query("label_values(gdx_target_info, department)")
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        )
    return board


def _board(title: str, uid: str, *, department: bool) -> dashboard.Dashboard:
    """A GDX dashboard's frame: tags, refresh, the last six hours, and its variables."""
    board = (
        dashboard.Dashboard(title)
        .uid(uid)
        .tags(["gdx", "generated"])
        .refresh("30s")
        .time("now-6h", "now")
        .timezone("browser")
    )
    return _variables(board, department=department)


def overview() -> dashboard.Dashboard:
    board = _board("GDX / Platform overview", "gdx-overview", department=False)
    green, red, amber = "green", "red", "#EAB839"
    return (
        board.with_row(dashboard.Row("At a glance"))
        .with_panel(_stat("Nodes up", "sum(gdx_node_up)", "none", 4, (None, red), (1, green)))
        .with_panel(_stat("Nodes down", "count(gdx_node_up == 0) or vector(0)", "none", 4, (None, green), (1, red)))
        .with_panel(_stat("Hops stalled", "platform:gdx_hops_stalled:count", "none", 4, (None, green), (1, red)))
        .with_panel(
            _stat(
                "Worst end-to-end lag",
                'max(gdx_lag_seconds{hop="subscriber"})',
                "s",
                4,
                (None, green),
                (300, amber),
                (600, red),
            )
        )
        .with_panel(_stat("Exchange reachable", "gdx_exchange_up", "bool", 4, (None, red), (1, green)))
        .with_panel(
            _stat(
                "Mismatched ranges",
                "sum(gdx_reconcile_mismatched_ranges) or vector(0)",
                "none",
                4,
                (None, green),
                (1, red),
            )
        )
        .with_row(dashboard.Row("Departments"))
        .with_panel(
            table.Panel()
            .title("Department health")
            .span(24)
            .height(9)
            .with_target(_table_query("gdx_node_up", "A"))
            .with_target(_table_query("department_hop:gdx_lag_seconds:max", "B"))
            .with_target(_table_query("gdx_node_certificate_expiry_seconds", "C"))
        )
        .with_panel(
            _series(
                "Lag at each hop, worst per department",
                "s",
                12,
                ("department_hop:gdx_lag_seconds:max", "{{department}} {{hop}}"),
            )
        )
        .with_panel(_series("Stalled hops", "none", 12, ("sum by (hop) (gdx_hop_stalled)", "{{hop}}")))
        .with_row(dashboard.Row("Governance"))
        .with_panel(
            _series(
                "Overdue items per department",
                "none",
                24,
                ("gdx_governance_overdue_requests", "requests {{department}}"),
                ("gdx_governance_catalog_review_overdue", "catalog review {{department}}"),
                ("gdx_governance_not_updated_resources", "not updated {{department}}"),
                ("gdx_governance_open_disputes", "disputes {{department}}"),
                (
                    'gdx_governance_overdue_items{deadline=~"negotiation|explanation|decision"}',
                    "{{deadline}} {{department}}",
                ),
                ("gdx_governance_catalog_updates_overdue", "catalog updates {{department}}"),
            )
        )
        .with_panel(
            _series(
                "Inbox and grants ending",
                "none",
                24,
                ("gdx_governance_inbox", "inbox {{department}}"),
                ("gdx_governance_grants_expiring", "grants ending within 30 days {{department}}"),
                ("gdx_governance_webhook_failing", "webhook failing {{department}}"),
            )
        )
    )


def department() -> dashboard.Dashboard:
    board = _board("GDX / Department", "gdx-department", department=True)
    d = 'department="$department"'
    green, red, amber = "green", "red", "#EAB839"
    return (
        board.with_row(dashboard.Row("Node"))
        .with_panel(_stat("Node up", f"gdx_node_up{{{d}}}", "bool", 4, (None, red), (1, green)))
        .with_panel(_stat("Agent healthy", f"gdx_node_agent_healthy{{{d}}}", "bool", 4, (None, red), (1, green)))
        .with_panel(_stat("Front-end DB up", f"gdx_node_frontend_db_up{{{d}}}", "bool", 4, (None, red), (1, green)))
        .with_panel(
            _stat(
                "Certificate",
                f"gdx_node_certificate_expiry_seconds{{{d}}}",
                "s",
                4,
                (None, red),
                (7 * 86400, amber),
                (30 * 86400, green),
            )
        )
        .with_panel(_stat("Clock offset", f"gdx_node_clock_offset_seconds{{{d}}}", "s", 4))
        .with_panel(
            _stat(
                "Disk free",
                f"department:gdx_node_disk_free:ratio{{{d}}}",
                "percentunit",
                4,
                (None, red),
                (0.1, amber),
                (0.25, green),
            )
        )
        .with_row(dashboard.Row("Lag"))
        .with_panel(
            _series(
                "Lag per hop and resource",
                "s",
                12,
                (f"gdx_lag_seconds{{{d}}}", "{{resource}} {{hop}}"),
                ('gdx_lag_seconds{hop="central",provider="$department"}', "{{resource}} central"),
            )
        )
        .with_panel(
            _series(
                "Added by each hop",
                "s",
                12,
                ('resource:gdx_hop_added_lag_seconds{provider="$department"}', "{{resource}} {{hop}}"),
            )
        )
        .with_panel(_series("Stalled", "none", 12, (f"gdx_hop_stalled{{{d}}}", "{{resource}} {{hop}}")))
        .with_panel(_series("Waiting for the exchange", "none", 12, (f"gdx_node_outbox_rows{{{d}}}", "{{resource}}")))
        .with_row(dashboard.Row("Data and governance"))
        .with_panel(
            _series(
                "Reconciliation: mismatched key ranges",
                "none",
                12,
                (f"gdx_reconcile_mismatched_ranges{{{d}}}", "{{resource}} {{copy}}"),
            )
        )
        .with_panel(
            _series(
                "Overdue items",
                "none",
                12,
                (f"gdx_governance_overdue_requests{{{d}}}", "share requests"),
                (f"gdx_governance_catalog_review_overdue{{{d}}}", "catalog review"),
                (f"gdx_governance_not_updated_resources{{{d}}}", "not updated"),
                (f"gdx_governance_open_disputes{{{d}}}", "open disputes"),
                (f"gdx_governance_overdue_items{{{d}}}", "{{deadline}} deadline"),
                (f"gdx_governance_catalog_updates_overdue{{{d}}}", "catalog updates"),
                (f"gdx_governance_inbox{{{d}}}", "inbox"),
            )
        )
        .with_panel(
            _series(
                "Probe duration",
                "s",
                12,
                (f"gdx_probe_duration_seconds{{{d}}}", "probe"),
            )
        )
    )


BOARDS = {"gdx-overview": overview, "gdx-department": department}


def render() -> dict[str, dict[str, Any]]:
    """Every dashboard as Grafana JSON, by file name stem."""
    encoder = JSONEncoder(sort_keys=True, indent=2)
    return {name: json.loads(encoder.encode(build().build())) for name, build in BOARDS.items()}


def write(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, board in render().items():
        path = out / f"{name}.json"
        path.write_text(json.dumps(board, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(path)
    return written


def queries(board: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expression) of every query in a dashboard, variables included."""
    found = [
        (p.get("title", ""), t["expr"]) for p in board.get("panels", []) for t in p.get("targets") or [] if "expr" in t
    ]
    for variable in (board.get("templating") or {}).get("list", []):
        if variable.get("type") == "query":
            query = variable.get("query")
            expr = query.get("query") if isinstance(query, dict) else query
            found.append((f"variable {variable['name']}", str(expr)))
    return found
