"""make bench-sync: end to end through all three hops, next to a raw COPY pipeline.

One durable PostgreSQL server (default settings) holds the provider's business database,
both front-end databases and the exchange's; the exchange runs as its own process
(`gdx exchange serve`, mutual TLS) and so do both agents (`gdx node run`).

1. Full load: N rows (default 1,000,000) of a 10-column population table, from
   `gdx node sync --full` until the last row is in the subscriber's table; beside it a raw
   pipeline, source `COPY TO` piped into destination `COPY FROM`, of the same rows.
2. Steady changes: R changes/s (default 2,000) for D seconds (default 60), as 20 UPDATEs a
   second; the lag of each UPDATE is from its commit to when its last row is in the
   subscriber's table (a row trigger there notes the time rows arrive).

The last line printed is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psycopg

from benchmarks.exchange_ingest import start_server
from tests.support.nodes import POPULATION_COLUMNS, exchange_client, write_agent
from tests.support.postgres import PostgresServer
from tests.support.samples import PURPOSE, population_entry, resident_id
from tests.support.world import PopulationSource

CODE = "zjg-gaj.population-bench"
ARRIVALS = """
CREATE TABLE arrivals (batch text PRIMARY KEY, first_at timestamptz, last_at timestamptz, rows integer);
CREATE FUNCTION note_arrival() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.remark LIKE 'b%' THEN
        INSERT INTO arrivals VALUES (NEW.remark, clock_timestamp(), clock_timestamp(), 1)
        ON CONFLICT (batch) DO UPDATE SET last_at = clock_timestamp(), rows = arrivals.rows + 1;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER note_arrival AFTER INSERT OR UPDATE ON population FOR EACH ROW EXECUTE FUNCTION note_arrival();
