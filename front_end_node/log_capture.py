"""Hop 1 by log capture (`capture: log`): a PostgreSQL table's changes read from the write-ahead log.

A logical replication slot (one per published resource, `gdx_<resource>`) keeps every change
committed to the tables of the DBA's publication of the same name, decoded by pgoutput (built
into PostgreSQL: nothing to install on the business database). Each step peeks at the slot's
next transactions, records their rows and deletions in the front-end database together with the
position after the last of them, and only then moves the slot on: a crash in between peeks the
same transactions again, and those at or below the recorded position are skipped. So nothing is
lost and nothing recorded twice, whenever the agent is killed.

The first step, or one after the slot was lost, loads the table whole: the slot is made with an
exported snapshot, the table read as that snapshot sees it, and capture goes on from the slot's
first position, so the load and the log meet without a gap or a change read twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import structlog
from psycopg.pq import Format

from front_end_node import store
from front_end_node.errors import Waiting
from front_end_node.heartbeats import SourceHeartbeat
from front_end_node.pgoutput import UNCHANGED, Decoder, Relation, Transaction, lsn_text, lsn_value
from front_end_node.sources import PostgresSource, SourceError
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
# The front-end database's advisory lock class of a load (one per resource: the agent's or `sync --full`).
_LOAD_LOCK = 0x67647843  # "gdxC"


def slot_name(resource: str) -> str:
    """The slot's and the publication's name: PostgreSQL takes [a-z0-9_], 63 characters at most."""
    return ("gdx_" + re.sub(r"[^a-z0-9_]", "_", resource.lower()))[:63]


class PostgresLog:
    """The slot and publication of one resource on the business database, and its checks."""

    def __init__(self, source: PostgresSource, pub: Publication, key: str) -> None:
        self.source = source
        self.pub = pub
        self.key = key
        self.slot = slot_name(pub.resource)
        self.publication = self.slot
        self._decoder = Decoder()
        self._loaders: dict[int, Any] = {}

    def _query(self, sql: str, params: list[Any] | tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            return self.source.query(sql, params)
        except psycopg.Error as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise SourceError(f"log capture of {self.pub.resource}: {first}") from None

    def check(self) -> None:
        """Refuse, with what the DBA runs, a database that cannot be captured from."""
        db = self.source.db
        table = self.pub.table
        wal_level = self._query("SELECT current_setting('wal_level')")[0][0]
        if wal_level != "logical":
            raise SourceError(
                f"capture: log needs wal_level = logical on the business database (it is {wal_level}): the DBA runs "
                "ALTER SYSTEM SET wal_level = logical; and restarts PostgreSQL (see docs/front-end-node.md, "
                "'Log capture: the DBA's checklist')"
            )
        if not self._query("SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user")[0][0]:
            raise SourceError(
                f"capture: log needs the REPLICATION attribute for {db.user}: the DBA runs "
                f'ALTER ROLE "{db.user}" REPLICATION;'
            )
        schema, _, name = table.rpartition(".")
        found = self._query(
            "SELECT p.pubinsert AND p.pubupdate AND p.pubdelete AND p.pubtruncate, EXISTS (SELECT FROM "
            "pg_publication_tables t WHERE t.pubname = p.pubname AND t.tablename = %s AND t.schemaname = "
            "coalesce(nullif(%s, ''), current_schema())) FROM pg_publication p WHERE p.pubname = %s",
            [name, schema, self.publication],
        )
        if not found:
            raise SourceError(
                f"capture: log needs the publication {self.publication} of table {table}: the DBA (as the table's "
                f"owner) runs CREATE PUBLICATION {self.publication} FOR TABLE {table};"
            )
        all_ops, holds_table = found[0]
        if not holds_table:
            raise SourceError(
                f"publication {self.publication} does not hold table {table}: the DBA runs "
                f"ALTER PUBLICATION {self.publication} ADD TABLE {table};"
            )
        if not all_ops:
            raise SourceError(
                f"publication {self.publication} leaves out some operations: the DBA runs ALTER PUBLICATION "
                f"{self.publication} SET (publish = 'insert, update, delete, truncate');"
            )
        identity, columns = self._query(
            "SELECT c.relreplident, ARRAY(SELECT a.attname::text FROM pg_index i JOIN pg_attribute a ON "
            "a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) WHERE i.indrelid = c.oid AND CASE c.relreplident "
            "WHEN 'd' THEN i.indisprimary WHEN 'i' THEN i.indisreplident ELSE false END) "
            "FROM pg_class c WHERE c.oid = %s::regclass",
            [table],
        )[0]
        if identity != "f" and columns != [self.key]:
            raise SourceError(
                f"a deletion from {table} must name the key {self.key!r}, and the table's replica identity is "
                f"{columns or 'nothing'}: the DBA runs ALTER TABLE {table} REPLICA IDENTITY FULL; (or REPLICA "
                f"IDENTITY USING INDEX with a unique index of {self.key} alone)"
            )

    def figures(self) -> SlotFigures | None:
        """The slot's state, or None when there is no slot."""
        rows = self._query(
            "SELECT coalesce(wal_status, 'lost'), coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn), 0), "
            "coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn), 0) "
            "FROM pg_replication_slots WHERE slot_name = %s",
            [self.slot],
        )
        if not rows:
            return None
        status, retained, behind = rows[0]
        return SlotFigures(str(status), int(retained), int(behind))

    @contextlib.contextmanager
    def new_slot(self) -> Iterator[tuple[int, str]]:
        """A new slot (any old one dropped), with its first position and the name of the snapshot
        that sees the tables as of that position; the snapshot lives while this block runs."""
        self.drop()
        conn = self.source.replication_connection()
        try:
            # The replication protocol takes simple queries only: psycopg's exec_ sends one.
            result = conn.pgconn.exec_(
                f"CREATE_REPLICATION_SLOT {self.slot} LOGICAL pgoutput (SNAPSHOT 'export')".encode()
            )
            if result.status != psycopg.pq.ExecStatus.TUPLES_OK:
                message = result.error_message.decode(errors="replace").strip()
                raise SourceError(f"log capture of {self.pub.resource}: cannot make slot {self.slot}: {message}")
            position = lsn_value(result.get_value(0, 1).decode())  # type: ignore[union-attr]
            snapshot = result.get_value(0, 2).decode()  # type: ignore[union-attr]
            self._decoder = Decoder()
            yield position, snapshot
        finally:
            conn.close()

    def drop(self) -> bool:
        """Drop the slot (its WAL is let go); False when there was none."""
        rows = self._query(
            "SELECT pg_drop_replication_slot(slot_name) IS NULL FROM pg_replication_slots WHERE slot_name = %s",
            [self.slot],
        )
        return bool(rows)

    def peek(self, limit: int) -> list[Transaction]:
        """The committed transactions after the slot's confirmed position (whole, about ``limit``
        changes), in commit order; the slot does not move."""
        rows = self._query(
            "SELECT data FROM pg_logical_slot_peek_binary_changes(%s, NULL, %s, 'proto_version', '1', "
            "'publication_names', %s)",
            [self.slot, limit, self.publication],
        )
        decoder = self._decoder
        done = []
        for (data,) in rows:
            transaction = decoder.feed(bytes(data))
            if transaction is not None:
                done.append(transaction)
        return done

    def advance(self, position: int) -> None:
        self._query("SELECT pg_replication_slot_advance(%s, %s::pg_lsn)", [self.slot, lsn_text(position)])

    def relation(self, oid: int) -> Relation:
        return self._decoder.relations[oid]

    def value(self, type_oid: int, data: bytes) -> Any:
        """A value as the type's text output gave it, loaded as psycopg loads a query's (so rows are
        the same as a poll reads them)."""
        loader = self._loaders.get(type_oid)
        if loader is None:
            conn = self.source._connection()
            found = conn.adapters.get_loader(type_oid, Format.TEXT)
            loader = found(type_oid, conn) if found is not None else None
            self._loaders[type_oid] = loader
        return data.decode() if loader is None else loader.load(data)


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
        source: PostgresSource,
        zone: ZoneInfo,
        *,
        heartbeat: SourceHeartbeat,
        state: AgentState,
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
        self.log = PostgresLog(source, pub, spec.primary_key)
        self._heartbeat = heartbeat
        self._next_heartbeat = 0.0
        self._next_figures = 0.0
        self._checked = False

    async def step(self, conn: store.Conn) -> bool:
        if not self._checked:
            await asyncio.to_thread(self.log.check)
            self._checked = True
        position, heartbeat_seq = await self._position(conn)
        slot = await self._figures()
        if slot is None or position is None:
            await self.load(conn)
            return True
        if slot.wal_status == "lost":
            raise SourceError(
                f"replication slot {self.log.slot} lost WAL it still needed (the business database's "
                "max_slot_wal_keep_size let it go): changes may be missing. Load the table again: "
                f"gdx node sync --full --restart {self.code}"
            )
        beat = None
        if time.monotonic() >= self._next_heartbeat:
            # Before the peek: every change committed before the beat's time is in what is peeked.
            beat = await self._heartbeat(heartbeat_seq)
        transactions = await asyncio.to_thread(self.log.peek, PEEK_CHANGES)
        fresh = [t for t in transactions if t.end_lsn > position]
        changed = 0
        if fresh:
            changed = await self._record(conn, fresh)
        if transactions:
            await asyncio.to_thread(self.log.advance, transactions[-1].end_lsn)
        caught_up = sum(len(t.changes) for t in transactions) < PEEK_CHANGES
        if beat is not None and caught_up:
            async with conn.transaction():
                await store.queue_heartbeat(conn, self.code, *beat)
                await conn.execute(
                    "UPDATE gdx.extract_state SET heartbeat_seq = %s WHERE resource = %s", (beat[0], self.code)
                )
            self._next_heartbeat = time.monotonic() + self._heartbeat.interval_s
        tidied, self.maker.tidied = self.maker.tidied, 0
        self.state.ok(HOP, self.code, rows=changed, batches=1 if changed else 0, read=len(fresh), tidied=tidied)
        return bool(transactions)

    async def _figures(self) -> SlotFigures | None:
        figures = await asyncio.to_thread(self.log.figures)
        if figures is not None and time.monotonic() >= self._next_figures:
            self.state.capture[self.code] = figures
            self._next_figures = time.monotonic() + SLOT_FIGURES_EVERY_S
        return figures

    async def _position(self, conn: store.Conn) -> tuple[int | None, int]:
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO gdx.extract_state (resource) VALUES (%s) ON CONFLICT DO NOTHING", (self.code,)
            )
            cur = await conn.execute(
                "SELECT watermark, heartbeat_seq FROM gdx.extract_state WHERE resource = %s", (self.code,)
            )
            row = await cur.fetchone()
        assert row is not None
        watermark, heartbeat_seq = row
        lsn = watermark.get("lsn") if isinstance(watermark, dict) else None
        return (lsn_value(lsn) if lsn else None), int(heartbeat_seq)

    async def _save_position(self, conn: store.Conn, position: int) -> None:
        await store.save_watermark(conn, self.code, {"lsn": lsn_text(position)}, self.fields_record)

    async def _record(self, conn: store.Conn, transactions: list[Transaction]) -> int:
        """The transactions' last row or deletion per key, recorded with the position after them."""
        pending = self._pending(transactions)
        if pending.upserts and any(v is UNCHANGED for values, _ in pending.upserts.values() for v in values):
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
            await self._save_position(conn, transactions[-1].end_lsn)
        return changed

    def _pending(self, transactions: list[Transaction]) -> Pending:
        pending = Pending({}, {})
        table = self.pub.table.rpartition(".")[2]
        for transaction in transactions:
            at = transaction.commit_time
            for oid in transaction.truncated:
                if self.log.relation(oid).name == table:
                    pending.upserts.clear()
                    pending.deletes.clear()
                    pending.truncated_at = at
            for change in transaction.changes:
                relation = self.log.relation(change.relation)
                if relation.name != table:
                    continue  # another table of a publication the DBA shares
                if change.old is not None:  # the key itself changed, or a whole old row came
                    old_key = self._key_of(relation, change.old)
                    if old_key is not None:
                        pending.upserts.pop(old_key, None)
                        pending.deletes[old_key] = at
                if change.op == "d":
                    key = self._key_of(relation, change.values)
                    if key is not None:
                        pending.upserts.pop(key, None)
                        pending.deletes[key] = at
                    continue
                values = self._values(relation, change.values)
                key = self.maker.key_text(values[self.columns.index(self.key)])
                pending.deletes.pop(key, None)
                pending.upserts[key] = (values, at)
        return pending

    def _values(self, relation: Relation, raw: list[Any]) -> list[Any]:
        """The row's values in the catalog's field order (other columns of the table left out)."""
        by_name = {}
        for column, value in zip(relation.columns, raw, strict=True):
            if value is None or value is UNCHANGED:
                by_name[column.name] = value
            else:
                by_name[column.name] = self.log.value(column.type_oid, value)
        missing = [name for name in self.columns if name not in by_name]
        if missing:
            raise SourceError(
                f"table {self.pub.table} has no column {', '.join(missing)} of the catalog entry {self.code} "
                "(the published table needs a column named as each field)"
            )
        return [by_name[name] for name in self.columns]

    def _key_of(self, relation: Relation, raw: list[Any]) -> str | None:
        for column, value in zip(relation.columns, raw, strict=True):
            if column.name == self.key and isinstance(value, bytes):
                return self.maker.key_text(self.log.value(column.type_oid, value))
        return None

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
        async with _load_lock(conn, self.code):
            log.info("log capture: loading the table at a new replication slot", resource=self.code, slot=self.log.slot)
            started = time.monotonic()
            seen: set[str] = set()
            changed = 0
            now = utcnow()
            with self.log.new_slot() as (position, snapshot):
                chunks = self.source.iter_snapshot(self.pub.table, self.columns, LOAD_CHUNK, snapshot)
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
                "log capture: table loaded; capture goes on from the slot",
                resource=self.code, rows=len(seen), recorded=changed, position=lsn_text(position),
                seconds=round(time.monotonic() - started, 1),
            )  # fmt: skip
            return changed


@contextlib.asynccontextmanager
async def _load_lock(conn: store.Conn, code: str) -> Any:
    """One load of a resource at a time (the agent's, or `gdx node sync --full`'s)."""
    cur = await conn.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s))", (_LOAD_LOCK, code))
    if not (await cur.fetchone() or (False,))[0]:
        raise Waiting(f"{code}: a load of the table is moving (gdx node sync --full, or another agent)")
    try:
        yield
    finally:
        await conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (_LOAD_LOCK, code))
