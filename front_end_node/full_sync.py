"""`gdx node sync --full RESOURCE`: the initial load of a large published table.

Reads the source table in key order, a page at a time; each page goes through the same
comparison with the mirror as incremental extraction and is written to the mirror, then sent to
the exchange as one batch, straight, not through the outbox (which would write, read and delete
every row once more). The exchange holds the load open meanwhile (exchange/loads.py): subscribers
starting from nothing wait for it, then load the snapshot once. A page commits with the last key
copied and its batch's id and keys, which stay until the exchange acknowledged the batch: an
interrupted load sends the unacknowledged batches again from the mirror, under their ids (applied
once), and resumes after that key. One batch is in flight while the next page is read. Rows that
changed during the load are caught by incremental extraction, whose watermark is set before the
load begins.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from typing import Any
from zoneinfo import ZoneInfo

from psycopg.types.json import Jsonb
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from front_end_node import catalog, store
from front_end_node.config import NodeConfig
from front_end_node.exchange_client import ExchangeClient, ExchangeError
from front_end_node.extract import encode_watermark
from front_end_node.push import batch_body
from front_end_node.sources import open_source
from front_end_node.state import utcnow
from front_end_node.wire import RowMaker, aware
from gdx.fields import FieldType
from gdx.protocol import BatchReceipt

PROGRESS_EVERY_S = 10.0
# How often a batch is tried before the load stops (the exchange restarting, say): about 2 minutes.
SEND_ATTEMPTS = 8


async def full_sync(config: NodeConfig, code: str, *, restart: bool = False, progress: bool = True) -> int:
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
        maker = RowMaker([(f.name, f.type) for f in spec.fields], zone, key=(spec.primary_key, spec.key_kind))
        schema = spec.row_schema()
        key_index = columns.index(spec.primary_key)
        change_index = columns.index(pub.change_column) if pub.change_column in columns else None
        sender = _Sender(conn, client, code, integer_key=schema.fields[spec.primary_key][0] is FieldType.INTEGER)

        after, done, unacknowledged = await _resume_point(conn, code, restart)
        load = await client.open_load(code)
        for batch in unacknowledged:
            await sender.send_again(batch)
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
        with Progress(
            TextColumn(f"[bold]{code}[/bold]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]} rows/s, {task.fields[sent]} sent"),
            TimeRemainingColumn(),
            disable=not progress,
        ) as bar:
            task = bar.add_task("load", total=max(total, done), completed=done, rate="-", sent="0 MB")
            resumed_at = done
            noted = time.monotonic()
            while True:
                rows = await asyncio.to_thread(
                    source.read_by_key, pub.table, columns, spec.primary_key, after, config.batch_size
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
                batch_id = uuid.uuid4()
                async with conn.transaction():
                    recorded = await store.record_rows(conn, code, schema, items, fields, outbox=False)
                    entry = (
                        [{"batch": str(batch_id), "keys": [key for key, *_ in recorded.rows]}] if recorded.rows else []
                    )
                    await conn.execute(
                        "UPDATE gdx.full_sync SET after_key = %s, rows_done = %s, progressed_at = now(), "
                        "unacknowledged = unacknowledged || %s WHERE resource = %s",
                        (Jsonb(after), done, Jsonb(entry), code),
                    )
                await sender.send(batch_id, recorded.rows)
                if time.monotonic() - noted >= PROGRESS_EVERY_S:
                    await client.load_progress(code, load.id, done)
                    noted = time.monotonic()
                elapsed = max(bar.tasks[0].elapsed or 0.0, 1e-6)
                rate, sent = f"{(done - resumed_at) / elapsed:,.0f}", f"{sender.bytes / 1e6:,.0f} MB"
                bar.update(task, completed=done, total=max(total, done), rate=rate, sent=sent)
            await sender.wait()
            async with conn.transaction():
                await conn.execute("UPDATE gdx.full_sync SET finished_at = now() WHERE resource = %s", (code,))
            await client.load_progress(code, load.id, done, finished=True)
        return done
    finally:
        await conn.close()
        await client.close()
        source.close()


class _Sender:
    """Sends the load's batches, one in flight while the next page is read and recorded, and
    forgets each batch once the exchange acknowledged it."""

    def __init__(self, conn: store.Conn, client: ExchangeClient, code: str, *, integer_key: bool) -> None:
        self.conn = conn
        self.client = client
        self.code = code
        self.integer_key = integer_key
        self.bytes = 0
        self._flying: tuple[uuid.UUID, asyncio.Task[BatchReceipt]] | None = None

    async def send(self, batch_id: uuid.UUID, rows: list[tuple[str, str, int, dt.datetime]]) -> None:
        await self.wait()
        if not rows:
            return
        outgoing = store.Outgoing(
            batch_id, [], [(0, "u", key, text, version, time) for key, text, version, time in rows]
        )
        body, _, _ = batch_body(outgoing, self.integer_key)
        self.bytes += len(body)
        self._flying = (batch_id, asyncio.create_task(self._push(body)))

    async def wait(self) -> None:
        """Until the batch in flight is acknowledged, then forget it."""
        if self._flying is None:
            return
        batch_id, flying = self._flying
        self._flying = None
        await flying
        await self._forget(batch_id)

    async def send_again(self, batch: dict[str, Any]) -> None:
        """A batch a killed load recorded and may have sent: its rows as the mirror holds them."""
        cur = await self.conn.execute(
            "SELECT key, row::text, version, changed_at FROM gdx.mirror "
            "WHERE resource = %s AND key = ANY(%s) AND NOT deleted ORDER BY key",
            (self.code, batch["keys"]),
        )
        rows = [(key, text, version, changed_at or utcnow()) for key, text, version, changed_at in await cur.fetchall()]
        batch_id = uuid.UUID(batch["batch"])
        if rows:
            await self.send(batch_id, rows)
            await self.wait()
        else:
            await self._forget(batch_id)

    async def _push(self, body: bytes) -> BatchReceipt:
        for attempt in range(SEND_ATTEMPTS):
            try:
                return await self.client.push(self.code, body)
            except ExchangeError as exc:
                if not exc.retryable or attempt == SEND_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(min(2**attempt, 30))
        raise AssertionError("unreachable")

    async def _forget(self, batch_id: uuid.UUID) -> None:
        await self.conn.execute(
            "UPDATE gdx.full_sync SET unacknowledged = (SELECT coalesce(jsonb_agg(e), '[]') "
            "FROM jsonb_array_elements(unacknowledged) e WHERE e->>'batch' <> %s) WHERE resource = %s",
            (str(batch_id), self.code),
        )


async def _resume_point(conn: store.Conn, code: str, restart: bool) -> tuple[Any, int, list[dict[str, Any]]]:
    async with conn.transaction():
        cur = await conn.execute(
            "SELECT after_key, rows_done, finished_at, unacknowledged FROM gdx.full_sync WHERE resource = %s "
            "FOR UPDATE",
            (code,),
        )
        row = await cur.fetchone()
        unacknowledged = list(row[3]) if row is not None else []
        # Marked as moving from the start: the agent's extractor waits from now on (see
        # store.full_sync_moving), before the watermark below is even set.
        if row is not None and row[2] is None and not restart:
            await conn.execute("UPDATE gdx.full_sync SET progressed_at = now() WHERE resource = %s", (code,))
            return row[0], int(row[1]), unacknowledged
        await conn.execute(
            "INSERT INTO gdx.full_sync (resource, progressed_at) VALUES (%s, now()) ON CONFLICT (resource) "
            "DO UPDATE SET after_key = NULL, rows_done = 0, started_at = now(), progressed_at = now(), "
            "finished_at = NULL",
            (code,),
        )
        # Batches recorded but not acknowledged are sent again even on a restart: their rows are
        # in the mirror, and a load started over sends only what differs from it.
        return None, 0, unacknowledged
