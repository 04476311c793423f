"""make bench-sync: end to end through all three hops, next to a raw COPY pipeline.

One durable PostgreSQL server (default settings) holds the provider's business database,
both front-end databases and the exchange's; the exchange runs as its own process
(`gdx exchange serve`, mutual TLS) and so do both agents (`gdx node run`).

Twice, on databases of their own: the provider's publication captured by polling (`capture:
poll`, a change column), then by log capture (`capture: log`, a logical replication slot).

1. Full load: N rows (default 1,000,000) of a 10-column population table until the last row is in
   the subscriber's table (polling: `gdx node sync --full`; log capture: the agent's own load at
   a new slot); beside the polling run's, a raw pipeline, source `COPY TO` piped into destination
   `COPY FROM`, of the same rows.
2. Steady changes: R changes/s (default 2,000) for D seconds (default 60), as 20 UPDATEs a
   second; the lag of each UPDATE is from its commit to when its last row is in the
   subscriber's table (a row trigger there notes the time rows arrive). Meanwhile the CPU time of
   the business database's backends that serve the agent is sampled (/proc): the capture's cost.
3. Deletions: 10 single-row DELETEs a second for 20 s; the delay of each from its commit to the
   row gone at the subscriber (a trigger there notes it).

The last line printed is JSON: lag_p99_s and delete_p99_s are log capture's, poll_lag_p99_s and
poll_delete_p99_s polling's, source_cpu_s each mode's; sync_vs_copy is the polling run's full load.
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
from front_end_node import dba_checklist
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


DEPARTURES = """
CREATE TABLE departures (key text PRIMARY KEY, gone_at timestamptz);
CREATE FUNCTION note_departure() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO departures VALUES (OLD.id_number, clock_timestamp()) ON CONFLICT DO NOTHING;
    RETURN OLD;
