"""A running central exchange for tests and benchmarks: real PostgreSQL, real mutual TLS."""

from __future__ import annotations

import os
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from exchange.migrate import migrate
from exchange.registry import sync_from_inventory
from exchange.server import uvicorn_config
from exchange.settings import Settings
from gdx.inventory import load_inventory
from gdx.pki import Role, init_ca, issue
from tests.support.postgres import PostgresServer, free_port

INVENTORY = """\
all:
  vars:
    gdx_exchange_url: https://127.0.0.1:8443
  children:
    gdx_front_end_nodes:
      hosts:
{hosts}
"""
HOST = """\
        fe-{id}:
          ansible_host: 192.0.2.{n}
          gdx_department: {{id: {id}, name: "{name}", jurisdiction: {jurisdiction}}}
"""

DEPARTMENTS = [
    ("zjg-gaj", "张家港市公安局", "zhangjiagang"),
    ("zjg-scjgj", "张家港市市场监督管理局", "zhangjiagang"),
    ("zjg-wjw", "张家港市卫生健康委员会", "zhangjiagang"),
    ("nx-gat", "宁夏回族自治区公安厅", "ningxia"),
    ("hb-gat", "河北省公安厅", "hebei"),
    ("ws-gaj", "乌审旗公安局", "wushen"),
]
STAFF = [("alice", Role.ADMIN), ("bob", Role.AUDITOR), ("carol", Role.OPERATOR), ("ingress-1", Role.INGRESS)]


def write_inventory(path: Path, departments: list[tuple[str, str, str]]) -> Path:
    hosts = "".join(HOST.format(id=i, name=n, jurisdiction=j, n=k + 10) for k, (i, n, j) in enumerate(departments))
    path.write_text(INVENTORY.format(hosts=hosts), encoding="utf-8")
    return path


@dataclass
class RunningExchange:
    url: str
    database_url: str
    pki: Path
    server: uvicorn.Server
    thread: threading.Thread
    settings: Settings
    port: int
    listen: str = "127.0.0.1"
    clients: dict[str, httpx.Client] = field(default_factory=dict)

    def client(self, name: str, **kwargs: Any) -> httpx.Client:
        """An HTTPS client presenting ``name``'s certificate (None: no certificate)."""
        if name not in self.clients or kwargs:
            context = ssl.create_default_context(cafile=self.pki / "ca.crt")
            context.load_cert_chain(self.pki / f"{name}.crt", self.pki / f"{name}.key")
            client = httpx.Client(base_url=self.url, verify=context, timeout=30, **kwargs)
            if kwargs:
                return client
            self.clients[name] = client
        return self.clients[name]

    def anonymous(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, verify=ssl.create_default_context(cafile=self.pki / "ca.crt"))

    def stop(self) -> None:
        for client in self.clients.values():
            client.close()
        self.clients.clear()
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def start_again(self) -> None:
        """Serve again on the same port after stop() (an outage that ends)."""
        self.server, self.thread = _serve(self.settings, self.port, self.listen)


def serve_env(database_url: str, pki: Path, port: int, **settings: str) -> dict[str, str]:
    """The environment of a `gdx exchange serve` process on 127.0.0.1:PORT with the PKI's server
    certificate (make_pki), plus GDX_* ``settings``."""
    return {
        **os.environ,
        "GDX_DATABASE_URL": database_url,
        "GDX_TLS_CERT": str(pki / "exchange.crt"),
        "GDX_TLS_KEY": str(pki / "exchange.key"),
        "GDX_CA_CERT": str(pki / "ca.crt"),
        "GDX_HOST": "127.0.0.1",
        "GDX_PORT": str(port),
        **settings,
    }


def make_pki(pki: Path, server_names: list[str] | None = None) -> None:
    init_ca(pki)
    issue(pki, "exchange", server_names=["127.0.0.1", "localhost", *(server_names or [])])
    for dept_id, _, _ in DEPARTMENTS:
        issue(pki, dept_id)
    issue(pki, "ghost")  # a valid certificate for a department the registry does not list
    for name, role in STAFF:
        issue(pki, name, role=role)


def start_exchange(
    pg: PostgresServer,
    workdir: Path,
    dbname: str = "exchange",
    pool_max: int = 10,
    *,
    listen: str = "127.0.0.1",
    server_names: list[str] | None = None,
    **limits: Any,
) -> RunningExchange:
    """An exchange with its own CA; ``listen``/``server_names`` let containers reach it too;
    ``limits`` are Settings' request limits (max_body_bytes, body_idle_s, body_total_s)."""
    pki = workdir / "pki"
    make_pki(pki, server_names)
    database_url = pg.create_database(dbname)
    migrate(database_url)
    inventory = write_inventory(workdir / "inventory.yml", DEPARTMENTS)
    sync_from_inventory(database_url, load_inventory(inventory, require_secrets=False))
    settings = Settings(
        database_url=database_url,
        tls_cert=pki / "exchange.crt",
        tls_key=pki / "exchange.key",
        ca_cert=pki / "ca.crt",
        pool_max=pool_max,
        # Tests post inbox notices themselves (exchange.inbox_webhooks.notify), when they want them.
        inbox_notify_every_s=3600,
        **limits,
    )
    port = free_port()
    server, thread = _serve(settings, port, listen)
    return RunningExchange(f"https://127.0.0.1:{port}", database_url, pki, server, thread, settings, port, listen)


def _serve(settings: Settings, port: int, listen: str = "127.0.0.1") -> tuple[uvicorn.Server, threading.Thread]:
    server = uvicorn.Server(uvicorn_config(settings, listen, port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the exchange did not start")
        time.sleep(0.05)
    return server, thread
