"""`gdx node run`: the agent's process. Starts the health port, brings the front-end database's
schema up to date, runs every hop (front_end_node/agent.py) until SIGTERM or Ctrl-C, then lets
each finish the step in hand.

Nothing is lost on a crash: every position (watermark, outbox, cursor) is in the front-end
database and commits with the rows it covers, so a restart resumes where the last commit left off.
"""

from __future__ import annotations

import asyncio
import signal
import ssl

import structlog
import uvicorn

from front_end_node import agent
from front_end_node.config import NodeConfig
from front_end_node.exchange_client import ExchangeClient
from front_end_node.health import create_app
from front_end_node.state import AgentState
from front_end_node.tally import BusinessTables
from gdx import aio
from gdx.peer_tls import PeerCertHttpTools

log = structlog.get_logger("gdx.node")


def _business_tables(config: NodeConfig) -> BusinessTables | None:
    if config.business_db is None:
        return None
    return BusinessTables(config.business_db, {pub.resource: pub.table for pub in config.publishes})


async def run(config: NodeConfig) -> int:
    state = AgentState(config.department, config.exchange.cert, tuple(config.disks))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    server = aio.QuietServer(
        uvicorn.Config(
            create_app(state, config.front_end_db, _business_tables(config)),
            host=config.listen.host,
            port=config.listen.port,
            log_level="warning",
            lifespan="off",
            # The department's certificate serves the health port too: the monitoring agent's
            # handshake then proves which department answers. The caller's certificate, if any,
            # must be the platform CA's; the app decides what each caller may read.
            ssl_certfile=config.exchange.cert if config.listen.tls else None,
            ssl_keyfile=config.exchange.key if config.listen.tls else None,
            ssl_ca_certs=str(config.exchange.ca) if config.listen.tls else None,
            ssl_cert_reqs=ssl.CERT_OPTIONAL if config.listen.tls else ssl.CERT_NONE,
            http=PeerCertHttpTools,
        )
    )
    server_task = asyncio.create_task(server.serve())
    log.info(
        "starting",
        department=config.department,
        publishes=[p.resource for p in config.publishes],
        subscribes=[s.resource for s in config.subscribes],
        listen=f"{config.listen.host}:{config.listen.port}",
    )
    if not await agent.migrate(config, state, stop):
        server.should_exit = True
        await server_task
        return 0

    client = ExchangeClient(config.exchange)
    loops = agent.hops(config, client, state, stop)
    tasks = [asyncio.create_task(lp.run()) for lp in loops]
    tasks.append(asyncio.create_task(agent.refresh_figures(config, state, stop)))

    await stop.wait()
    log.info("stopping: finishing the current step of every hop")
    _done, pending = await asyncio.wait(tasks, timeout=30)
    for task in pending:
        task.cancel()
    await client.close()
    server.should_exit = True
    await server_task
    log.info("stopped", unfinished=len(pending))
    return 0
