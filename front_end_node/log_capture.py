"""Hop 1 by log capture (`capture: log`): a table's changes read from the business database's log.

PostgreSQL's write-ahead log through a logical replication slot (postgres_log.py), MariaDB's
binlog in row format (mariadb_binlog.py). Each step reads the log's next transactions after the
position the front-end database holds, records their rows and deletions there together with the
position after the last of them, and only then tells the log (a PostgreSQL slot moves on): a crash
in between reads the same transactions again, and those at or below the recorded position are
skipped. So nothing is lost and nothing recorded twice, whenever the agent is killed.

The first step, or one after the position was lost, loads the table whole at a known position
(PostgreSQL: the new slot's exported snapshot; MariaDB: a consistent snapshot and the binlog
position it corresponds to), and capture goes on from that position, so the load and the log meet
without a gap or a change read twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import structlog

from front_end_node import store
from front_end_node.captured import CapturedTransaction, ChangeLog, Position
from front_end_node.errors import Waiting
from front_end_node.heartbeats import SourceHeartbeat
from front_end_node.pgoutput import UNCHANGED
from front_end_node.sources import MariaDbSource, PostgresSource, Source, SourceError
from front_end_node.state import AgentState, SlotFigures, utcnow
from front_end_node.wire import RowMaker
from gdx.protocol import ResourceSpec
from gdx.sharing import Publication

log = structlog.get_logger("gdx.node")

HOP = "extract"
# Changes peeked at a time (a transaction is never split: a bigger one comes whole).
PEEK_CHANGES = 5000
# Rows of the first load recorded at a time.
LOAD_CHUNK = 5000
# How often the slot's retained WAL is measured (a metric and /healthz).
SLOT_FIGURES_EVERY_S = 10.0
# The front-end database's advisory lock class of a resource's log capture (_capture_lock).
_LOAD_LOCK = 0x67647843  # "gdxC"


@dataclass
class Pending:
    """What a run of transactions leaves per key: its last row, or its deletion, and when."""

    upserts: dict[str, tuple[list[Any], dt.datetime]]
    deletes: dict[str, dt.datetime]
    truncated_at: dt.datetime | None = None


class LogCapture:
    """The extract hop of a `capture: log` publication (the agent's loop runs step())."""

    def __init__(
        self,
        pub: Publication,
        spec: ResourceSpec,
        source: Source,
        zone: ZoneInfo,
        *,
        heartbeat: SourceHeartbeat,
        state: AgentState,
        department: str,
    ) -> None:
        self.pub = pub
        self.code = pub.resource
        self.source = source
        self.zone = zone
        self.state = state
        self.columns = [f.name for f in spec.fields]
        self.key = spec.primary_key
        self.maker = RowMaker.for_spec(spec, zone)
        self.schema = spec.row_schema()
        self.fields_record = store.field_record(spec)
        self.log = open_change_log(source, pub, spec.primary_key, department)
        self._heartbeat = heartbeat
        self._next_heartbeat = 0.0
        self._next_figures = 0.0
        self._checked = False

    async def step(self, conn: store.Conn) -> bool:
        if not self._checked:
            await asyncio.to_thread(self.log.check)
            self._checked = True
        # Never beside a load (`gdx node sync --full`): read meanwhile, a change after the load's
        # position could be recorded, then overwritten by the load's older row, and confirmed.
        async with _capture_lock(conn, self.code, wait=False):
            try:
                return await self._step(conn)
            except Exception:
                # The database may have restarted under an open stream, which would look idle for a
                # minute before it failed: the next step opens it again.
                await asyncio.to_thread(self.log.close)
                raise

    async def _step(self, conn: store.Conn) -> bool:
        position, heartbeat_seq = await self._position(conn)
        slot = await self._figures(position)
        if slot is None or position is None:
            await self.load(conn)
            return True
        if slot.wal_status == "lost":
            raise SourceError(
                f"the {self.log.kind} {self.log.slot} no longer holds changes the node has not read (the business "
                f"database let them go): changes may be missing. Load the table again: "
                f"gdx node sync --full --restart {self.code}"
            )
        beat = None
        if time.monotonic() >= self._next_heartbeat:
            # Before the peek: every change committed before the beat's time is in what is peeked.
            beat = await self._heartbeat(heartbeat_seq)
        transactions = await asyncio.to_thread(self.log.peek, position, PEEK_CHANGES)
        fresh = [t for t in transactions if _after(t.end, position)]
        changed = 0
        if fresh:
            changed = await self._record(conn, fresh)
        if transactions:
            await asyncio.to_thread(self.log.advance, transactions[-1].end)
        caught_up = sum(len(t.changes) for t in transactions) < PEEK_CHANGES
        if beat is not None and caught_up:
            await store.record_source_heartbeat(conn, self.code, *beat)
            self._next_heartbeat = time.monotonic() + self._heartbeat.interval_s
        tidied, self.maker.tidied = self.maker.tidied, 0
        self.state.ok(HOP, self.code, rows=changed, batches=1 if changed else 0, read=len(fresh), tidied=tidied)
        return bool(fresh)

    async def _figures(self, position: Position | None) -> SlotFigures | None:
        figures = await asyncio.to_thread(self.log.figures, position)
        if figures is not None and time.monotonic() >= self._next_figures:
            self.state.capture[self.code] = figures
            self._next_figures = time.monotonic() + SLOT_FIGURES_EVERY_S
        return figures

    async def _position(self, conn: store.Conn) -> tuple[Position | None, int]:
        watermark, heartbeat_seq = await store.extract_position(conn, self.code)
        text = watermark.get("log") if isinstance(watermark, dict) else None
        return (self.log.position_value(text) if text else None), heartbeat_seq

    async def _save_position(self, conn: store.Conn, position: Position) -> None:
        await store.save_watermark(conn, self.code, {"log": self.log.position_text(position)}, self.fields_record)

    async def _record(self, conn: store.Conn, transactions: list[CapturedTransaction]) -> int:
        """The transactions' last row or deletion per key, recorded with the position after them."""
        pending = self._pending(transactions)
        if any(v is UNCHANGED for values, _ in pending.upserts.values() for v in values):
            await self._fill_unchanged(pending)
        async with conn.transaction():
            changed = 0
            if pending.truncated_at is not None:
                gone = {key: version for key, (_, version) in (await store.mirror_keys(conn, self.code)).items()}
                changed += await store.record_deletes(conn, self.code, gone, pending.truncated_at)
            items = [(self.maker.row(values), at) for values, at in pending.upserts.values()]
            files, refused = self.maker.take_files()
            recorded = await store.record_rows(
                conn, self.code, self.schema, items, self.fields_record, files=files, refused=refused
            )
            changed += recorded.changed
            by_time: dict[dt.datetime, list[str]] = {}
            for key, at in pending.deletes.items():
                by_time.setdefault(at, []).append(key)
            for at, keys in by_time.items():
                changed += await store.record_key_deletes(conn, self.code, keys, at)
            await self._save_position(conn, transactions[-1].end)
        return changed

    def _pending(self, transactions: list[CapturedTransaction]) -> Pending:
        pending = Pending({}, {})
        for transaction in transactions:
            at = transaction.commit_time
            if transaction.truncated:
                pending.upserts.clear()
                pending.deletes.clear()
                pending.truncated_at = at
            for change in transaction.changes:
                if change.old is not None:  # the key itself may have changed
                    old_key = self._key_of(change.old)
                    if old_key is not None and (change.op == "d" or old_key != self._key_of(change.row)):
                        pending.upserts.pop(old_key, None)
                        pending.deletes[old_key] = at
                if change.op == "d":
                    key = self._key_of(change.row)
                    if key is not None:
                        pending.upserts.pop(key, None)
                        pending.deletes[key] = at
                    continue
                values = self._values(change.row)
                key = self.maker.key_text(values[self.columns.index(self.key)])
                pending.deletes.pop(key, None)
                pending.upserts[key] = (values, at)
        return pending

    def _values(self, row: dict[str, Any]) -> list[Any]:
        """The row's values in the catalog's field order (other columns of the table left out)."""
        missing = [name for name in self.columns if name not in row]
        if missing:
            raise SourceError(
                f"table {self.pub.table} has no column {', '.join(missing)} of the catalog entry {self.code} "
                "(the published table needs a column named as each field)"
            )
        return [row[name] for name in self.columns]

    def _key_of(self, row: dict[str, Any]) -> str | None:
        value = row.get(self.key)
        return None if value is None or value is UNCHANGED else self.maker.key_text(value)

    async def _fill_unchanged(self, pending: Pending) -> None:
        """An update that left a large (TOASTed) value as it was does not carry it: the row is read
        from the table (as new as the change, or newer: the log brings it to its newest)."""
        keys = [key for key, (values, _) in pending.upserts.items() if any(v is UNCHANGED for v in values)]
        key_index = self.columns.index(self.key)
        for start in range(0, len(keys), LOAD_CHUNK):
            wanted = {key: pending.upserts[key][0][key_index] for key in keys[start : start + LOAD_CHUNK]}
            # read_keys puts a change column first: the key serves as one here.
            rows = await asyncio.to_thread(
                self.source.read_keys, self.pub.table, self.columns, self.key, self.key, list(wanted.values())
            )
            found = {self.maker.key_text(row[0]): list(row[1:]) for row in rows}
            for key in wanted:
                at = pending.upserts[key][1]
                if key in found:
                    pending.upserts[key] = (found[key], at)
                else:  # deleted since: its deletion follows in the log
                    del pending.upserts[key]

    async def load(self, conn: store.Conn, on_rows: Callable[[int], None] | None = None) -> int:
        """Load the whole table at a new slot's first position (see the module's docstring); rows
        of the mirror the table no longer holds are deleted. Returns the rows recorded."""
        async with _capture_lock(conn, self.code, wait=True):
            log.info("log capture: loading the table at a new position", resource=self.code, log=self.log.slot)
            started = time.monotonic()
            seen: set[str] = set()
            changed = 0
            now = utcnow()
            with self.log.new_slot(self.columns, LOAD_CHUNK) as (position, chunks):
                while (rows := await asyncio.to_thread(next, chunks, None)) is not None:
                    items = [(self.maker.row(values), now) for values in rows]
                    seen.update(str(row[self.key]) for row, _ in items)
                    files, refused = self.maker.take_files()
                    async with conn.transaction():
                        recorded = await store.record_rows(
                            conn, self.code, self.schema, items, self.fields_record, files=files, refused=refused
                        )
                    changed += recorded.changed
                    self.state.ok(HOP, self.code, rows=recorded.changed, batches=1, read=len(rows))
                    if on_rows is not None:
                        on_rows(len(seen))
                async with conn.transaction():
                    held = await store.mirror_keys(conn, self.code)
                    gone = {key: version for key, (_, version) in held.items() if key not in seen}
                    changed += await store.record_deletes(conn, self.code, gone, now)
                    await self._save_position(conn, position)
            log.info(
                "log capture: table loaded; capture goes on from its position",
                resource=self.code, rows=len(seen), recorded=changed, position=self.log.position_text(position),
                seconds=round(time.monotonic() - started, 1),
            )  # fmt: skip
            return changed


def _after(end: Position, position: Position) -> bool:
    return end > position  # type: ignore[operator]  # both of one log: LSNs, or (file, offset) pairs


def open_change_log(source: Source, pub: Publication, key: str, department: str) -> ChangeLog:
    from front_end_node.mariadb_binlog import MariaDbBinlog
    from front_end_node.postgres_log import PostgresLog

    if isinstance(source, PostgresSource):
        return PostgresLog(source, pub, key)
    assert isinstance(source, MariaDbSource)
    return MariaDbBinlog(source, pub, key, department)


@contextlib.asynccontextmanager
async def _capture_lock(conn: store.Conn, code: str, *, wait: bool) -> Any:
    """One reader of a resource's log at a time: the agent's steps, or a load (the agent's own, which
    its session holds again, or `gdx node sync --full`'s, which waits for the step in hand)."""
    if wait:
        await conn.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", (_LOAD_LOCK, code))
    else:
        cur = await conn.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s))", (_LOAD_LOCK, code))
        if not (await cur.fetchone() or (False,))[0]:
            raise Waiting(f"{code}: a load of the table is moving (gdx node sync --full): capture waits for it")
    try:
        yield
    finally:
        await conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (_LOAD_LOCK, code))
