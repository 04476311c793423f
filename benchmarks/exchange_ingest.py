"""make bench-exchange: ingest rows/s through the exchange's API next to a raw COPY.

Starts a PostgreSQL server with its default (durable) settings and the exchange as its own
process (`gdx exchange serve`, mutual TLS), pushes batches of 1,000 rows of a 10-column
table from client threads, then COPYs the same rows into a plain 10-column table of the
same server. The last line printed is JSON.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psycopg

from exchange.migrate import migrate
from exchange.registry import sync_from_inventory
from gdx.inventory import load_inventory
from tests.exchange.conftest import population_spec, upsert
from tests.support.exchange import DEPARTMENTS, make_pki, write_inventory
from tests.support.postgres import PostgresServer, free_port

COLUMNS = [f["name"] for f in population_spec("x.y")["fields"]]


def make_batches(count: int, size: int) -> list[bytes]:
    return [
        json.dumps(
            {"batch_id": str(uuid.uuid4()), "changes": [upsert(b * size + i, 1) for i in range(size)]},
            ensure_ascii=False,
        ).encode()
        for b in range(count)
    ]


def start_server(pg: PostgresServer, work: Path, workers: int = 1) -> tuple[subprocess.Popen[bytes], str, str]:
    pki = work / "pki"
    make_pki(pki)
    url = pg.create_database("exchange")
    migrate(url)
    sync_from_inventory(
        url, load_inventory(write_inventory(work / "inventory.yml", DEPARTMENTS), require_secrets=False)
    )
    port = free_port()
    env = {
        **os.environ,
        "GDX_DATABASE_URL": url,
        "GDX_TLS_CERT": str(pki / "exchange.crt"),
        "GDX_TLS_KEY": str(pki / "exchange.key"),
        "GDX_CA_CERT": str(pki / "ca.crt"),
        "GDX_HOST": "127.0.0.1",
        "GDX_PORT": str(port),
        "GDX_WORKERS": str(workers),
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "gdx.cli", "exchange", "serve"], env=env, stderr=subprocess.DEVNULL
    )
    base = f"https://127.0.0.1:{port}"
    context = ssl.create_default_context(cafile=pki / "ca.crt")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/readyz", verify=context).status_code == 200:
                return server, base, url
        except httpx.HTTPError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit("the exchange did not become ready")


def client(base: str, pki: Path, name: str) -> httpx.Client:
    context = ssl.create_default_context(cafile=pki / "ca.crt")
    context.load_cert_chain(pki / f"{name}.crt", pki / f"{name}.key")
    return httpx.Client(base_url=base, verify=context, timeout=120, headers={"content-type": "application/json"})


def bench_ingest(base: str, pki: Path, bodies: list[bytes], clients: int) -> float:
    code = "zjg-gaj.population-bench"
    with client(base, pki, "zjg-gaj") as c:
        c.post("/v1/resources", json=population_spec(code)).raise_for_status()
        c.post(f"/v1/resources/{code}/changes", content=bodies[0]).raise_for_status()  # warm-up
    shards = [bodies[1 + i :: clients] for i in range(clients)]

    def push(shard: list[bytes]) -> int:
        rows = 0
        with client(base, pki, "zjg-gaj") as c:
            for body in shard:
                response = c.post(f"/v1/resources/{code}/changes", content=body)
                response.raise_for_status()
                rows += response.json()["applied"]
        return rows

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        rows = sum(pool.map(push, shards))
    return rows / (time.perf_counter() - started)


def checkpoint(url: str) -> None:
    """Start each phase with the WAL written out: otherwise the phase after a large one pays for
    its checkpoint (PostgreSQL checkpoints every max_wal_size, 1 GB by default)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")


def bench_copy(url: str, count: int, size: int) -> float:
    rows = [upsert(i, 1)["row"] for i in range(count * size)]
    with psycopg.connect(url) as conn:
        conn.execute(
            "CREATE TABLE copy_bench (id_number text PRIMARY KEY, name text, gender text, birth_date date, "
            "address text, household_size integer, income double precision, is_resident boolean, "
            "updated_at timestamptz, remark text)"
        )
        conn.commit()
        buffer = io.StringIO()
        started = time.perf_counter()
        with conn.cursor().copy(f"COPY copy_bench ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row([row[c] for c in COLUMNS])
        conn.commit()
        elapsed = time.perf_counter() - started
        del buffer
    return len(rows) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # 500 batches: each phase lasts seconds (100 made the COPY a quarter of a second).
    parser.add_argument("--batches", type=int, default=500, help="batches to push (default 500)")
    parser.add_argument("--size", type=int, default=1000, help="rows per batch (default 1000)")
    # The deployment's shape: two exchange processes (replicas), several departments pushing at once.
    parser.add_argument("--clients", type=int, default=4, help="concurrent pushing clients (default 4)")
    parser.add_argument("--workers", type=int, default=2, help="exchange server processes (default 2)")
    args = parser.parse_args()

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"preparing {args.batches} batches of {args.size} rows ...", flush=True)
    bodies = make_batches(args.batches + 1, args.size)
    pg = PostgresServer(durable=True).start()
    work = Path(tempfile.mkdtemp(prefix="gdx-bench-"))
    server, base, url = start_server(pg, work, args.workers)
    try:
        checkpoint(url)
        ingest = bench_ingest(base, work / "pki", bodies, args.clients)
        print(f"ingest through the API ({args.clients} clients): {ingest:,.0f} rows/s", flush=True)
        checkpoint(url)
        copy = bench_copy(url, args.batches, args.size)
        print(f"raw COPY of the same rows:            {copy:,.0f} rows/s", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=10)
        pg.stop()
    print(
        json.dumps(
            {
                "ingest_rows_per_s": round(ingest),
                "copy_rows_per_s": round(copy),
                "ingest_vs_copy": round(ingest / copy, 3),
                "batch_rows": args.size,
                "clients": args.clients,
                "workers": args.workers,
            }
        )
    )


if __name__ == "__main__":
    main()
