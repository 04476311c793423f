"""`gdx exchange serve --workers N`: several processes behind one port, as the command runs in production."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from exchange.migrate import migrate
from exchange.registry import sync_from_inventory
from gdx.inventory import load_inventory
from tests.support.exchange import DEPARTMENTS, make_pki, serve_env, write_inventory
from tests.support.postgres import PostgresServer, free_port
from tests.support.samples import batch, population_entry, unique_code, upsert


def _workers_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == pid and b"spawn_main" in cmdline:
            found.append(int(entry.name))
    return found


def _client(pki: Path, name: str, base: str) -> httpx.Client:
    context = ssl.create_default_context(cafile=pki / "ca.crt")
    context.load_cert_chain(pki / f"{name}.crt", pki / f"{name}.key")
    return httpx.Client(base_url=base, verify=context, timeout=30)


@pytest.mark.slow  # a server of two processes, started and stopped
def test_two_workers_share_the_port_and_each_applies_batches(pg: PostgresServer, tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    make_pki(pki)
    url = pg.create_database("exchange_workers")
    migrate(url)
    sync_from_inventory(
        url, load_inventory(write_inventory(tmp_path / "inventory.yml", DEPARTMENTS), require_secrets=False)
    )
    port = free_port()
    figures = tmp_path / "metrics"
    figures.mkdir()
    (figures / "counter_1.db").write_bytes(b"")  # an earlier run's: must not count
    env = serve_env(url, pki, port, PROMETHEUS_MULTIPROC_DIR=str(figures))
    server = subprocess.Popen(
        [sys.executable, "-m", "gdx.cli", "exchange", "serve", "--workers", "2"],
        env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    base = f"https://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/readyz", verify=ssl.create_default_context(cafile=pki / "ca.crt")).is_success:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            assert time.monotonic() < deadline, "the exchange did not become ready"
            time.sleep(0.3)
        assert len(_workers_of(server.pid)) == 2

        code = unique_code("zjg-gaj")
        with _client(pki, "zjg-gaj", base) as gaj:
            assert gaj.post("/v1/resources", json=population_entry(code)).status_code in (200, 201)
        # Fresh connections, so that the kernel hands them to both workers; each worker's
        # pooled connections need their own staging table.
        applied = []
        for n in range(8):
            with _client(pki, "zjg-gaj", base) as gaj:
                response = gaj.post(f"/v1/resources/{code}/changes", json=batch(upsert(n, 1), upsert(n + 100, 1)))
                assert response.status_code == 200, response.text
                applied.append((response.json()["first_seq"], response.json()["last_seq"]))
        assert sorted(applied) == [(2 * n + 1, 2 * n + 2) for n in range(8)]

        # Whichever worker answers /metrics reports the batches of all, a worker that died
        # and was replaced included: here one that applied 100 batches.
        subprocess.run(
            [sys.executable, "-c", "from exchange.metrics import BATCHES; BATCHES.labels('applied').inc(100)"],
            env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(figures)},
            check=True,
        )
        for _ in range(4):
            with _client(pki, "carol", base) as carol:
                text = carol.get("/metrics").text
            applied_batches = [
                sample.value
                for family in text_string_to_metric_families(text)
                for sample in family.samples
                if sample.name == "gdx_exchange_batches_total" and sample.labels == {"outcome": "applied"}
            ]
            assert applied_batches == [108.0]
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert server.returncode is not None
    assert _workers_of(server.pid) == []