END $$;
CREATE TRIGGER note_departure AFTER DELETE ON population FOR EACH ROW EXECUTE FUNCTION note_departure();
"""


def deleting_writer(url: str, seconds: float, rows: int, commits: dict[str, float]) -> None:
    """10 deletions a second, one row each: the time each commits."""
    rng = random.Random(11)  # noqa: S311 - which rows go, not a secret
    keys = [resident_id(n) for n in rng.sample(range(rows), int(seconds * 10))]
    with psycopg.connect(url, autocommit=True) as conn:
        start = time.monotonic()
        for n, key in enumerate(keys):
            pause = start + n / 10 - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            conn.execute("DELETE FROM population WHERE id_number = %s", (key,))
            commits[key] = time.time()


class SourceCpu:
    """CPU seconds of the business database's backends that serve the agent (its polling or its
    log decoding), sampled once a second from /proc: the capture's cost to the department."""

    def __init__(self, url: str, database: str) -> None:
        self.url, self.database = url, database
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def __enter__(self) -> SourceCpu:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        ticks = os.sysconf("SC_CLK_TCK")
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self._stop.is_set():
                pids = [pid for (pid,) in conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name = 'gdx-front-end-agent'",
                    (self.database,),
                )]  # fmt: skip
                for pid in pids:
                    try:
                        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                    except OSError:
                        continue
                    used = (int(fields[11]) + int(fields[12])) / ticks
                    self.first.setdefault(pid, used)
                    self.last[pid] = used
                self._stop.wait(1.0)

    @property
    def seconds(self) -> float:
        return sum(self.last[pid] - self.first[pid] for pid in self.last)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def run_mode(mode: str, pg: PostgresServer, args: argparse.Namespace) -> dict[str, Any]:
    """One whole run with the provider's publication captured by ``mode`` (poll or log), on
    databases of its own: the full load, the steady changes, the deletions."""
    print(f"== capture: {mode}", flush=True)
    work = Path(tempfile.mkdtemp(prefix=f"gdx-bench-sync-{mode}-"))
    server, base, _ = start_server(pg, work, database=f"exchange_{mode}")
    exchange = SimpleNamespace(url=base, pki=work / "pki")
    agents: list[Any] = []
    loader: subprocess.Popen[bytes] | None = None
    figures: dict[str, Any] = {}
    try:
        with exchange_client(exchange, "zjg-gaj") as gaj, exchange_client(exchange, "zjg-wjw") as wjw:
            gaj.post("/v1/resources", json=population_entry(CODE)).raise_for_status()
            wjw.post(f"/v1/resources/{CODE}/subscriptions", json={"purpose": PURPOSE}).raise_for_status()
        name = f"business_{mode}"
        source = PopulationSource(pg.create_database(name)).create()
        print(f"loading {args.rows:,} rows into the business database ...", flush=True)
        for start in range(0, args.rows, 100_000):
            source.insert(range(start, min(args.rows, start + 100_000)))
        publication: dict[str, Any] = {"resource": CODE, "table": "population", "capture": mode}
        if mode == "poll":
            publication["change_column"] = "updated_at"
        else:
            source.execute(dba_checklist.postgres_publication(CODE, "population"))
        provider = write_agent(
            work, "zjg-gaj", exchange, pg.create_database(f"fe_gaj_{mode}"),  # type: ignore[arg-type]
            business_db={"kind": "postgresql", "host": "127.0.0.1", "port": pg.port, "name": name,
                         "user": "postgres", "password": ""},
            publishes=[publication], poll_interval_s=0.1, heartbeat_interval_s=5, batch_size=5000, log_level="info",
        )  # fmt: skip
        consumer = write_agent(
            work, "zjg-wjw", exchange, pg.create_database(f"fe_wjw_{mode}"),  # type: ignore[arg-type]
            subscribes=[{"resource": CODE, "purpose": PURPOSE, "table": "population"}],
            poll_interval_s=0.1, heartbeat_interval_s=5, log_level="warning",
        )  # fmt: skip
        agents = [provider, consumer]

        what = "gdx node sync --full" if mode == "poll" else "the agent's load at a new slot"
        print(f"full load ({what}) -> push -> pull ...", flush=True)
        started = time.perf_counter()
        consumer.start()
        if mode == "poll":
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
        if loader is not None:
            loader.wait()
        figures["sync_rows_per_s"] = args.rows / sync_s
        print(f"full load: {args.rows:,} rows in {sync_s:.1f} s = {figures['sync_rows_per_s']:,.0f} rows/s", flush=True)

        if mode == "poll":
            with psycopg.connect(consumer.front_end_db) as conn:
                conn.execute("CREATE TABLE population_template (LIKE population)")
            copy_s = copy_pipeline(source.url, consumer.front_end_db)
            figures["copy_rows_per_s"] = args.rows / copy_s
            print(f"raw COPY pipeline: {copy_s:.1f} s = {figures['copy_rows_per_s']:,.0f} rows/s", flush=True)

        with psycopg.connect(consumer.front_end_db) as conn:
            conn.execute(ARRIVALS.encode())
            conn.execute(DEPARTURES.encode())
        print(f"steady {args.rate:,} changes/s for {args.seconds:.0f} s ...", flush=True)
        commits: dict[str, float] = {}
        with SourceCpu(pg.url("postgres"), name) as cpu:
            steady_writer(source.url, args.rate, args.seconds, args.rows, commits)
        figures["source_cpu_s"] = cpu.seconds
        time.sleep(5)
        with psycopg.connect(consumer.front_end_db) as conn:
            arrived = {b: at.timestamp() for b, at in conn.execute("SELECT batch, last_at FROM arrivals")}
        lags = sorted(arrived[b] - t for b, t in commits.items() if b in arrived)
        figures["lag_p50_s"], figures["lag_p99_s"] = statistics.median(lags), percentile(lags, 0.99)
        print(
            f"lag over {len(lags)} updates ({len(commits) - len(lags)} not arrived): p50 {figures['lag_p50_s']:.3f} s, "
            f"p99 {figures['lag_p99_s']:.3f} s; the business database's CPU for the agent: "
            f"{figures['source_cpu_s']:.1f} s",
            flush=True,
        )
        print_windows(commits, arrived)

        print(f"deletions: 10 a second for {args.delete_seconds:.0f} s ...", flush=True)
        deleted: dict[str, float] = {}
        deleting_writer(source.url, args.delete_seconds, args.rows, deleted)

        def gone() -> dict[str, float]:
            with psycopg.connect(consumer.front_end_db) as conn:
                return {k: at.timestamp() for k, at in conn.execute("SELECT key, gone_at FROM departures")}

        deadline = time.monotonic() + args.delete_wait
        while len(found := gone()) < len(deleted) and time.monotonic() < deadline:
            time.sleep(1)
        delays = [found[k] - t for k, t in deleted.items() if k in found]
        missing = len(deleted) - len(delays)
        # A deletion not arrived counts as the whole wait: the percentile never looks better for it.
        delays += [args.delete_wait] * missing
        figures["delete_p50_s"], figures["delete_p99_s"] = statistics.median(delays), percentile(delays, 0.99)
        figures["deletes_not_arrived"] = missing
        print(
            f"deletions: {len(deleted)} ({missing} not arrived in {args.delete_wait:.0f} s): "
            f"p50 {figures['delete_p50_s']:.3f} s, p99 {figures['delete_p99_s']:.3f} s",
            flush=True,
        )
    finally:
        if loader is not None and loader.poll() is None:
            loader.terminate()
            loader.wait(timeout=10)
        for agent in agents:
            if agent.running():
                agent.stop()
        server.terminate()
        server.wait(timeout=10)
    return figures


