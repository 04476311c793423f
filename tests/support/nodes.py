"""Front-end node agents for tests and benchmarks: real `gdx node run` processes, real
business databases, and the checksums that say whether a subscriber holds what the
provider's source table holds."""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import yaml

from gdx.workdays import BEIJING
from tests.support.exchange import RunningExchange
from tests.support.postgres import free_port

POPULATION_TABLE = """
CREATE TABLE {table} (
    id_number text PRIMARY KEY, name text NOT NULL, gender text, birth_date date, address text,
    household_size integer, income double precision, is_resident boolean,
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp(), remark text
);
CREATE INDEX ON {table} (updated_at, id_number);
CREATE FUNCTION {table}_touch() RETURNS trigger LANGUAGE plpgsql AS
    $$ BEGIN NEW.updated_at := clock_timestamp(); RETURN NEW; END $$;
CREATE TRIGGER {table}_touch BEFORE INSERT OR UPDATE ON {table} FOR EACH ROW EXECUTE FUNCTION {table}_touch();
"""
POPULATION_COLUMNS = [
    "id_number", "name", "gender", "birth_date", "address", "household_size", "income", "is_resident",
    "updated_at", "remark",
]  # fmt: skip


def wait_for(condition: Callable[[], bool], timeout: float, what: str, *, on_timeout: Callable[[], str] = str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{on_timeout()}")


def normalise(value: Any) -> Any:
    """One form for a value whichever database it came from."""
    if isinstance(value, dt.datetime):
        value = value.replace(tzinfo=BEIJING) if value.tzinfo is None else value
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | float):
        return round(float(value), 6)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return value


def checksum(rows: Iterable[Sequence[Any]]) -> tuple[int, str]:
    """(row count, digest) over rows sorted by their first column, the key."""
    normalised = sorted((tuple(normalise(v) for v in row) for row in rows), key=lambda r: str(r[0]))
    digest = hashlib.sha256(repr(normalised).encode()).hexdigest()
    return len(normalised), digest


def pg_rows(url: str, table: str, columns: Sequence[str]) -> list[tuple[Any, ...]]:
    cols = ", ".join(f'"{c}"' for c in columns)
    with psycopg.connect(url) as conn:
        return conn.execute(f"SELECT {cols} FROM {table}").fetchall()


def pg_table_exists(url: str, table: str) -> bool:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone() == (True,)


@dataclass
class Agent:
    """One `gdx node run` process with its config file and log."""

    name: str
    config_path: Path
    health_port: int
    log_path: Path
    front_end_db: str
    ca: Path | None = None  # the health port serves TLS with the department's certificate
    health_host: str = "127.0.0.1"
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    env: dict[str, str] = field(default_factory=dict)

    def start(self) -> Agent:
        self.starts += 1
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gdx.cli", "node", "run", "--config", str(self.config_path)],
            stdout=log,
            stderr=log,
            env={**os.environ, **self.env},
        )
        return self

    def wait_ready(self, timeout: float = 30) -> Agent:
        """Until /healthz answers (the agent is up; its hops may still be starting)."""

        def answers() -> bool:
            try:
                self.health()
            except httpx.HTTPError:
                assert self.running(), f"{self.name} exited with {self.process and self.process.poll()}\n{self.log()}"
                return False
            return True

        wait_for(answers, timeout, f"{self.name}'s /healthz", on_timeout=self.log)
        return self

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self, timeout: float = 40) -> int:
        """SIGTERM and wait; returns the exit status."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def health_url(self) -> str:
        return f"{'https' if self.ca else 'http'}://{self.health_host}:{self.health_port}"

    def _get(self, path: str) -> httpx.Response:
        verify: ssl.SSLContext | bool = False
        if self.ca is not None:
            verify = ssl.create_default_context(cafile=self.ca)
            verify.check_hostname = False  # the certificate names the department, not the address
        return httpx.get(self.health_url + path, timeout=5, trust_env=False, verify=verify)

    def health(self) -> dict[str, Any]:
        body: dict[str, Any] = self._get("/healthz").json()
        return body

    def metrics(self) -> str:
        return self._get("/metrics").text

    def log(self, tail: int = 40) -> str:
        lines = self.log_path.read_text(errors="replace").splitlines()
        shown = [line if len(line) < 600 else line[:600] + " ..." for line in lines[-tail:]]
        return f"--- {self.name} log (last {tail} lines) ---\n" + "\n".join(shown)

    def wait_cycles(self, hop: str, resource: str, cycles: int = 2, timeout: float = 30) -> None:
        """Until the hop has completed ``cycles`` more cycles (its last-success time moved that often):
        what a test waits for to show that something did not happen, instead of a fixed sleep."""
        seen: list[float] = []

        def moved() -> bool:
            value = self.metric("gdx_node_last_success_timestamp_seconds", hop=hop, resource=resource)
            if value is not None and (not seen or value > seen[-1]):
                seen.append(value)
            return len(seen) > cycles

        wait_for(moved, timeout, f"{cycles} more {hop} cycles of {resource}", on_timeout=self.log)

    def metric(self, name: str, **labels: str) -> float | None:
        wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in self.metrics().splitlines():
            if line.startswith(f"{name}{{") or line.startswith(f"{name} "):
                series, _, value = line.rpartition(" ")
                found = series[len(name) :].strip("{}")
                if sorted(found.split(",")) == sorted(wanted.split(",")) or (not wanted and not found):
                    return float(value)
        return None


def write_agent(
    workdir: Path,
    department: str,
    exchange: RunningExchange,
    front_end_db: str,
    *,
    business_db: dict[str, Any] | None = None,
    publishes: list[dict[str, Any]] | None = None,
    subscribes: list[dict[str, Any]] | None = None,
    health_host: str = "127.0.0.1",
    **settings: Any,
) -> Agent:
    port = free_port()
    config = {
        "department": department,
        "exchange": {
            "url": exchange.url,
            "ca": str(exchange.pki / "ca.crt"),
            "cert": str(exchange.pki / f"{department}.crt"),
            "key": str(exchange.pki / f"{department}.key"),
            "timeout_s": 10,
        },
        "front_end_db": front_end_db,
        "listen": {"host": health_host, "port": port},
        "poll_interval_s": 0.2,
        "heartbeat_interval_s": 1,
        "max_backoff_s": 2,
        **settings,
    }
    if business_db is not None:
        config["business_db"] = business_db
    config["publishes"] = publishes or []
    config["subscribes"] = subscribes or []
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"{department}.yml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return Agent(
        department,
        path,
        port,
        workdir / f"{department}.log",
        front_end_db,
        ca=exchange.pki / "ca.crt",
        health_host=health_host,
    )


def exchange_client(exchange: RunningExchange, name: str) -> httpx.Client:
    context = ssl.create_default_context(cafile=exchange.pki / "ca.crt")
    context.load_cert_chain(exchange.pki / f"{name}.crt", exchange.pki / f"{name}.key")
    return httpx.Client(base_url=exchange.url, verify=context, timeout=30, trust_env=False)
