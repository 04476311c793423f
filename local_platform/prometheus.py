"""Prometheus and Alertmanager for the local platform: Debian's binaries as background processes,
configured from the same rules and scrape jobs as everywhere (monitoring/)."""

from __future__ import annotations

from pathlib import Path

import yaml

from gdx.inventory import Inventory
from local_platform import processes
from monitoring import rules, scrape

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS_PORT = 9090
ALERTMANAGER_PORT = 9093


def write_config(workdir: Path, inventory: Inventory, *, monitor: str, exchange: str, pki: Path) -> Path:
    config = {
        "global": {"scrape_interval": "5s", "evaluation_interval": "5s"},
        "rule_files": [str(rules.RULES_DIR / name) for name in rules.RULE_FILES],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{ALERTMANAGER_PORT}"]}]}]},
        "scrape_configs": scrape.scrape_configs(
            monitor,
            exchange=exchange,
            exchange_tls=scrape.ClientTls(
                ca_file=str(pki / "ca.crt"), cert_file=str(pki / "prometheus.crt"), key_file=str(pki / "prometheus.key")
            ),
            inventory=inventory,
        ),
    }
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def start(workdir: Path, config: Path) -> None:
    """Start both (restarting them when they run already, so a changed config is read)."""
    stop(workdir)
    processes.spawn(
        workdir / "prometheus.pid",
        workdir / "prometheus.log",
        [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{PROMETHEUS_PORT}",
            "--storage.tsdb.retention.time=7d",
        ],
    )
    processes.spawn(
        workdir / "alertmanager.pid",
        workdir / "alertmanager.log",
        [
            "prometheus-alertmanager",
            f"--config.file={ROOT / 'monitoring' / 'alertmanager' / 'alertmanager.yml'}",
            f"--storage.path={workdir / 'alertmanager'}",
            f"--web.listen-address=127.0.0.1:{ALERTMANAGER_PORT}",
            "--cluster.listen-address=",
        ],
    )


def stop(workdir: Path) -> None:
    for name in ("prometheus", "alertmanager"):
        processes.stop(workdir / f"{name}.pid")


def running(workdir: Path) -> bool:
    return processes.running(workdir / "prometheus.pid")