"""


def count(url: str, table: str) -> int:
    with psycopg.connect(url) as conn:
        if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone() == (None,):
            return 0
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()  # noqa: S608
        return int(row[0]) if row else 0


def copy_pipeline(source_url: str, target_url: str) -> float:
    cols = ", ".join(POPULATION_COLUMNS)
    with psycopg.connect(target_url) as conn:
        conn.execute("CREATE TABLE copy_target (LIKE population_template)")
    started = time.perf_counter()
    with psycopg.connect(source_url) as src, psycopg.connect(target_url) as dst:
        with (
            src.cursor().copy(f"COPY population ({cols}) TO STDOUT") as out,
            dst.cursor().copy(f"COPY copy_target ({cols}) FROM STDIN") as into,
        ):
            for block in out:
                into.write(block)
        dst.commit()
    return time.perf_counter() - started


def steady_writer(url: str, rate: int, seconds: float, rows: int, commits: dict[str, float]) -> None:
    per_statement = max(1, rate // 20)
    rng = random.Random(7)  # noqa: S311 - which rows change, not a secret
    with psycopg.connect(url, autocommit=True) as conn:
        start = time.monotonic()
        n = 0
        while time.monotonic() - start < seconds:
            due = start + n / 20
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            keys = [resident_id(rng.randrange(rows)) for _ in range(per_statement)]
            label = f"b{n}"
            conn.execute("UPDATE population SET remark = %s WHERE id_number = ANY(%s)", (label, keys))
            commits[label] = time.time()
            n += 1


def print_windows(commits: dict[str, float], arrived: dict[str, float], width: float = 10) -> None:
    """The lag by window of the steady phase: where a slow moment fell, and how long it lasted."""
    start = min(commits.values())
    windows: dict[int, list[float]] = {}
    for batch, committed in commits.items():
        if batch in arrived:
            windows.setdefault(int((committed - start) // width), []).append(arrived[batch] - committed)
    for index, lags in sorted(windows.items()):
        print(
            f"  {index * width:3.0f}-{(index + 1) * width:3.0f} s: p50 {statistics.median(lags):6.3f} s, "
            f"max {max(lags):6.3f} s",
            flush=True,
        )


def main() -> None:
    # Stopped with SIGTERM (or Ctrl-C), the benchmark still stops the servers and agents it started:
    # left running, an agent re-reading a million-row table disturbs every later measurement.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rate", type=int, default=2000, help="changes per second in the steady phase")
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}", flush=True)

    pg = PostgresServer(durable=True).start()
    work = Path(tempfile.mkdtemp(prefix="gdx-bench-sync-"))
    server, base, _ = start_server(pg, work)
    exchange = SimpleNamespace(url=base, pki=work / "pki")
    agents: list[Any] = []
    loader: subprocess.Popen[bytes] | None = None
    try:
        with exchange_client(exchange, "zjg-gaj") as gaj, exchange_client(exchange, "zjg-wjw") as wjw:
            gaj.post("/v1/resources", json=population_entry(CODE)).raise_for_status()
            wjw.post(f"/v1/resources/{CODE}/subscriptions", json={"purpose": PURPOSE}).raise_for_status()
        source = PopulationSource(pg.create_database("business")).create()
        print(f"loading {args.rows:,} rows into the business database ...", flush=True)
        for start in range(0, args.rows, 100_000):
            source.insert(range(start, min(args.rows, start + 100_000)))
        provider = write_agent(
            work, "zjg-gaj", exchange, pg.create_database("fe_gaj"),  # type: ignore[arg-type]
            business_db={"kind": "postgresql", "host": "127.0.0.1", "port": pg.port, "name": "business",
                         "user": "postgres", "password": ""},
            publishes=[{"resource": CODE, "table": "population", "change_column": "updated_at"}],
            poll_interval_s=0.1, heartbeat_interval_s=5, batch_size=5000, log_level="info",
        )  # fmt: skip
        consumer = write_agent(
            work, "zjg-wjw", exchange, pg.create_database("fe_wjw"),  # type: ignore[arg-type]
            subscribes=[{"resource": CODE, "purpose": PURPOSE, "table": "population"}],
            poll_interval_s=0.1, heartbeat_interval_s=5, log_level="warning",
        )  # fmt: skip
        agents = [provider, consumer]

        print("full load through extract -> push -> pull ...", flush=True)
        started = time.perf_counter()
        consumer.start()
        loader = subprocess.Popen(
            [sys.executable, "-m", "gdx.cli", "node", "sync", "--full", CODE, "-c", str(provider.config_path)],
            stderr=subprocess.DEVNULL,
        )
        provider.start()
        last_report = 0.0
        while (done := count(consumer.front_end_db, "population")) < args.rows:
            if time.perf_counter() - last_report > 10:
                print(f"  {done:,} rows at the subscriber after {time.perf_counter() - started:.0f} s", flush=True)
                last_report = time.perf_counter()
            time.sleep(0.5)
        sync_s = time.perf_counter() - started
        loader.wait()
        sync_rate = args.rows / sync_s
        print(f"full load: {args.rows:,} rows in {sync_s:.1f} s = {sync_rate:,.0f} rows/s", flush=True)

        with psycopg.connect(consumer.front_end_db) as conn:
            conn.execute("CREATE TABLE population_template (LIKE population)")
        copy_s = copy_pipeline(source.url, consumer.front_end_db)
        copy_rate = args.rows / copy_s
        print(f"raw COPY pipeline: {copy_s:.1f} s = {copy_rate:,.0f} rows/s", flush=True)

        with psycopg.connect(consumer.front_end_db) as conn:
            conn.execute(ARRIVALS.encode())
        print(f"steady {args.rate:,} changes/s for {args.seconds:.0f} s ...", flush=True)
        commits: dict[str, float] = {}
        writer = threading.Thread(target=steady_writer, args=(source.url, args.rate, args.seconds, args.rows, commits))
        writer.start()
        writer.join()
        time.sleep(5)
        with psycopg.connect(consumer.front_end_db) as conn:
            arrived = {b: at.timestamp() for b, at in conn.execute("SELECT batch, last_at FROM arrivals")}
        lags = sorted(arrived[b] - t for b, t in commits.items() if b in arrived)
        missing = len(commits) - len(lags)
        p50 = statistics.median(lags)
        p99 = lags[min(len(lags) - 1, int(len(lags) * 0.99))]
        print(f"lag over {len(lags)} updates ({missing} not arrived): p50 {p50:.3f} s, p99 {p99:.3f} s", flush=True)
        print_windows(commits, arrived)
    finally:
        if loader is not None and loader.poll() is None:
            loader.terminate()
            loader.wait(timeout=10)
        for agent in agents:
            if agent.running():
                agent.stop()
        server.terminate()
        server.wait(timeout=10)
        pg.stop()
    print(
        json.dumps(
            {
                "sync_rows_per_s": round(sync_rate),
                "copy_rows_per_s": round(copy_rate),
                "sync_vs_copy": round(sync_rate / copy_rate, 3),
                "lag_p50_s": round(p50, 3),
                "lag_p99_s": round(p99, 3),
                "rows": args.rows,
                "rate": args.rate,
            }
        )
    )


if __name__ == "__main__":
    main()
