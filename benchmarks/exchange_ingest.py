"""make bench-exchange: ingest rows/s through the exchange's API next to a raw COPY.

Starts a PostgreSQL server with its default (durable) settings. Each round then starts the
exchange as its own process (`gdx exchange serve`, mutual TLS) on a fresh database, pushes
batches of 1,000 rows of a 10-column table from client threads (by default each to a resource
of its own, as front-end agents do), then COPYs as many rows of the same table into a plain
10-column table of the same database. The figures of each round are printed; the last line is
JSON, with the rounds' medians: one round's ratio moves by several hundredths with the
machine's noise.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg

from exchange.migrate import migrate
from exchange.registry import sync_from_inventory
from gdx.inventory import load_inventory
from tests.support.exchange import DEPARTMENTS, make_pki, serve_env, write_inventory
from tests.support.postgres import PostgresServer, free_port
from tests.support.samples import population_entry, upsert

COLUMNS = [f["name"] for f in population_entry("x.y")["fields"]]


def make_batches(count: int, size: int) -> list[bytes]:
    return [
        json.dumps(
            {"batch_id": str(uuid.uuid4()), "changes": [upsert(b * size + i, 1) for i in range(size)]},
            ensure_ascii=False,
        ).encode()
        for b in range(count)
    ]


def start_server(
    pg: PostgresServer, work: Path, workers: int = 1, database: str = "exchange", tls_alerts: bool = False
) -> tuple[subprocess.Popen[bytes], str, str]:
    pki = work / "pki"
    make_pki(pki)
    url = pg.create_database(database)
    migrate(url)
    sync_from_inventory(
        url, load_inventory(write_inventory(work / "inventory.yml", DEPARTMENTS), require_secrets=False)
    )
    port = free_port()
    env = serve_env(
        url,
        pki,
        port,
        GDX_WORKERS=str(workers),
        # As in production, behind an ingress that checks client certificates (--tls-alerts to measure
        # the exchange serving them itself: asyncio's event loop instead of uvloop).
        GDX_TLS_ALERTS="true" if tls_alerts else "false",
    )
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


def bench_ingest(base: str, pki: Path, bodies: list[bytes], clients: int, resources: int = 1) -> float:
    # Batches of one resource are applied one at a time (under its lock); batches of different
    # resources are not. Client i pushes to resource i % resources.
    codes = [f"zjg-gaj.population-bench{i or ''}" for i in range(resources)]
    with client(base, pki, "zjg-gaj") as c:
        for code in codes:
            c.post("/v1/resources", json=population_entry(code)).raise_for_status()
        c.post(f"/v1/resources/{codes[0]}/changes", content=bodies[0]).raise_for_status()  # warm-up
    shards = [(codes[i % resources], bodies[1 + i :: clients]) for i in range(clients)]

    def push(shard: tuple[str, list[bytes]]) -> int:
        code, shard_bodies = shard
        rows = 0
        with client(base, pki, "zjg-gaj") as c:
            for body in shard_bodies:
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


def copy_rows(count: int, size: int) -> list[list[Any]]:
    """The rows of ``count`` batches of ``size``, as the COPY phase writes them."""
    return [[row[c] for c in COLUMNS] for row in (upsert(i, 1)["row"] for i in range(count * size))]


# The plain 10-column table a raw COPY fills, the yardstick of the benchmarks.
COPY_TABLE = (
    "CREATE TABLE copy_bench (id_number text PRIMARY KEY, name text, gender text, birth_date date, "
    "address text, household_size integer, income double precision, is_resident boolean, "
    "updated_at timestamptz, remark text)"
)


def bench_copy(url: str, rows: list[list[Any]]) -> float:
    with psycopg.connect(url) as conn:
        conn.execute(COPY_TABLE)
        conn.commit()
        started = time.perf_counter()
        with conn.cursor().copy(f"COPY copy_bench ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        conn.commit()
        elapsed = time.perf_counter() - started
    return len(rows) / elapsed


@dataclass
class Round:
    ingest: float
    copy: float

    @property
    def ratio(self) -> float:
        return self.ingest / self.copy


def bench_round(
    pg: PostgresServer, number: int, args: argparse.Namespace, bodies: list[bytes], rows: list[list[Any]]
) -> Round:
    """One round on a database of its own, so that every round starts from empty tables."""
    database = f"exchange_{number}"
    work = Path(tempfile.mkdtemp(prefix="gdx-bench-"))
    server, base, url = start_server(pg, work, args.workers, database, args.tls_alerts)
    try:
        checkpoint(url)
        ingest = bench_ingest(base, work / "pki", bodies, args.clients, args.resources)
        checkpoint(url)
        copy = bench_copy(url, rows)
    finally:
        server.terminate()
        server.wait(timeout=10)
    with psycopg.connect(pg.url(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{database}" WITH (FORCE)')
    return Round(ingest, copy)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # 500 batches: each phase lasts seconds (100 made the COPY a quarter of a second).
    parser.add_argument("--batches", type=int, default=500, help="batches to push (default 500)")
    parser.add_argument("--size", type=int, default=1000, help="rows per batch (default 1000)")
    # The deployment's shape: two exchange processes (replicas), several agents pushing at once.
    parser.add_argument("--clients", type=int, default=4, help="concurrent pushing clients (default 4)")
    parser.add_argument("--workers", type=int, default=2, help="exchange server processes (default 2)")
    parser.add_argument(
        "--tls-alerts",
        action="store_true",
        help="serve with TLS alerts for refused certificates (asyncio's loop), not as behind the ingress",
    )
    # A front-end agent pushes a resource's batches one after another: concurrent pushes are
    # to different resources. One resource for every client is the deployment's shape.
    parser.add_argument(
        "--resources",
        type=int,
        help="resources pushed to, client i to resource i %% N (default: one per client; 1: every "
        "client pushes to the same resource, and its batches wait for each other's)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="rounds of both phases, each on a fresh database; the JSON line has their medians (default 3)",
    )
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds must be 1 or more, not {args.rounds}")
    if args.resources is None:
        args.resources = args.clients
    if not 1 <= args.resources <= args.clients:
        parser.error(f"--resources must be between 1 and --clients ({args.clients}), not {args.resources}")

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"preparing {args.batches} batches of {args.size} rows ...", flush=True)
    bodies = make_batches(args.batches + 1, args.size)
    rows = copy_rows(args.batches, args.size)
    pg = PostgresServer(durable=True).start()
    rounds: list[Round] = []
    try:
        for number in range(1, args.rounds + 1):
            result = bench_round(pg, number, args, bodies, rows)
            rounds.append(result)
            print(
                f"round {number}/{args.rounds}: ingest through the API ({args.clients} clients, "
                f"{args.resources} resource(s)) {result.ingest:,.0f} rows/s; raw COPY of as many rows "
                f"{result.copy:,.0f} rows/s; ratio {result.ratio:.3f}",
                flush=True,
            )
    finally:
        pg.stop()
    print(
        json.dumps(
            {
                "ingest_rows_per_s": round(statistics.median(r.ingest for r in rounds)),
                "copy_rows_per_s": round(statistics.median(r.copy for r in rounds)),
                "ingest_vs_copy": round(statistics.median(r.ratio for r in rounds), 3),
                "rounds": [round(r.ratio, 3) for r in rounds],
                "batch_rows": args.size,
                "clients": args.clients,
                "workers": args.workers,
                "tls_alerts": args.tls_alerts,
                "resources": args.resources,
            }
        )
    )


if __name__ == "__main__":
    main()
