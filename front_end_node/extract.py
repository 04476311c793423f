"""Hop 1: the department's business database -> the front-end database.

Two ways to find changes, per published table:
- change column (the default): rows whose column is at or after the watermark, minus a
  lookback for transactions that commit after a later one; re-read rows whose digest did
  not change are dropped, so the lookback costs reads, never duplicates. Once the source's
  clock is a lookback past a value, no late commit can still bring a row below it: the
  window closes there, so an idle table costs an empty query, not a re-read;
- keyed comparison: every key (and, without a change column, every row's digest) compared
  with the mirror. It is how a table without a change column is extracted at all, and how
  deletions are found in every table: a key that is gone from the source is a deletion.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import time
from typing import Any
from zoneinfo import ZoneInfo

from psycopg.types.json import Jsonb

from front_end_node import store
from front_end_node.config import Publication
from front_end_node.health import AgentState, utcnow
from front_end_node.sources import Source
from front_end_node.wire import RowMaker, aware, digest
from gdx.protocol import ResourceSpec

HOP = "extract"


def encode_watermark(value: Any) -> dict[str, Any]:
    if isinstance(value, dt.datetime):
        return {"ts": value.isoformat()}
    if isinstance(value, int):
        return {"int": value}
    return {"dec": str(value)}


def decode_watermark(data: dict[str, Any] | None) -> Any:
    if not data:
        return None
    if "ts" in data:
        return dt.datetime.fromisoformat(data["ts"])
    if "int" in data:
        return int(data["int"])
    return decimal.Decimal(data["dec"])


class Extractor:
    def __init__(
        self,
        pub: Publication,
        spec: ResourceSpec,
        source: Source,
        zone: ZoneInfo,
        *,
        batch_size: int,
        heartbeat_table: str | None,
        heartbeat_interval_s: float,
        state: AgentState,
    ) -> None:
        self.pub = pub
        self.code = pub.resource
        self.source = source
        self.zone = zone
        self.batch_size = batch_size
        self.heartbeat_table = heartbeat_table
        self.heartbeat_interval_s = heartbeat_interval_s
        self.state = state
        self.fields = [(f.name, f.type) for f in spec.fields]
        self.columns = [name for name, _ in self.fields]
        self.key = spec.primary_key
        self.key_index = self.columns.index(self.key)
        self.maker = RowMaker(self.fields, zone)
        self.schema = spec.row_schema()
        self._next_compare = 0.0
        self._next_heartbeat = 0.0
        # Digests of rows this process committed to the mirror lately: a row re-read in the
        # lookback window with the same digest is dropped here, without asking the mirror.
        self._recent: dict[str, bytes] = {}
        # The change-column value of each of those rows: a row re-read with the same value is the
        # same version, dropped before it is even converted (the lookback window is re-read on
        # every cycle: at 2,000 changes/s and 2 s of lookback, 4,000 rows a cycle).
        self._recent_change: dict[str, Any] = {}
        # Every row with a change-column value below `_settled` has been read. `_anchor` is a
        # value read and the monotonic time after that read: the source's clock was past the
        # value then, and has moved on as much as ours since (both only in memory: a restarted
        # agent re-reads one lookback window).
        self._settled: dt.datetime | None = None
        self._anchor: tuple[dt.datetime, float] | None = None

    def _commit_time(self, change_value: Any, fallback: dt.datetime) -> dt.datetime:
        return aware(change_value, self.zone) if isinstance(change_value, dt.datetime) else fallback

    async def _position(self, conn: store.Conn) -> tuple[Any, int]:
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO gdx.extract_state (resource) VALUES (%s) ON CONFLICT DO NOTHING", (self.code,)
            )
            cur = await conn.execute(
                "SELECT watermark, heartbeat_seq FROM gdx.extract_state WHERE resource = %s", (self.code,)
            )
            row = await cur.fetchone()
        assert row is not None
        return decode_watermark(row[0]), int(row[1])

    async def step(self, conn: store.Conn) -> bool:
        """One cycle; True when it found changes (so the caller goes on without pausing)."""
        watermark, heartbeat_seq = await self._position(conn)
        beat = await self._heartbeat(heartbeat_seq) if time.monotonic() >= self._next_heartbeat else None
        changed = read = 0
        if self.pub.change_column:
            changed, read = await self._incremental(conn, watermark)
        else:
            changed = await self.compare_when_due(conn)
        if beat is not None:
            # After the data read: everything committed before the heartbeat was read first.
            async with conn.transaction():
                await store.queue_heartbeat(conn, self.code, *beat)
                await conn.execute(
                    "UPDATE gdx.extract_state SET heartbeat_seq = %s WHERE resource = %s", (beat[0], self.code)
                )
            self._next_heartbeat = time.monotonic() + self.heartbeat_interval_s
        self.state.ok(HOP, self.code, rows=changed, batches=1 if changed else 0, read=read)
        return changed > 0

    async def _heartbeat(self, last_seq: int) -> tuple[int, dt.datetime] | None:
        """The heartbeat to send after this cycle's read: the row the agent wrote into the
        business database's heartbeat table where allowed, else the source's clock."""
        if self.heartbeat_table is None:
            return last_seq + 1, await asyncio.to_thread(self.source.now)

        def write_and_read() -> tuple[int, dt.datetime] | None:
            assert self.heartbeat_table is not None
            self.source.write_heartbeat(self.heartbeat_table, self.code)
            return self.source.read_heartbeat(self.heartbeat_table, self.code)

        read = await asyncio.to_thread(write_and_read)
        if read is None or read[0] <= last_seq:
            return None
        return read[0], aware(read[1], self.zone)

    async def _incremental(self, conn: store.Conn, watermark: Any) -> tuple[int, int]:
        """Read the changes after the watermark; returns (rows recorded, rows read)."""
        assert self.pub.change_column is not None
        started = time.monotonic()
        lower = self._lower_bound(watermark, started)
        after: tuple[Any, Any] | None = None
        changed = read = 0
        while True:
            rows = await asyncio.to_thread(
                self.source.read_changed,
                self.pub.table,
                self.columns,
                self.pub.change_column,
                self.key,
                lower,
                after,
                self.batch_size,
            )
            if not rows:
                break
            read += len(rows)
            now = utcnow()
            items: list[tuple[dict[str, Any], dt.datetime]] = []
            digests: dict[str, bytes] = {}
            versions: dict[str, Any] = {}
            for values in rows:
                source_key = str(values[1 + self.key_index])
                if self._recent_change.get(source_key) == values[0]:
                    continue
                versions[source_key] = values[0]
                row = self.maker.row(values[1:])
                key, row_digest = str(row[self.key]), digest(row)
                if self._recent.get(key) != row_digest:
                    items.append((row, self._commit_time(values[0], now)))
                    digests[key] = row_digest
            newest = rows[-1][0]
            if isinstance(newest, dt.datetime) and (self._anchor is None or newest > self._anchor[0]):
                self._anchor = (newest, time.monotonic())
            async with conn.transaction():
                recorded = await store.record_rows(conn, self.code, self.schema, items)
                if watermark is None or newest > watermark:
                    watermark = newest
                    await conn.execute(
                        "UPDATE gdx.extract_state SET watermark = %s WHERE resource = %s",
                        (Jsonb(encode_watermark(newest)), self.code),
                    )
            if len(self._recent) > 500_000 or len(self._recent_change) > 500_000:
                self._recent.clear()
                self._recent_change.clear()
            self._recent.update(digests)
            self._recent_change.update(versions)
            changed += recorded.changed
            after = (newest, rows[-1][1 + self.key_index])
            if len(rows) < self.batch_size:
                break
        self._settle(started)
        return changed, read

    def _lower_bound(self, watermark: Any, started: float) -> Any:
        if not isinstance(watermark, dt.datetime):
            return watermark  # a counter: no clock, no lookback
        if self._anchor is None:
            # The watermark was read before, so the source's clock is past it now.
            self._anchor = (watermark, started)
        lower = watermark - dt.timedelta(seconds=self.pub.lookback_s)
        return lower if self._settled is None or self._settled < lower else self._settled

    def _settle(self, started: float) -> None:
        """After a complete read that began at `started`: a late commit can only bring values
        within a lookback of the source's clock at that moment, so everything below is read.
        One second more, for columns of whole seconds (a value up to a second before the change)."""
        if self._anchor is None:
            return
        value, seen = self._anchor
        settled = value + dt.timedelta(seconds=started - seen - self.pub.lookback_s - 1)
        if self._settled is None or settled > self._settled:
            self._settled = settled

    async def compare_when_due(self, conn: store.Conn) -> int:
        if time.monotonic() < self._next_compare:
            return 0
        started = time.monotonic()
        changed = await self.compare(conn)
        # A comparison of a big table reads every key on both sides: keep it under about 5%
        # of the time, whatever the configured interval.
        took = time.monotonic() - started
        self._next_compare = time.monotonic() + max(self.pub.compare_every(), 20 * took)
        return changed

    async def compare(self, conn: store.Conn) -> int:
        """Keyed comparison with the mirror: deletions always; changed rows when the table has
        no change column. The mirror is read before the source, so a key that is in the
        snapshot and missing at the source was deleted there."""
        if self.pub.change_column is not None:
            return await self._find_deletions(conn)

        snapshot = await store.mirror_keys(conn, self.code)

        def scan() -> tuple[set[str], list[dict[str, Any]]]:
            seen: set[str] = set()
            changed: list[dict[str, Any]] = []
            for chunk in self.source.iter_rows(self.pub.table, self.columns, 10_000):
                for values in chunk:
                    row = self.maker.row(values)
                    key = str(row[self.key])
                    seen.add(key)
                    held = snapshot.get(key)
                    if held is None or held[0] != digest(row):
                        changed.append(row)
            return seen, changed

        seen, changed_rows = await asyncio.to_thread(scan)
        now = utcnow()
        changed = 0
        for start in range(0, len(changed_rows), self.batch_size):
            async with conn.transaction():
                items = [(row, now) for row in changed_rows[start : start + self.batch_size]]
                changed += (await store.record_rows(conn, self.code, self.schema, items)).changed
        return changed + await self._record_deletions(conn, snapshot, seen, now)

    async def _find_deletions(self, conn: store.Conn) -> int:
        """Deletions of a table with a change column (its other changes come incrementally):
        the key sets are compared per bucket by the two databases, and the keys of the buckets
        that differ are read; a table and mirror that agree cost two aggregate queries."""
        table, key = self.pub.table, self.key
        mirror = await store.mirror_key_tally(conn, self.code)
        source = await asyncio.to_thread(self.source.key_tally, table, key)
        buckets = sorted(b for b in mirror if mirror[b] != source.get(b))
        if not buckets:
            return await self._record_deletions(conn, {}, set(), utcnow())
        snapshot = await store.mirror_keys(conn, self.code, buckets)
        seen = set(await asyncio.to_thread(self.source.keys_in, table, key, buckets))
        return await self._record_deletions(conn, snapshot, seen, utcnow())

    async def _record_deletions(
        self, conn: store.Conn, snapshot: dict[str, tuple[bytes | None, int]], seen: set[str], now: dt.datetime
    ) -> int:
        gone = {key: version for key, (_, version) in snapshot.items() if key not in seen}
        for key in gone:
            self._recent.pop(key, None)  # re-inserted with the same content, it must flow again
            self._recent_change.pop(key, None)
        deleted = 0
        if gone:
            async with conn.transaction():
                deleted = await store.record_deletes(conn, self.code, gone, now)
        async with conn.transaction():
            await conn.execute("UPDATE gdx.extract_state SET last_compare_at = now() WHERE resource = %s", (self.code,))
        return deleted


class DeletionScan:
    """The keyed comparison of a table with a change column, in its own loop so that reading a
    big table's keys never holds up incremental extraction. It has its own source connection."""

    def __init__(self, extractor: Extractor) -> None:
        self.extractor = extractor

    async def step(self, conn: store.Conn) -> bool:
        changed = await self.extractor.compare_when_due(conn)
        self.extractor.state.ok("compare", self.extractor.code, rows=changed, batches=1 if changed else 0)
        return False
