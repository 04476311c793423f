"""`gdx node sync --full RESOURCE`: the initial load of a large published table.

Reads the source table in key order, a page at a time; each page goes through the same
comparison with the mirror as incremental extraction, and commits together with the last
key copied, so an interrupted load resumes after that key. Rows that changed during the
load are caught by incremental extraction, whose watermark is set before the load begins.

The exchange holds the load open (exchange/loads.py) until the agent has pushed every row it
copied: a subscription that begins meanwhile reads the change log as the rows come, rather than a
snapshot taken mid-load that the log's replay would read again.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from psycopg.types.json import Jsonb
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from front_end_node import catalog, store
from front_end_node.config import NodeConfig
from front_end_node.exchange_client import ExchangeClient
from front_end_node.extract import FILE_BATCH_ROWS, encode_watermark
from front_end_node.heartbeats import SourceHeartbeat
from front_end_node.log_capture import LogCapture
from front_end_node.sources import Source, open_source
from front_end_node.state import AgentState, utcnow
from front_end_node.wire import RowMaker, aware
from gdx.protocol import ResourceSpec
from gdx.sharing import Publication


async def full_sync(
    config: NodeConfig, code: str, *, restart: bool = False, progress: bool = True, wait: bool = True
) -> int:
    pub = config.publication(code)
    assert config.business_db is not None
    source = open_source(config.business_db)
    zone = ZoneInfo(config.business_db.timezone)
    client = ExchangeClient(config.exchange)
    conn = await store.connect(config.front_end_db)
    try:
        await store.migrate(conn)
        spec, _ = await catalog.follow(conn, client, code, config.department)
        fields = store.field_record(spec)
        columns = [f.name for f in spec.fields]
        maker = RowMaker.for_spec(spec, zone)
        batch_size = min(config.batch_size, FILE_BATCH_ROWS) if spec.file_field is not None else config.batch_size
        schema = spec.row_schema()
        key_index = columns.index(spec.primary_key)
        change_index = columns.index(pub.change_column) if pub.change_column in columns else None

        if pub.capture == "log":
            return await _log_load(config, pub, spec, source, conn, client, progress=progress, wait=wait)
        after, done = await _resume_point(conn, code, restart)
        load = await client.open_load(code)
        if after is None and pub.change_column:
            newest = await asyncio.to_thread(source.max_value, pub.table, pub.change_column)
            if isinstance(newest, dt.datetime):
                # A row stamped ahead of the source's clock must not carry the watermark past
                # the changes made until then (see extract.Extractor._horizon).
                now = await asyncio.to_thread(source.now)
                newest = min(newest, now if newest.tzinfo else now.astimezone(zone).replace(tzinfo=None))
            async with conn.transaction():
                await conn.execute(
                    "INSERT INTO gdx.extract_state (resource, watermark) VALUES (%s, %s) "
                    "ON CONFLICT (resource) DO UPDATE SET watermark = COALESCE(gdx.extract_state.watermark, "
                    "EXCLUDED.watermark)",
                    (code, Jsonb(encode_watermark(newest)) if newest is not None else None),
                )
        total = await asyncio.to_thread(source.count, pub.table)
        with _bar(code, progress) as bar:
            task = bar.add_task("load", total=max(total, done), completed=done, rate="-")
            resumed_at = done
            noted = time.monotonic()
            while True:
                rows = await asyncio.to_thread(
                    source.read_by_key, pub.table, columns, spec.primary_key, after, batch_size
                )
                if not rows:
                    break
                now = utcnow()
                items: list[tuple[dict[str, Any], Any]] = []
                for values in rows:
                    row = maker.row(values)
                    changed_at = values[change_index] if change_index is not None else None
                    items.append((row, aware(changed_at, zone) if isinstance(changed_at, dt.datetime) else now))
                after = rows[-1][key_index]
                done += len(rows)
                files, refused = maker.take_files()
                async with conn.transaction():
                    await store.record_rows(conn, code, schema, items, fields, files=files, refused=refused)
                    await conn.execute(
                        "UPDATE gdx.full_sync SET after_key = %s, rows_done = %s, progressed_at = now() "
                        "WHERE resource = %s",
                        (Jsonb(after), done, code),
                    )
                elapsed = max(bar.tasks[0].elapsed or 0.0, 1e-6)
                bar.update(task, completed=done, total=max(total, done), rate=f"{(done - resumed_at) / elapsed:,.0f}")
                if time.monotonic() - noted >= PROGRESS_EVERY_S:
                    await client.load_progress(code, load.id, done)
                    noted = time.monotonic()
            async with conn.transaction():
                await conn.execute("UPDATE gdx.full_sync SET finished_at = now() WHERE resource = %s", (code,))
            if wait:
                await _until_pushed(conn, client, code, load.id, done, bar)
            else:
                await client.load_progress(code, load.id, done)
        return done
    finally:
        await conn.close()
        await client.close()
        source.close()


async def _log_load(
    config: NodeConfig,
    pub: Publication,
    spec: ResourceSpec,
    source: Source,
    conn: store.Conn,
    client: ExchangeClient,
    *,
    progress: bool,
    wait: bool,
) -> int:
    """A log-capture publication loads at a new replication slot (front_end_node/log_capture.py): the
    table as the slot's snapshot sees it, capture going on from there. An interrupted load starts
    again whole (the snapshot lived only as long as its connection); rows the mirror holds as they
    are cost a read, not a send."""
    assert config.business_db is not None
    zone = ZoneInfo(config.business_db.timezone)
    heartbeat = SourceHeartbeat(source, config.business_db.heartbeat_table, pub.resource, zone, 5.0)
    state = AgentState(config.department, Path())
    capture = LogCapture(pub, spec, source, zone, heartbeat=heartbeat, state=state, department=config.department)
    await asyncio.to_thread(capture.log.check)
    load = await client.open_load(pub.resource)
    total = await asyncio.to_thread(source.count, pub.table)
    with _bar(pub.resource, progress) as bar:
        task = bar.add_task("load", total=total, completed=0, rate="-")

        def moved(done: int) -> None:
            elapsed = max(bar.tasks[0].elapsed or 0.0, 1e-6)
            bar.update(task, completed=done, total=max(total, done), rate=f"{done / elapsed:,.0f}")

        await capture.load(conn, moved)
        done = int(bar.tasks[0].completed)
        if wait:
            await _until_pushed(conn, client, pub.resource, load.id, done, bar)
        else:
            await client.load_progress(pub.resource, load.id, done)
    return done


def _bar(code: str, progress: bool) -> Progress:
    return Progress(
        TextColumn(f"[bold]{code}[/bold]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]} rows/s"),
        TimeRemainingColumn(),
        disable=not progress,
    )


PROGRESS_EVERY_S = 10.0
PUSH_STALL_S = 30.0


async def _until_pushed(
    conn: store.Conn, client: ExchangeClient, code: str, load: uuid.UUID, done: int, bar: Progress
) -> None:
    """Hold the exchange's load open until the agent has pushed what the load copied; then it ends.
    With no agent pushing (the outbox not shrinking for PUSH_STALL_S) the command returns and the
    load stalls at the exchange, where it holds no one back after a while (exchange/loads.py)."""
    waiting = bar.add_task("pushed by the agent", total=None)
    least, moved = None, time.monotonic()
    while True:
        cur = await conn.execute("SELECT count(*) FROM gdx.outbox WHERE resource = %s AND op <> 'h'", (code,))
        left = int((await cur.fetchone() or (0,))[0])
        bar.update(waiting, description=f"{left:,} rows wait for the agent (gdx node run) to push them")
        if left == 0:
            await client.load_progress(code, load, done, finished=True)
            return
        if least is None or left < least:
            least, moved = left, time.monotonic()
        elif time.monotonic() - moved > PUSH_STALL_S:
            bar.console.print(
                f"{left:,} rows wait in the outbox: the agent (gdx node run) pushes them", highlight=False
            )
            return
        await client.load_progress(code, load, done)
        await asyncio.sleep(1.0)


async def _resume_point(conn: store.Conn, code: str, restart: bool) -> tuple[Any, int]:
    async with conn.transaction():
        cur = await conn.execute(
            "SELECT after_key, rows_done, finished_at FROM gdx.full_sync WHERE resource = %s FOR UPDATE", (code,)
        )
        row = await cur.fetchone()
        # Marked as moving from the start: the agent's extractor waits from now on (see
        # store.full_sync_moving), before the watermark below is even set.
        if row is not None and row[2] is None and not restart:
            await conn.execute("UPDATE gdx.full_sync SET progressed_at = now() WHERE resource = %s", (code,))
            return row[0], int(row[1])
        await conn.execute(
            "INSERT INTO gdx.full_sync (resource, progressed_at) VALUES (%s, now()) ON CONFLICT (resource) "
            "DO UPDATE SET after_key = NULL, rows_done = 0, started_at = now(), progressed_at = now(), "
            "finished_at = NULL",
            (code,),
        )
        return None, 0