def main() -> None:
    # Stopped with SIGTERM (or Ctrl-C), the benchmark still stops the servers and agents it started:
    # left running, an agent re-reading a million-row table disturbs every later measurement.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rate", type=int, default=2000, help="changes per second in the steady phase")
    parser.add_argument("--seconds", type=float, default=60, help="length of the steady phase")
    parser.add_argument("--delete-seconds", type=float, default=20, help="length of the deletion phase (10/s)")
    parser.add_argument("--delete-wait", type=float, default=120, help="longest wait for the deletions to arrive")
    parser.add_argument("--capture", choices=["poll", "log", "both"], default="both")
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, {cpu_model()}, Python {platform.python_version()}",
        flush=True,
    )
    # wal_level logical for both modes: the same server, the same WAL volume.
    pg = PostgresServer(durable=True, settings=dba_checklist.POSTGRES_SETTINGS).start()
    results: dict[str, dict[str, Any]] = {}
    try:
        for mode in ["poll", "log"] if args.capture == "both" else [args.capture]:
            results[mode] = run_mode(mode, pg, args)
    finally:
        pg.stop()
    poll, log = results.get("poll", {}), results.get("log", {})
    main_run = log or poll
    summary: dict[str, Any] = {
        "sync_rows_per_s": round(poll["sync_rows_per_s"]) if poll else None,
        "copy_rows_per_s": round(poll["copy_rows_per_s"]) if poll else None,
        "sync_vs_copy": round(poll["sync_rows_per_s"] / poll["copy_rows_per_s"], 3) if poll else None,
        "log_sync_rows_per_s": round(log["sync_rows_per_s"]) if log else None,
        "lag_p50_s": round(main_run["lag_p50_s"], 3),
        "lag_p99_s": round(main_run["lag_p99_s"], 3),
        "delete_p99_s": round(main_run["delete_p99_s"], 3),
        "poll_lag_p99_s": round(poll["lag_p99_s"], 3) if poll else None,
        "poll_delete_p99_s": round(poll["delete_p99_s"], 3) if poll else None,
        # Deletions still at the subscriber after --delete-wait (their delay counted as the wait).
        "deletes_not_arrived": {mode: r["deletes_not_arrived"] for mode, r in results.items()},
        "source_cpu_s": {mode: round(r["source_cpu_s"], 2) for mode, r in results.items()},
        "rows": args.rows,
        "rate": args.rate,
    }
    print(json.dumps(summary))


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    main()
