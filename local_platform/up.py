"""`make up`, `make down`, `make status`: the local platform's life cycle.

`up` stands up, in order: the nodes' network with the departments' front-end nodes (systemd
containers) and business databases booting; the central exchange, its PostgreSQL and the monitoring
agent from the `local` stack's manifests under `podman kube play`; the business registers' sample
rows; the catalog entries and grants, made through the exchange's API with the departments' own
certificates; site.yml over SSH on every node; Prometheus and Alertmanager. It waits until the
consumer holds exactly what the providers hold, starts the load generator and prints the summary.
Run again, it keeps what runs and converges the rest.
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from gdx.inventory import load_inventory
from infra.render import render, stack_config, write
from local_platform import business, catalog, checks, inventory, load, nodes, podman, preflight, prometheus, watchdog
from local_platform.ansible import PlaybookError, run_playbook, tool_env
from local_platform.state import LocalState
from local_platform.topology import DEPARTMENTS

NEEDED_GIB = 8.0
RESIDENTS = 10_000
ENTITIES = 2_000
Progress = Callable[[str], None]


class PlatformError(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


# What a step can fail with; each message names the step and where to look.
FAILURES = (PlatformError, podman.LocalError, business.BusinessDbError, nodes.NodeError, PlaybookError,
            catalog.CatalogError)  # fmt: skip


def ports() -> dict[str, int]:
    config = stack_config("local")
    return {
        "exchange": int(config["exchange"]["port"]),
        "database": int(config["database"]["port"]),
        "monitor": int(config.get("monitoring", {}).get("port", 9480)),
        "prometheus": prometheus.PROMETHEUS_PORT,
        "alertmanager": prometheus.ALERTMANAGER_PORT,
    }


def up(progress: Progress = print, state: LocalState | None = None, *, residents: int = RESIDENTS,
       entities: int = ENTITIES) -> dict[str, Any]:  # fmt: skip
    state = state or LocalState()
    wanted = ports()
    running = _central_running()
    ours = wanted.values() if running else ()
    found = preflight.problems([(p, what) for what, p in wanted.items()], needed_gib=NEEDED_GIB, ours=ours)
    if not found:
        names = [d.host for d in DEPARTMENTS] + [d.business_db.container for d in DEPARTMENTS if d.business_db]
        found = nodes.conflicts(names)
    if found:
        raise PlatformError(found)
    started = time.monotonic()
    watchdog.stop(state)  # a rerun replays pods: nothing may start them again meanwhile
    made = state.ensure_pki()
    progress(f"PKI in {state.pki}" + (f" (made: {', '.join(made)})" if made else " (reused)"))
    inventory_file = inventory.write(state, exchange_port=wanted["exchange"])
    progress(f"inventory: {inventory_file} (vault password in {state.secret_file(inventory.VAULT_PASSWORD)})")

    # The containers boot while the central part starts.
    nodes.ensure_network()
    for dept in DEPARTMENTS:
        if dept.business_db:
            business.start(dept.business_db, state)
    fresh = nodes.start(DEPARTMENTS, state, progress=lambda line: None)
    _play_central(state, wanted, running, progress)

    seeded = {}
    for dept in DEPARTMENTS:
        if dept.business_db:
            business.wait_ready(dept.business_db, state)
            rows = residents if dept.business_db.kind == "postgresql" else entities
            seeded[dept.id] = business.seed(dept.business_db, state, rows, progress)
    catalog.share(f"https://127.0.0.1:{wanted['exchange']}", state.pki, progress)

    for dept in fresh:
        progress(f"node {dept.host} booted at {dept.address}")
    progress(f"site.yml over SSH on {len(DEPARTMENTS)} nodes (log: {state.logs / 'site.log'}) ...")
    step = time.monotonic()
    run_playbook(
        "site.yml", inventory_file, state.logs / "site.log", progress=progress,
        env=tool_env(ANSIBLE_VAULT_PASSWORD_FILE=str(state.secret_file(inventory.VAULT_PASSWORD))),
    )  # fmt: skip
    progress(f"site.yml done in {time.monotonic() - step:.0f} s")

    config = prometheus.write_config(
        state.prometheus,
        load_inventory(inventory_file, require_secrets=False),
        monitor=f"127.0.0.1:{wanted['monitor']}",
        exchange=f"127.0.0.1:{wanted['exchange']}",
        pki=state.pki,
    )
    prometheus.start(state.prometheus, config)
    load.stop(state)  # a rerun: the registers hold still while the consumer catches up
    equal = wait_consumer_equal(state, progress)
    load.start(state, residents=residents, entities=entities)
    progress("load generator started (a few changes a second in both registers)")
    watchdog.start(state)
    progress("watchdog started: a pod or container that stops is started again within seconds")
    podman.wait_for(
        lambda: podman.answers(f"http://127.0.0.1:{wanted['prometheus']}/-/ready"), 60, "Prometheus", progress
    )
    podman.wait_for(lambda: _status(wanted["monitor"]) is not None, 60, "the monitoring agent's first cycle", progress)
    progress(f"up in {time.monotonic() - started:.0f} s")
    return status(state, shared=equal)


def _play_central(state: LocalState, wanted: dict[str, int], running: bool, progress: Progress) -> None:
    rendering = render(
        "local",
        pki_dir=state.pki,
        inventory=state.inventory,
        secrets={"databasePassword": state.secret("database-password")},
    )
    write(rendering, state.manifests)
    files, _ = podman.write_phases(rendering.manifests, state.podman)
    progress(f"rendered the local stack: {len(rendering.manifests)} manifests in {state.manifests}")
    if running:
        progress("the central exchange runs already; replacing its pods with the rendered ones")
        podman.down(files)
    podman.play(
        files,
        database_port=wanted["database"],
        exchange_url=f"https://127.0.0.1:{wanted['exchange']}/",
        ca_file=state.pki / "ca.crt",
        monitor_url=f"http://127.0.0.1:{wanted['monitor']}/",
        progress=progress,
    )


def wait_consumer_equal(state: LocalState, progress: Progress, timeout: float = 600) -> list[checks.Comparison]:
    """Until every subscriber's table equals its provider's (granted fields, by digest)."""
    deadline = time.monotonic() + timeout
    said = ""
    while True:
        found = checks.compare(state)
        line = "; ".join(
            f"{c.consumer} holds {c.subscriber.rows if c.subscriber else 0:,}/{c.source.rows:,} of {c.resource}"
            for c in found
        )
        if all(c.equal for c in found):
            progress(f"data reached the consumer: {line} (equal by checksum)")
            return found
        if line != said:
            progress(f"waiting for the data: {line}")
            said = line
        if time.monotonic() > deadline:
            raise PlatformError(
                [
                    f"the consumer's tables did not match the providers' in {timeout:.0f} s: {line}; see "
                    "`make status` and the agents' logs (podman exec gdx-fe-wjw journalctl -u gdx-agent)"
                ]
            )
        time.sleep(2)


def down(progress: Progress = print, state: LocalState | None = None, *, purge: bool = False) -> None:
    """Remove what `up` made: the load generator, the nodes, business databases and their network,
    the central pods and database volume, Prometheus' processes and data, build/local. Images stay
    (and, unless ``purge``, the nodes' package caches), so the next `up` is quick."""
    state = state or LocalState()
    watchdog.stop(state)  # first: it would start again what is being removed
    load.stop(state)
    removed = nodes.remove_all(purge=purge)
    if removed:
        progress(f"removed the containers {', '.join(removed)} and the network")
    files = podman.read_phases(state.podman) if state.podman.exists() else []
    if files:
        podman.down(files, volumes=True)
        progress("removed the central exchange's pods and the database volume")
    prometheus.stop(state.prometheus)
    progress("stopped Prometheus and Alertmanager")
    if state.root.exists():
        shutil.rmtree(state.root)
        progress(f"removed {state.root}")


def status(state: LocalState | None = None, shared: list[checks.Comparison] | None = None) -> dict[str, Any]:
    """The summary: the monitor's view of each department, the shared tables compared (now, or
    ``shared`` as compared earlier), the URLs."""
    state = state or LocalState()
    wanted = ports()
    answer = _status(wanted["monitor"]) or {}
    try:
        compared = shared if shared is not None else checks.compare(state)
        tables = [
            {"resource": c.resource, "consumer": c.consumer, "provider rows": c.source.rows,
             "consumer rows": c.subscriber.rows if c.subscriber else None, "equal": c.equal}
            for c in compared
        ]  # fmt: skip
    except Exception as exc:  # a summary says what it cannot see rather than fail
        tables = [{"error": f"cannot compare the tables: {exc}"}]
    try:
        coordination: dict[str, Any] = catalog.governance(f"https://127.0.0.1:{wanted['exchange']}", state.pki)
    except Exception as exc:  # as above
        coordination = {"error": f"cannot read the exchange: {exc}"}
    return {
        "exchange": answer.get("exchange", "unknown (the monitor does not answer)"),
        "governance": coordination,
        "departments": [
            {"department": row["department"], "state": row["state"], "health": row["health"], "lag": row["lag"]}
            for row in answer.get("departments", [])
        ],
        "shared": tables,
        "urls": {
            "status page": f"http://127.0.0.1:{wanted['monitor']}/",
            "Prometheus": f"http://127.0.0.1:{wanted['prometheus']}/",
            "Alertmanager": f"http://127.0.0.1:{wanted['alertmanager']}/",
            "exchange API docs": f"https://127.0.0.1:{wanted['exchange']}/docs (client certificate: build/local/pki)",
        },
    }


def _central_running() -> bool:
    return podman.podman("pod", "exists", "gdx-exchange-pod-0", check=False).returncode == 0


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
