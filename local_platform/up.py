"""`make up`, `make down`, `make status`: the local platform's life cycle.

Built so far: the central part — the exchange, its PostgreSQL and the monitoring agent from the
`local` stack's manifests under `podman kube play`, and Prometheus with Alertmanager — with the
preflight, progress and the summary. The departments' front-end nodes (systemd containers
provisioned by site.yml) and their business databases are the next step; until then the summary
shows their nodes as not answering.
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from gdx.inventory import load_inventory
from infra import local
from infra.render import render, stack_config, write
from local_platform import preflight, prometheus
from local_platform.state import DEPARTMENTS, LocalState

NETWORK_PREFIX = "10.231.47"  # the nodes' podman network (made with the nodes); podman itself allocates 10.88-10.89
NEEDED_GIB = 6.0
Progress = Callable[[str], None]


class PlatformError(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def ports() -> dict[str, int]:
    config = stack_config("local")
    return {
        "exchange": int(config["exchange"]["port"]),
        "database": int(config["database"]["port"]),
        "monitor": int(config.get("monitoring", {}).get("port", 9480)),
        "prometheus": prometheus.PROMETHEUS_PORT,
        "alertmanager": prometheus.ALERTMANAGER_PORT,
    }


def write_inventory(state: LocalState) -> Path:
    """The local inventory: three departments, a population table published unconditionally, a
    legal-entity table published on condition, and a consumer of both."""
    hosts: dict[str, Any] = {}
    for index, (dept, (name, host)) in enumerate(DEPARTMENTS.items(), start=11):
        hosts[host] = {
            "ansible_host": f"{NETWORK_PREFIX}.{index}",
            "gdx_department": {"id": dept, "name": name, "jurisdiction": "zhangjiagang"},
        }
    hosts["gdx-fe-gaj"]["gdx_publishes"] = [
        {"resource": "zjg-gaj.population", "table": "public.population", "change_column": "updated_at"}
    ]
    hosts["gdx-fe-scjgj"]["gdx_publishes"] = [
        {"resource": "zjg-scjgj.legal_entity", "table": "legal_entity", "change_column": "updated_at"}
    ]
    hosts["gdx-fe-wjw"]["gdx_subscribes"] = [
        {"resource": "zjg-gaj.population", "purpose": "城乡居民医保参保登记核验"},
        {"resource": "zjg-scjgj.legal_entity", "purpose": "医疗机构法人信息核验"},
    ]
    inventory = {
        "all": {
            "vars": {
                "gdx_exchange_url": f"https://{NETWORK_PREFIX}.1:{ports()['exchange']}",
                "gdx_pki_dir": str(state.pki),
            },
            "children": {"gdx_front_end_nodes": {"hosts": hosts}},
        }
    }
    state.inventory.parent.mkdir(parents=True, exist_ok=True)
    state.inventory.write_text(yaml.safe_dump(inventory, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return state.inventory


def up(progress: Progress = print, state: LocalState | None = None) -> dict[str, Any]:
    state = state or LocalState()
    wanted = ports()
    running = _central_running()
    ours = wanted.values() if running else ()
    found = preflight.problems([(p, what) for what, p in wanted.items()], needed_gib=NEEDED_GIB, ours=ours)
    if found:
        raise PlatformError(found)
    started = time.monotonic()
    made = state.ensure_pki()
    progress(f"PKI in {state.pki}" + (f" (made: {', '.join(made)})" if made else " (reused)"))
    inventory = write_inventory(state)
    rendering = render(
        "local",
        pki_dir=state.pki,
        inventory=inventory,
        secrets={"databasePassword": state.secret("database-password")},
    )
    write(rendering, state.manifests)
    files, _ = local.write_phases(rendering.manifests, state.podman)
    progress(f"rendered the local stack: {len(rendering.manifests)} manifests in {state.manifests}")
    if running:
        progress("the central exchange runs already; replacing its pods with the rendered ones")
        local.down(files)
    local.play(
        files,
        database_port=wanted["database"],
        exchange_url=f"https://127.0.0.1:{wanted['exchange']}/",
        ca_file=state.pki / "ca.crt",
        progress=progress,
    )
    config = prometheus.write_config(
        state.prometheus,
        load_inventory(inventory, require_secrets=False),
        monitor=f"127.0.0.1:{wanted['monitor']}",
        exchange=f"127.0.0.1:{wanted['exchange']}",
        pki=state.pki,
    )
    prometheus.start(state.prometheus, config)
    local.wait_for(
        lambda: _get(f"http://127.0.0.1:{wanted['prometheus']}/-/ready") is not None, 60, "Prometheus", progress
    )
    local.wait_for(lambda: _status(wanted["monitor"]) is not None, 60, "the monitoring agent's first cycle", progress)
    progress(f"up in {time.monotonic() - started:.0f} s")
    return status()


def down(progress: Progress = print, state: LocalState | None = None) -> None:
    """Remove what `up` made: pods, the database volume, Prometheus' processes and data, build/local."""
    state = state or LocalState()
    files = local.read_phases(state.podman) if state.podman.exists() else []
    if files:
        local.down(files, volumes=True)
        progress("removed the central exchange's pods and the database volume")
    prometheus.stop(state.prometheus)
    progress("stopped Prometheus and Alertmanager")
    if state.root.exists():
        shutil.rmtree(state.root)
        progress(f"removed {state.root}")


def status() -> dict[str, Any]:
    wanted = ports()
    answer = _status(wanted["monitor"]) or {}
    return {
        "exchange": answer.get("exchange", "unknown (the monitor does not answer)"),
        "departments": [
            {"department": row["department"], "state": row["state"], "health": row["health"], "lag": row["lag"]}
            for row in answer.get("departments", [])
        ],
        "urls": {
            "status page": f"http://127.0.0.1:{wanted['monitor']}/",
            "Prometheus": f"http://127.0.0.1:{wanted['prometheus']}/",
            "Alertmanager": f"http://127.0.0.1:{wanted['alertmanager']}/",
            "exchange API docs": f"https://127.0.0.1:{wanted['exchange']}/docs (client certificate: build/local/pki)",
        },
    }


def _central_running() -> bool:
    return local.podman("pod", "exists", "gdx-exchange-pod-0", check=False).returncode == 0


def _get(url: str) -> bytes | None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=3) as answer:
            return bytes(answer.read())
    except OSError:
        return None


def _status(port: int) -> dict[str, Any] | None:
    body = _get(f"http://127.0.0.1:{port}/api/status")
    if body is None:
        return None
    answer = json.loads(body)
    return answer if answer.get("as_of") else None
