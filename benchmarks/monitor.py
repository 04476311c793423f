"""bench-monitor: one monitoring agent probing simulated front-end nodes.

A light fake node server (a separate process, so its CPU is not counted) listens on one
loopback port per node and answers like an agent: TLS with a CA-issued certificate naming the
node's department, then /healthz with heartbeats. It also answers the exchange's monitoring
summary. The monitor runs its real probe cycle (TCP, TLS handshake, /healthz, lag tracking)
and a scrape of /metrics; we report wall time and the monitor's CPU time per cycle.

    python -m benchmarks.monitor --nodes 1000 5000 --cycles 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import resource
import ssl
import tempfile
import time
from pathlib import Path

import orjson
from prometheus_client import CollectorRegistry, generate_latest

from gdx.pki import Role, init_ca, issue
from monitoring.agent import Monitor
from monitoring.collector import MonitorCollector
from monitoring.settings import Settings, Target

BASE_PORT = 21000


def department(i: int) -> str:
    return f"bench-{i:05d}"


def make_pki(pki: Path, nodes: int) -> None:
    init_ca(pki)
    issue(pki, "exchange", server_names=["127.0.0.1"])
    issue(pki, "monitor", role=Role.OPERATOR)
    for i in range(nodes):
        issue(pki, department(i))


def _response(body: bytes) -> bytes:
    head = (
        f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


async def _serve_fake(pki: Path, nodes: int, ready: multiprocessing.synchronize.Event) -> None:
    async def node(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, name: str) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            now = time.time()
            beat = {"seq": int(now), "source_time": now - 0.8, "seen_at": now - 0.3}
            body = {
                "status": "ok",
                "department": name,
                "front_end_db": "up",
                "time": now,
                "heartbeats": {f"extract/{name}.data": beat},
                "disks": {"/": {"total_bytes": 100 << 30, "free_bytes": 40 << 30}},
                "pending": {f"{name}.data": 0},
            }
            writer.write(_response(orjson.dumps(body)))
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        resources = [
            {
                "code": f"{department(i)}.data", "provider": department(i), "update_period": "daily", "last_seq": 1,
                "last_change_at": now, "catalog_updated_at": now, "not_updated": False, "catalog_review_overdue": False,
                "subscribers": [], "heartbeat": {"seq": 1, "source_time": now, "received_at": now},
            }
            for i in range(nodes)
        ]  # fmt: skip
        departments = [
            {"department": department(i), "overdue_requests": 0, "catalog_review_overdue": 0,
             "not_updated_resources": 0, "open_disputes": 0}
            for i in range(nodes)
        ]  # fmt: skip
        body = orjson.dumps({"as_of": now, "resources": resources, "departments": departments})
        writer.write(_response(body))
        await writer.drain()
        writer.close()

    servers = []
    for i in range(nodes):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pki / f"{department(i)}.crt", pki / f"{department(i)}.key")
        name = department(i)
        servers.append(
            await asyncio.start_server(
                lambda r, w, n=name: node(r, w, n), "127.0.0.1", BASE_PORT + i, ssl=context, backlog=64
            )
        )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki / "exchange.crt", pki / "exchange.key")
    servers.append(await asyncio.start_server(exchange, "127.0.0.1", BASE_PORT - 1, ssl=context))
    ready.set()
    await asyncio.Event().wait()


def fake_nodes(pki: Path, nodes: int, ready: multiprocessing.synchronize.Event) -> None:
    asyncio.run(_serve_fake(pki, nodes, ready))


async def measure(pki: Path, nodes: int, cycles: int) -> dict[str, float]:
    targets = tuple(
        Target(
            department(i), department(i), "bench", f"h{i}", "127.0.0.1", BASE_PORT + i, (f"{department(i)}.data",), ()
        )
        for i in range(nodes)
    )
    settings = Settings(
        targets=targets,
        exchange_url=f"https://127.0.0.1:{BASE_PORT - 1}",
        ca=pki / "ca.crt",
        cert=pki / "monitor.crt",
        key=pki / "monitor.key",
        probe_timeout_s=10,
    )
    monitor = Monitor(settings)
    registry = CollectorRegistry()
    registry.register(MonitorCollector(monitor))
    await monitor.cycle()  # warm-up
    walls, cpus, scrapes = [], [], []
    for _ in range(cycles):
        cpu, wall = time.process_time(), time.perf_counter()
        snapshot = await monitor.cycle()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
        down = sum(1 for r in snapshot.probes.values() if not r.up)
        if down:
            errors = {r.error for r in snapshot.probes.values() if not r.up}
            raise SystemExit(f"bench-monitor: {down} of {nodes} fake nodes failed the probe: {sorted(errors)[:3]}")
        started = time.perf_counter()
        generate_latest(registry)
        scrapes.append(time.perf_counter() - started)
    await monitor.close()
    return {
        "nodes": nodes,
        "cycle_s": round(sum(walls) / len(walls), 2),
        "cycle_s_min": round(min(walls), 2),
        "cycle_s_max": round(max(walls), 2),
        "cpu_s_per_cycle": round(sum(cpus) / len(cpus), 2),
        "scrape_s": round(max(scrapes), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--cycles", type=int, default=3)
    args = parser.parse_args()
    largest = max(args.nodes)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, largest * 3 + 1000)), hard))
    os.sched_setaffinity(0, {0})  # one core for the monitor; the fake nodes get the other
    results = []
    with tempfile.TemporaryDirectory(prefix="gdx-bench-monitor-") as tmp:
        pki = Path(tmp)
        started = time.perf_counter()
        make_pki(pki, largest)
        print(f"bench-monitor: {largest} node certificates in {time.perf_counter() - started:.1f} s", flush=True)
        for nodes in sorted(args.nodes):
            ready = multiprocessing.get_context("fork").Event()
            server = multiprocessing.get_context("fork").Process(
                target=fake_nodes, args=(pki, nodes, ready), daemon=True
            )
            server.start()
            if (os.cpu_count() or 1) > 1:
                os.sched_setaffinity(server.pid, {1})
            if not ready.wait(300):
                raise SystemExit("bench-monitor: the fake nodes did not start")
            try:
                result = asyncio.run(measure(pki, nodes, args.cycles))
            finally:
                server.terminate()
                server.join()
            results.append(result)
            print(f"bench-monitor: {json.dumps(result)}", flush=True)
    print(f"bench-monitor: machine {platform.machine()}, {os.cpu_count()} cores, monitor pinned to one core")
    print(json.dumps(results[-1]))


if __name__ == "__main__":
    main()
