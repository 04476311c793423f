"""The monitor's HTTP side: the status page (/), its data (/api/status, /api/reconciliation),
/metrics for Prometheus and /healthz. The page is plain HTML and CSS that refreshes itself:
it works in any browser, with JavaScript off, on an administrator's locked-down desktop."""

from __future__ import annotations

import datetime as dt
from html import escape
from typing import Any

import orjson
from fastapi import FastAPI, Response
from fastapi.responses import HTMLResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from gdx import __version__
from monitoring.agent import Monitor
from monitoring.collector import MonitorCollector
from monitoring.status import HOPS, DepartmentRow, as_json, rows

STYLE = """
body { font-family: "Noto Sans CJK SC", "Microsoft YaHei", sans-serif; margin: 1.5rem; color: #1b1f23; }
h1 { font-size: 1.3rem; margin: 0 0 .3rem 0; } p.meta { color: #57606a; margin: 0 0 1rem 0; }
table { border-collapse: collapse; width: 100%; font-size: .9rem; }
th, td { border: 1px solid #d0d7de; padding: .35rem .5rem; text-align: left; vertical-align: top; }
th { background: #f6f8fa; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.ok td.state { background: #dafbe1; } tr.warning td.state { background: #fff8c5; }
tr.critical td.state { background: #ffebe9; } tr.unknown td.state { background: #eaeef2; }
td.bad { background: #ffebe9; font-weight: 600; } td.warn { background: #fff8c5; }
ul.problems { margin: 0; padding-left: 1.1rem; }
"""


def create_app(monitor: Monitor) -> FastAPI:
    registry = CollectorRegistry()
    registry.register(MonitorCollector(monitor))
    app = FastAPI(title="GDX monitoring agent", version=__version__, docs_url=None, redoc_url=None)

    @app.get("/", response_class=HTMLResponse)
    def status_page() -> HTMLResponse:
        return HTMLResponse(render(monitor))

    @app.get("/api/status")
    def status() -> Response:
        return _json(as_json(monitor))

    @app.get("/api/reconciliation")
    def reconciliation() -> Response:
        return _json(
            [
                {
                    "resource": p.resource,
                    "department": p.department,
                    "copy": p.copy,
                    "rows": r.rows,
                    "central_rows": r.central_rows,
                    "mismatched_ranges": r.mismatched,
                    "ranges": monitor.settings.reconcile_ranges,
                    "error": r.error,
                    "checked_at": r.checked_at,
                }
                for p, r in sorted(monitor.reconciler.results.items(), key=lambda i: (i[0].resource, i[0].department))
            ]
        )

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz")
    def healthz() -> Response:
        return _json({"status": "ok", "version": __version__, "cycles": monitor.snapshot.cycles})

    return app


def _json(body: Any) -> Response:
    return Response(orjson.dumps(body), media_type="application/json")


def render(monitor: Monitor) -> str:
    snapshot = monitor.snapshot
    when = "no cycle yet"
    if snapshot.finished_at is not None:
        moment = dt.datetime.fromtimestamp(snapshot.finished_at, dt.UTC).astimezone(dt.timezone(dt.timedelta(hours=8)))
        when = f"{moment:%Y-%m-%d %H:%M:%S} (UTC+8), cycle {snapshot.seconds:.2f} s"
    exchange = "reachable" if snapshot.summary is not None and not snapshot.exchange_error else "UNREACHABLE"
    table = "\n".join(_row(row) for row in rows(monitor))
    hop_heads = "".join(f"<th>lag {hop} (s)</th>" for hop in HOPS)
    refresh = max(5, int(monitor.settings.interval_s))
    return f"""<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="utf-8"><meta http-equiv="refresh" content="{refresh}">
<title>GDX platform status</title><style>{STYLE}</style></head>
<body><h1>GDX platform status 政务数据共享交换平台运行状态</h1>
<p class="meta">As of {escape(when)} · central exchange {exchange} · {len(monitor.targets)} departments</p>
<table><thead><tr><th>department</th><th>state</th><th>agent</th>{hop_heads}<th>stalled</th>
<th>certificate (days)</th><th>clock offset (s)</th><th>disk free</th><th>overdue requests</th>
<th>catalog review overdue</th><th>not updated</th><th>open disputes</th><th>inbox</th><th>mismatched ranges</th>
<th>quarantined rows</th><th>problems</th></tr></thead>
<tbody>
{table}
</tbody></table></body></html>
"""


def _cell(value: Any, css: str = "num") -> str:
    return f'<td class="{css}">{"–" if value is None else escape(str(value))}</td>'


def _row(row: DepartmentRow) -> str:
    cells = [
        f"<td>{escape(row.department)}<br><small>{escape(row.name)}</small></td>",
        f'<td class="state">{escape(row.state)}</td>',
        _cell(row.health, "bad" if row.state == "critical" and row.health != "ok" else ""),
    ]
    cells += [_cell(row.lag.get(hop)) for hop in HOPS]
    cells.append(_cell(", ".join(row.stalled) or "no", "bad" if row.stalled else ""))
    days = row.certificate_days
    cells.append(
        _cell(days, "num bad" if days is not None and days < 7 else "num warn" if days and days < 30 else "num")
    )
    cells.append(_cell(row.clock_offset_s))
    cells.append(_cell(None if row.disk_free_ratio is None else f"{row.disk_free_ratio:.0%}"))
    for count in (row.overdue_requests, row.catalog_review_overdue, row.not_updated_resources, row.open_disputes):
        cells.append(_cell(count, "num warn" if count else "num"))
    cells.append(_cell(row.inbox))
    cells.append(_cell(row.mismatched_ranges, "num bad" if row.mismatched_ranges else "num"))
    cells.append(_cell(row.quarantined_rows, "num warn" if row.quarantined_rows else "num"))
    problems = "".join(f"<li>{escape(p)}</li>" for p in row.problems)
    cells.append(f'<td><ul class="problems">{problems}</ul></td>' if problems else "<td></td>")
    return f'<tr class="{row.state}" data-department="{escape(row.department)}">{"".join(cells)}</tr>'
