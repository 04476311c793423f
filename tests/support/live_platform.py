"""A small live platform for the monitoring agent's tests: a central exchange, a provider (public
security bureau, PostgreSQL business database) and a subscriber (health commission), their
agents, the monitoring agent and a real Prometheus with the project's rules."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import yaml

from monitoring import rules, scrape
from tests.support.exchange import RunningExchange
from tests.support.nodes import Agent, wait_for
from tests.support.postgres import PostgresServer, free_port
from tests.support.samples import PURPOSE
from tests.support.world import World

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"

# The business database holds every heartbeat commit for gdx_delay.seconds: a hop delayed by a
# known amount, as a slow synchronous standby would delay it.
SLOW_COMMIT = """
CREATE TABLE gdx_delay (seconds double precision NOT NULL);
INSERT INTO gdx_delay VALUES (0);
CREATE FUNCTION gdx_slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_sleep((SELECT seconds FROM gdx_delay)); RETURN NULL; END $$;
CREATE TRIGGER gdx_slow_commit AFTER INSERT OR UPDATE ON gdx_heartbeat
    FOR EACH ROW EXECUTE FUNCTION gdx_slow_commit();
"""


@dataclass
class Process:
    name: str
    command: list[str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(self.command, stdout=log, stderr=log, env=os.environ.copy())
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def log(self, tail: int = 30) -> str:
        lines = self.log_path.read_text(errors="replace").splitlines()[-tail:]
        return f"--- {self.name} ---\n" + "\n".join(lines)


@dataclass
class Platform:
    world: World
    code: str
    source: Any
    provider: Agent
    consumer: Agent
    monitor_url: str
    prometheus_url: str
    inventory: Path
    processes: list[Process] = field(default_factory=list)

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = httpx.get(f"{self.monitor_url}/api/status", timeout=10, trust_env=False).json()
        return body

    def row(self, department: str) -> dict[str, Any]:
        return next(r for r in self.status()["departments"] if r["department"] == department)

    def metrics(self) -> str:
        return httpx.get(f"{self.monitor_url}/metrics", timeout=10, trust_env=False).text

    def metric(self, name: str, **labels: str) -> float | None:
        for line in self.metrics().splitlines():
            series, _, value = line.rpartition(" ")
            if series.split("{")[0] == name and all(f'{k}="{v}"' in series for k, v in labels.items()):
                return float(value)
        return None

    def prometheus(self, path: str, **params: Any) -> Any:
        response = httpx.get(f"{self.prometheus_url}{path}", params=params, timeout=10, trust_env=False)
        return response.json()

    def firing(self) -> set[tuple[str, str]]:
        alerts = self.prometheus("/api/v1/alerts")["data"]["alerts"]
        return {(a["labels"]["alertname"], a["labels"].get("department", "")) for a in alerts if a["state"] == "firing"}

    def logs(self) -> str:
        return "\n".join([self.world.logs(), *(p.log() for p in self.processes)])

    def stop(self) -> None:
        for process in self.processes:
            process.stop()
        self.world.stop()


def write_inventory(path: Path, central: RunningExchange, code: str, provider: Agent, consumer: Agent) -> Path:
    hosts = {
        "fe-gaj": {
            "ansible_host": "127.0.0.1",
            "gdx_agent_port": provider.health_port,
            "gdx_department": {"id": "zjg-gaj", "name": "张家港市公安局", "jurisdiction": "zhangjiagang"},
            "gdx_publishes": [{"resource": code, "table": "population", "change_column": "updated_at"}],
        },
        "fe-wjw": {
            "ansible_host": "127.0.0.2",  # another loopback address: two nodes, one machine
            "gdx_agent_port": consumer.health_port,
            "gdx_department": {"id": "zjg-wjw", "name": "张家港市卫生健康委员会", "jurisdiction": "zhangjiagang"},
            "gdx_subscribes": [{"resource": code, "purpose": PURPOSE, "table": "gaj_population"}],
        },
    }
    inventory = {
        "all": {
            "vars": {"gdx_exchange_url": central.url, "gdx_pki_dir": str(central.pki)},
            "children": {"gdx_front_end_nodes": {"hosts": hosts}},
        }
    }
    path.write_text(yaml.safe_dump(inventory, allow_unicode=True), encoding="utf-8")
    return path


def prometheus_config(path: Path, monitor_port: int) -> Path:
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules.RULES_DIR / name) for name in rules.RULE_FILES],
        "scrape_configs": scrape.scrape_configs(f"127.0.0.1:{monitor_port}"),
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def start_platform(pg: PostgresServer, central: RunningExchange, workdir: Path) -> Platform:
    """Start the provider's and the subscriber's agents, the monitor and Prometheus; wait until they answer."""
    world = World(pg, central, workdir)
    code, source, provider = world.population(compare_interval_s=1)
    with psycopg.connect(source.url) as conn:
        conn.execute(SLOW_COMMIT.encode())
    world.subscribe("zjg-wjw", code)
    # The subscriber's agent listens on 127.0.0.2: the monitor tells the nodes apart by address.
    consumer = world.agent(
        "zjg-wjw",
        subscribes=[{"resource": code, "purpose": PURPOSE, "table": "gaj_population"}],
        health_host="127.0.0.2",
    )
    source.insert(range(400))
    provider.start().wait_ready()
    consumer.start().wait_ready()

    inventory = write_inventory(workdir / "inventory.yml", central, code, provider, consumer)
    monitor_port, prometheus_port = free_port(), free_port()
    monitor = Process(
        "monitor",
        [
            sys.executable, "-m", "gdx.cli", "monitor", "run", "-i", str(inventory), "--identity", "carol",
            "--listen", f"127.0.0.1:{monitor_port}", "--interval", "1", "--timeout", "2",
            "--heartbeat-interval", "1", "--stall-after", "8", "--reconcile-interval", "2", "--reconcile-ranges", "16",
        ],
        workdir / "monitor.log",
    ).start()  # fmt: skip
    prometheus = Process(
        "prometheus",
        [
            "prometheus", f"--config.file={prometheus_config(workdir / 'prometheus.yml', monitor_port)}",
            f"--storage.tsdb.path={workdir / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prometheus_port}",
        ],
        workdir / "prometheus.log",
    ).start()  # fmt: skip
    running = Platform(
        world, code, source, provider, consumer,
        f"http://127.0.0.1:{monitor_port}", f"http://127.0.0.1:{prometheus_port}", inventory, [monitor, prometheus],
    )  # fmt: skip

    def ready() -> bool:
        try:
            running.status()
            return running.prometheus("/api/v1/status/runtimeinfo")["status"] == "success"
        except httpx.HTTPError:
            return False

    wait_for(ready, 30, "the monitor and Prometheus", on_timeout=running.logs)
    return running


def wait(condition: Any, timeout: float, what: str, platform: Platform) -> None:
    wait_for(condition, timeout, what, on_timeout=platform.logs)
