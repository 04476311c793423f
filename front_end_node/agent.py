"""The agent's hops: one loop per hop and resource, each with its own front-end database
connection, retrying with backoff (front_end_node/main.py starts them beside the health port).

Nothing here is lost on a crash: every position (watermark, outbox, cursor) is in the
front-end database and commits with the rows it covers, so a restart resumes where the
last commit left off. SIGTERM finishes the current step of every loop and exits.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import psycopg
import structlog

from front_end_node import catalog, drift, store
from front_end_node.config import NodeConfig
from front_end_node.errors import Waiting, Withdrawn
from front_end_node.exchange_client import ExchangeClient, ExchangeError
from front_end_node.extract import DeletionScan, Extractor
from front_end_node.heartbeats import SourceHeartbeat
from front_end_node.log_capture import LogCapture
from front_end_node.pull import Puller
from front_end_node.push import Pusher
from front_end_node.sources import SourceError, open_source
from front_end_node.state import AgentState
from gdx import aio
from gdx.sharing import Publication

log = structlog.get_logger("gdx.node")


class Step(Protocol):
    async def step(self, conn: store.Conn) -> bool: ...


class Loop:
    """Runs one hop of one resource until stopped: prepare, then steps (prepared again every
    ``prepare_every_s``, and when the resource's fields changed under a step); every failure is
    logged once with what to do, shown in /healthz, and retried with growing pauses."""

    def __init__(
        self,
        hop: str,
        resource: str,
        prepare: Callable[[store.Conn], Awaitable[Step]],
        config: NodeConfig,
        state: AgentState,
        stop: asyncio.Event,
        prepare_every_s: float | None = None,
    ) -> None:
        self.hop, self.resource = hop, resource
        self.prepare = prepare
        self.config, self.state, self.stop = config, state, stop
        self.prepare_every_s = prepare_every_s

    async def run(self) -> None:
        conn: store.Conn | None = None
        worker: Step | None = None
        pause = self.config.poll_interval_s
        last_problem = ""
        prepared_at = 0.0
        while not self.stop.is_set():
            try:
                if conn is None or conn.closed:
                    conn = await store.connect(self.config.front_end_db)
                if worker is None or (
                    self.prepare_every_s is not None and time.monotonic() - prepared_at >= self.prepare_every_s
                ):
                    worker = await self.prepare(conn)
                    prepared_at = time.monotonic()
                busy = await worker.step(conn)
                if last_problem:
                    log.info("recovered", hop=self.hop, resource=self.resource)
                    last_problem = ""
                pause = self.config.poll_interval_s
                if not busy:
                    await aio.pause(self.stop, pause)
                continue
            except store.FieldsChanged:
                # Rows were read with the fields of before: made again with the catalog's.
                log.info("the fields changed while rows were read: reading again", hop=self.hop, resource=self.resource)
                worker = None
                continue
            except Withdrawn as exc:
                problem, level = str(exc), "warning"
                self.state.stopped(self.hop, self.resource, problem, exc.status, exc.rows)
            except Waiting as exc:
                problem, level = str(exc), "info"
                self.state.waiting(self.hop, self.resource, problem)
            except psycopg.OperationalError as exc:
                problem, level = f"front-end database: {str(exc).strip()}", "error"
                self.state.failed(self.hop, self.resource, problem)
            except (ExchangeError, SourceError) as exc:
                problem, level = str(exc), "error"
                self.state.failed(self.hop, self.resource, problem)
            except Exception as exc:  # a bug or an unforeseen state: keep the other hops going
                problem, level = f"unexpected: {exc!r}", "error"
                self.state.failed(self.hop, self.resource, problem)
                if problem != last_problem:
                    log.exception("unexpected failure", hop=self.hop, resource=self.resource)
            if problem != last_problem:
                getattr(log, level)(problem, hop=self.hop, resource=self.resource, retry_in_s=round(pause, 1))
                last_problem = problem
            if conn is not None:
                await conn.close()
                conn = None
            await aio.pause(self.stop, pause)
            pause = min(pause * 2, self.config.max_backoff_s)
        if conn is not None:
            await conn.close()


async def refresh_figures(config: NodeConfig, state: AgentState, stop: asyncio.Event) -> None:
    conn: store.Conn | None = None
    while not stop.is_set():
        try:
            if conn is None or conn.closed:
                conn = await store.connect(config.front_end_db)
            started = time.monotonic()
            await state.refresh(conn)
            # Counting a long outbox (a full load) takes a while: keep it under 5% of a core.
            pause = max(2.0, 20 * (time.monotonic() - started))
        except psycopg.Error:
            state.database_down()
            if conn is not None:
                await conn.close()
            conn = None
            pause = 2.0
        await aio.pause(stop, pause)
    if conn is not None:
        await conn.close()


async def migrate(config: NodeConfig, state: AgentState, stop: asyncio.Event) -> bool:
    pause = config.poll_interval_s
    last = ""
    while not stop.is_set():
        try:
            conn = await store.connect(config.front_end_db)
            async with conn:
                await store.migrate(conn)
                await state.refresh(conn)
            return True
        except psycopg.Error as exc:
            problem = f"front-end database unavailable: {str(exc).strip()} (check front_end_db in the node config)"
            if problem != last:
                log.error(problem, retry_in_s=round(pause, 1))
                last = problem
            state.database_down()
            await aio.pause(stop, pause)
            pause = min(pause * 2, config.max_backoff_s)
    return False


def _extract_loop(
    config: NodeConfig,
    pub: Publication,
    client: ExchangeClient,
    state: AgentState,
    missing: dict[str, Any],
    *,
    deletions_only: bool = False,
) -> Callable[[store.Conn], Awaitable[Step]]:
    assert config.business_db is not None
    source = open_source(config.business_db)
    zone = ZoneInfo(config.business_db.timezone)

    current: Extractor | LogCapture | None = None

    async def prepare(conn: store.Conn) -> Step:
        nonlocal current
        assert config.business_db is not None
        if deletions_only:  # compares keys only, whatever the other fields
            spec = await catalog.resource_spec(conn, client, pub.resource, config.department)
        else:  # prepared again every catalog_check_interval_s
            spec, version = await catalog.follow(conn, client, pub.resource, config.department)
            if version is not None:
                await drift.check(conn, client, source, pub.resource, pub.table, spec, version)
            if current is not None and current.fields_record == store.field_record(spec):
                return current  # the same fields: what it holds in memory still serves
        if pub.capture == "log":
            heartbeat = SourceHeartbeat(
                source, config.business_db.heartbeat_table, pub.resource, zone, config.heartbeat_interval_s
            )
            current = LogCapture(
                pub, spec, source, zone, heartbeat=heartbeat, state=state, department=config.department
            )
            return current
        extractor = Extractor(
            pub,
            spec,
            source,
            zone,
            batch_size=config.batch_size,
            heartbeat_table=config.business_db.heartbeat_table,
            heartbeat_interval_s=config.heartbeat_interval_s,
            state=state,
            missing=missing,
        )
        current = extractor
        return DeletionScan(extractor) if deletions_only else extractor

    return prepare


def _push_loop(
    config: NodeConfig, pub: Publication, client: ExchangeClient, state: AgentState
) -> Callable[[store.Conn], Awaitable[Step]]:
    async def prepare(conn: store.Conn) -> Step:
        spec = await catalog.resource_spec(conn, client, pub.resource, config.department)
        return Pusher(pub.resource, spec, client, state, config.batch_size)

    return prepare


def hops(config: NodeConfig, client: ExchangeClient, state: AgentState, stop: asyncio.Event) -> list[Loop]:
    """The loops the config asks for: extract, compare and push per publication, pull per subscription."""
    loops: list[Loop] = []
    for pub in config.publishes:
        missing: dict[str, Any] = {}  # found by the comparison, read by the extraction
        extract = _extract_loop(config, pub, client, state, missing)
        loops.append(Loop("extract", pub.resource, extract, config, state, stop, pub.catalog_check_interval_s))
        if pub.change_column and pub.capture == "poll":  # the log reports deletions itself
            scan = _extract_loop(config, pub, client, state, missing, deletions_only=True)
            loops.append(Loop("compare", pub.resource, scan, config, state, stop))
        loops.append(Loop("push", pub.resource, _push_loop(config, pub, client, state), config, state, stop))
    for sub in config.subscribes:
        puller = Puller(sub, client, state, snapshot_rows=config.snapshot_rows)

        async def prepare_pull(conn: store.Conn, puller: Puller = puller) -> Step:
            await puller.prepare(conn)
            return puller

        loops.append(Loop("pull", sub.resource, prepare_pull, config, state, stop))
    return loops
