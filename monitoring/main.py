"""`gdx monitor run`: the monitoring agent's process. Serves the status page and /metrics
(monitoring/web.py), runs the probe cycles and the reconciliation (monitoring/agent.py) until
SIGTERM or Ctrl-C; SIGHUP reloads the inventory.
"""

from __future__ import annotations

import asyncio
import signal

import structlog
import uvicorn

from gdx.aio import QuietServer
from monitoring.agent import Monitor
from monitoring.settings import Settings
from monitoring.web import create_app

log = structlog.get_logger("gdx.monitor")


async def run(settings: Settings, host: str, port: int) -> int:
    monitor = Monitor(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, monitor.reload)
    server = QuietServer(uvicorn.Config(create_app(monitor), host=host, port=port, log_level="warning"))
    log.info("starting", targets=len(settings.targets), listen=f"{host}:{port}", exchange=settings.exchange_url)
    tasks = [
        asyncio.create_task(server.serve()),
        asyncio.create_task(monitor.run_cycles(stop)),
        asyncio.create_task(monitor.reconciler.run(monitor.sharing, stop)),
    ]
    await stop.wait()
    server.should_exit = True
    await asyncio.wait(tasks, timeout=10)
    await monitor.close()
    log.info("stopped")
    return 0
