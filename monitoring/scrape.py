"""What Prometheus scrapes for GDX, in one place: the Kubernetes program, the local platform and
the tests all build their scrape configuration here, so job names match what the rules expect.
(The rules themselves: monitoring/rules.py.)"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gdx.inventory import Inventory

MONITOR_JOB = "gdx-monitor"  # GdxMonitorTargetAbsent looks for this job
EXCHANGE_JOB = "gdx-exchange"
NODE_EXPORTER_JOB = "gdx-node-exporter"


@dataclass(frozen=True)
class ClientTls:
    """The files Prometheus presents to the exchange (an operator certificate) and trusts it with."""

    ca_file: str
    cert_file: str
    key_file: str
    server_name: str | None = None


def scrape_configs(
    monitor: str,
    *,
    exchange: str | None = None,
    exchange_tls: ClientTls | None = None,
    inventory: Inventory | None = None,
    node_exporter_port: int = 9100,
    interval: str | None = None,
) -> list[dict[str, Any]]:
    """``monitor`` and ``exchange`` are HOST:PORT; node exporters come from the inventory."""
    every = {"scrape_interval": interval} if interval else {}
    jobs: list[dict[str, Any]] = [{"job_name": MONITOR_JOB, **every, "static_configs": [{"targets": [monitor]}]}]
    if exchange:
        if exchange_tls is None:
            raise ValueError("the exchange's /metrics needs an operator certificate: pass exchange_tls")
        tls = {"ca_file": exchange_tls.ca_file, "cert_file": exchange_tls.cert_file, "key_file": exchange_tls.key_file}
        if exchange_tls.server_name:
            tls["server_name"] = exchange_tls.server_name
        jobs.append(
            {
                "job_name": EXCHANGE_JOB,
                **every,
                "scheme": "https",
                "tls_config": tls,
                "static_configs": [{"targets": [exchange]}],
            }
        )
    if inventory is not None and inventory.nodes:
        jobs.append(
            {
                "job_name": NODE_EXPORTER_JOB,
                **every,
                "static_configs": [
                    {"targets": [f"{node.address}:{node_exporter_port}"], "labels": {"department": node.department_id}}
                    for node in inventory.nodes
                ],
            }
        )
    return jobs
