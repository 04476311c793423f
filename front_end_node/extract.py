"""Hop 1: the department's business database -> the front-end database.

Two ways to find changes, per published table:
- change column (the default): each cycle reads the rows after the newest (column, key) read
  so far. A transaction may commit after a later one and bring a row below that point (a
  late commit), so once the source's clock is a lookback past a range of values, that range
  is checked once more, keys and values only: a row not read at that value is read then.
  Each row is read about once, however busy or idle the table, and a late commit arrives
  within the lookback (and a second or two);
- keyed comparison: every key (and, without a change column, every row's digest) compared
  with the mirror. It is how a table without a change column is extracted at all, and how
  deletions are found in every table: a key that is gone from the source is a deletion.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import itertools
import time
from typing import Any
from zoneinfo import ZoneInfo

import structlog

from front_end_node import store
from front_end_node.errors import Waiting
from front_end_node.heartbeats import SourceHeartbeat
from front_end_node.key_ranges import Pacer
from front_end_node.sources import KeyTally, Source, add_tally
from front_end_node.state import AgentState, utcnow
from front_end_node.wire import RowMaker, aware, digest
from gdx.protocol import ResourceSpec
from gdx.sharing import Publication

log = structlog.get_logger("gdx.node")

HOP = "extract"
# Ranges of settled change values are checked for late commits once they span this much.
RECHECK_EVERY = dt.timedelta(seconds=1)
# How often the rows stamped ahead of the business database's clock are counted (a metric).
AHEAD_COUNT_EVERY_S = 10.0
# Keys found by one comparison and held for reading: more wait for the next comparison (a table
# whose change column was added lately can hold a million rows no poll reads).
MISSING_HELD = 100_000
# Rows read at a time from a table of files (a resource of format file): each holds a file's bytes.
FILE_BATCH_ROWS = 20


def encode_watermark(value: Any, checked: dt.datetime | None = None) -> dict[str, Any]:
    """The newest change value read and, for timestamps, the value below which late commits
    have been looked for."""
    if isinstance(value, dt.datetime):
        return {"ts": value.isoformat()} | ({"checked": checked.isoformat()} if checked is not None else {})
    if isinstance(value, int):
        return {"int": value}
    return {"dec": str(value)}


def decode_checked(data: dict[str, Any] | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(data["checked"]) if data and "checked" in data else None


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
        missing: dict[str, Any] | None = None,
    ) -> None:
        if spec.file_field is not None and pub.change_column is None:
            # A comparison reads every row, and would hold every changed file in memory at once.
            raise Waiting(
                f"{pub.resource} is a resource of files: publish its table with a change_column (node.yml), "
                "so that its files are read as they change"
            )
        self.pub = pub
        self.code = pub.resource
        self.source = source
        self.zone = zone
        self.batch_size = min(batch_size, FILE_BATCH_ROWS) if spec.file_field is not None else batch_size
        self._heartbeat = SourceHeartbeat(source, heartbeat_table, pub.resource, zone, heartbeat_interval_s)
        self.state = state
        self.fields = [(f.name, f.type) for f in spec.fields]
        self.columns = [name for name, _ in self.fields]
        self.key = spec.primary_key
        self.key_index = self.columns.index(self.key)
        self.maker = RowMaker.for_spec(spec, zone)
        self.schema = spec.row_schema()
        self.fields_record = store.field_record(spec)
        self._next_compare = 0.0
        self._next_heartbeat = 0.0
        # Digests of rows this process committed to the mirror lately: a row read again with the
        # same digest is dropped here, without asking the mirror.
        self._recent: dict[str, bytes] = {}
        # The change-column value of each of those rows: a row seen again with the same value is
        # the same version, dropped before it is even converted; a settled range's (value, key)
        # pairs are checked against it, and only the rows it lacks are read in full.
        self._recent_change: dict[str, Any] = {}
        # (change value, key) of the newest row read: the next cycle reads after it.
        self._after: tuple[Any, Any] | None = None
        self._watermark: Any = None
        # Late commits have been looked for below `_checked` (kept with the watermark).
        self._checked: dt.datetime | None = None
        # Keys the source has and the mirror lacked at the last keyed comparison (text -> the
        # source's value), shared by the comparison's loop (DeletionScan) and the extraction
        # loop, which reads them: it alone records rows of a table with a change column, so an
        # older read of a row is never recorded after a newer one.
        self._missing = missing if missing is not None else {}
        # A change value read and the monotonic time after that read: the source's clock was
        # past the value then, and has moved on as much as ours since.
        self._anchor: tuple[dt.datetime, float] | None = None
        self._lookback = dt.timedelta(seconds=pub.lookback_s)
        self._loading = False
        # Whether the change column holds timestamps with a zone ("aware"), without ("naive"),
        # or other values ("none"); learnt from the first value seen.
        self._clock: str | None = None
        self._next_ahead_count = 0.0

    def _commit_time(self, change_value: Any, fallback: dt.datetime) -> dt.datetime:
        return aware(change_value, self.zone) if isinstance(change_value, dt.datetime) else fallback

    async def _position(self, conn: store.Conn) -> tuple[Any, dt.datetime | None, int]:
        watermark, heartbeat_seq = await store.extract_position(conn, self.code)
        return decode_watermark(watermark), decode_checked(watermark), heartbeat_seq

    async def step(self, conn: store.Conn) -> bool:
        """One cycle; True when it found changes (so the caller goes on without pausing)."""
        watermark, checked, heartbeat_seq = await self._position(conn)
        beat = await self._heartbeat(heartbeat_seq) if time.monotonic() >= self._next_heartbeat else None
        changed = read = 0
        if self.pub.change_column is None:
            changed = await self.compare_when_due(conn)
        elif not await self._waiting_for_full_load(conn):
            changed, read = await self._incremental(conn, watermark, checked)
            if self._missing:
                more, reread = await self._read_missing(conn)
                changed, read = changed + more, read + reread
        if beat is not None:
            # After the data read: everything committed before the heartbeat was read first.
            await store.record_source_heartbeat(conn, self.code, *beat)
            self._next_heartbeat = time.monotonic() + self._heartbeat.interval_s
        tidied, self.maker.tidied = self.maker.tidied, 0
        self.state.ok(HOP, self.code, rows=changed, batches=1 if changed else 0, read=read, tidied=tidied)
        return changed > 0

    async def _waiting_for_full_load(self, conn: store.Conn) -> bool:
        """`gdx node sync --full` copies every row and sets the watermark that reading goes on
        from: read alongside it, each row would be read, compared and written twice."""
        loading = await store.full_sync_moving(conn, self.code)
        if loading != self._loading:
            self._loading = loading
            what = "a full load is moving: reading waits" if loading else "reading goes on after the full load"
            log.info(what, resource=self.code)
        return loading

    async def _incremental(self, conn: store.Conn, watermark: Any, checked: dt.datetime | None) -> tuple[int, int]:
        """New rows, then late commits when a range is due; returns (rows recorded, rows read)."""
        started = time.monotonic()
        self._watermark = watermark
        if isinstance(watermark, dt.datetime):
            if self._anchor is None:
                self._anchor = (watermark, started)  # read before: the source's clock is past it
            if self._checked is None:
                # Without a record (a watermark from `sync --full`, or an older agent's), the
                # values within a lookback of the watermark may still hide late commits.
                self._checked = checked if checked is not None else watermark - self._lookback - dt.timedelta(seconds=1)
        horizon = await self._horizon(conn, watermark)
        changed, read = await self._read_new(conn, horizon)
        if self._anchor is not None and self._checked is not None:
            more, reread = await self._recheck(conn, started)
            changed, read = changed + more, read + reread
        return changed, read

    async def _horizon(self, conn: store.Conn, watermark: Any) -> dt.datetime | None:
        """The newest change value reading takes now: the business database's own clock. A row
        stamped later (a writer whose clock or session time zone is ahead) waits until the clock
        passes it; read at once, it would carry the watermark past every change made meanwhile,
        and those would never be read. Such rows are counted (gdx_node_source_rows_ahead)."""
        assert self.pub.change_column is not None
        table, column = self.pub.table, self.pub.change_column
        if self._clock is None:
            sample = watermark
            if sample is None:
                sample = await asyncio.to_thread(self.source.max_value, table, column)
            if sample is None:
                return None  # an empty table: nothing to read past
            self._clock = "none" if not isinstance(sample, dt.datetime) else "aware" if sample.tzinfo else "naive"
        if self._clock == "none":
            return None
        now = await asyncio.to_thread(self.source.now)
        horizon = now if self._clock == "aware" else now.astimezone(self.zone).replace(tzinfo=None)
        if isinstance(self._watermark, dt.datetime) and self._watermark > horizon:
            await self._rewind(conn, horizon)
        if time.monotonic() >= self._next_ahead_count:
            ahead = await asyncio.to_thread(self.source.count_above, table, column, horizon)
            if ahead and not self.state.rows_ahead.get(self.code):
                log.warning(
                    "rows stamped ahead of the business database's clock: held back until it passes them",
                    resource=self.code,
                    rows=ahead,
                    source_clock=horizon.isoformat(),
                )
            self.state.rows_ahead[self.code] = ahead
            self._next_ahead_count = time.monotonic() + AHEAD_COUNT_EVERY_S
        return horizon

    async def _rewind(self, conn: store.Conn, horizon: dt.datetime) -> None:
        """A watermark ahead of the source's clock (saved by an agent before this check): read
        again from the clock, and look for rows missed within a lookback of it."""
        log.warning(
            "the watermark is ahead of the business database's clock: reading again from the clock",
            resource=self.code,
            watermark=str(self._watermark),
            source_clock=horizon.isoformat(),
        )
        self._watermark, self._after = horizon, None
        self._anchor = (horizon, time.monotonic())
        floor = horizon - self._lookback - dt.timedelta(seconds=1)
        self._checked = floor if self._checked is None else min(self._checked, floor)
        async with conn.transaction():
            await self._save_position(conn)

    async def _read_new(self, conn: store.Conn, horizon: dt.datetime | None) -> tuple[int, int]:
        """The rows after the newest read (at start: from the watermark on), up to ``horizon``."""
        assert self.pub.change_column is not None
        after, lower = self._after, (self._watermark if self._after is None else None)
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
                horizon,
            )
            if not rows:
                break
            read += len(rows)
            first, newest = rows[0][0], rows[-1][0]
            if isinstance(newest, dt.datetime):
                if self._checked is None:  # the first rows ever read: see _recheck
                    self._checked = first - self._lookback - dt.timedelta(seconds=1)
                if self._anchor is None or newest > self._anchor[0]:
                    self._anchor = (newest, time.monotonic())
            if self._watermark is None or newest > self._watermark:
                self._watermark = newest
            changed += await self._record(conn, rows, save_position=True)
            after = self._after = (newest, rows[-1][1 + self.key_index])
            if len(rows) < self.batch_size:
                break
        return changed, read

    async def _recheck(self, conn: store.Conn, started: float) -> tuple[int, int]:
        """Late commits: a transaction commits within a lookback of its change value, so at
        `started` every row below `settled` is visible. The range since the last check is read
        as (value, key); the rows neither read nor in the mirror at that value are read in
        full. One second more than the lookback, for columns of whole seconds (a value up to a
        second early)."""
        assert self._anchor is not None
        assert self._checked is not None
        assert self.pub.change_column is not None
        value, seen = self._anchor
        settled = value + dt.timedelta(seconds=started - seen) - self._lookback - dt.timedelta(seconds=1)
        if settled - self._checked < RECHECK_EVERY:
            return 0, 0
        pairs = await asyncio.to_thread(
            self.source.read_change_keys, self.pub.table, self.pub.change_column, self.key, self._checked, settled
        )
        text = self.maker.key_text
        missed = [(changed_at, key) for changed_at, key in pairs if self._recent_change.get(text(key)) != changed_at]
        if missed:
            # Rows this process did not read may be in the mirror at that value all the same:
            # loaded by `gdx node sync --full`, or read before a restart.
            held = await store.mirrored_at(conn, self.code, [text(key) for _, key in missed])
            missed = [(at, key) for at, key in missed if held.get(text(key)) != aware(at, self.zone)]
        changed, read = await self._read_keys(conn, [key for _, key in missed])
        read += len(pairs)
        self._checked = settled
        async with conn.transaction():
            await self._save_position(conn)
        return changed, read

    async def _read_missing(self, conn: store.Conn) -> tuple[int, int]:
        """The rows the comparison found at the source and not in the mirror, one batch a cycle
        (new changes keep flowing meanwhile). Most are on their way, or arrived since (a load
        that began as the comparison ran), and are dropped as the mirror now holds them; the
        others no poll would ever read: a NULL change column, or a value below what was already
        checked (a row restored from a backup, a migration that kept old timestamps)."""
        batch = dict(itertools.islice(self._missing.items(), self.batch_size))
        for text in batch:
            del self._missing[text]
        held = await store.live_keys(conn, self.code, list(batch))
        changed, read = await self._read_keys(conn, [value for text, value in batch.items() if text not in held])
        if changed:
            log.info("the keyed comparison found rows the mirror lacked", resource=self.code, rows=changed)
        return changed, read

    async def _read_keys(self, conn: store.Conn, keys: list[Any]) -> tuple[int, int]:
        """The source's rows with these keys, recorded; returns (rows recorded, rows read)."""
        assert self.pub.change_column is not None
        changed = read = 0
        for start in range(0, len(keys), self.batch_size):
            rows = await asyncio.to_thread(
                self.source.read_keys,
                self.pub.table,
                self.columns,
                self.pub.change_column,
                self.key,
                keys[start : start + self.batch_size],
            )
            read += len(rows)
            changed += await self._record(conn, rows, save_position=False)
        return changed, read

    async def _record(self, conn: store.Conn, rows: list[tuple[Any, ...]], *, save_position: bool) -> int:
        """Source rows, each (change value, *columns), into the mirror and outbox; those
        committed by this process with the same change value or digest are dropped first."""
        now = utcnow()
        items: list[tuple[dict[str, Any], dt.datetime]] = []
        digests: dict[str, bytes] = {}
        versions: dict[str, Any] = {}
        for values in rows:
            source_key = self.maker.key_text(values[1 + self.key_index])
            if values[0] is not None and self._recent_change.get(source_key) == values[0]:
                continue  # (a NULL change value tells nothing: the digest decides)
            versions[source_key] = values[0]
            row = self.maker.row(values[1:])
            key, row_digest = str(row[self.key]), digest(row)
            if self._recent.get(key) != row_digest:
                items.append((row, self._commit_time(values[0], now)))
                digests[key] = row_digest
        # Files of rows not recorded after all are left out by record_rows (it keeps those of changed rows).
        files, refused = self.maker.take_files()
        async with conn.transaction():
            recorded = await store.record_rows(
                conn, self.code, self.schema, items, self.fields_record, files=files, refused=refused
            )
            if save_position:
                await self._save_position(conn)
        if len(self._recent) > 500_000 or len(self._recent_change) > 500_000:
            self._recent.clear()
            self._recent_change.clear()
        self._recent.update(digests)
        self._recent_change.update(versions)
        return recorded.changed

    async def _save_position(self, conn: store.Conn) -> None:
        if self._watermark is None:
            return
        position = encode_watermark(self._watermark, self._checked)
        await store.save_watermark(conn, self.code, position, self.fields_record)

    async def compare_when_due(self, conn: store.Conn) -> int:
        if time.monotonic() < self._next_compare:
            return 0
        if await store.full_sync_moving(conn, self.code):
            # The mirror is being filled: every bucket would differ and every key be read, to
            # find deletions the load itself leaves out. Once it ends (or stalls), compare.
            self._next_compare = time.monotonic() + self.pub.compare_every()
            return 0
        started = time.monotonic()
        pacer = Pacer()
        changed = await self.compare(conn, pacer)
        # A comparison of a big table reads every key on both sides: keep its work under about
        # 5% of the time, whatever the configured interval (its pauses do not count).
        took = pacer.busy or time.monotonic() - started
        self._next_compare = time.monotonic() + max(self.pub.compare_every(), 20 * took)
        if self.schema.file_field is not None:
            async with conn.transaction():
                await store.prune_sent_files(conn, self.code, self.schema.file_field)
        return changed

    async def compare(self, conn: store.Conn, pacer: Pacer) -> int:
        """Keyed comparison with the mirror: deletions always; changed rows when the table has
        no change column. The mirror is read before the source, so a key that is in the
        snapshot and missing at the source was deleted there."""
        if self.pub.change_column is not None:
            return await self._find_deletions(conn, pacer)

        started = utcnow()
        snapshot = await store.mirror_keys(conn, self.code)

        files: dict[str, bytes] = {}
        refused: dict[str, str] = {}

        def scan() -> tuple[set[str], list[dict[str, Any]]]:
            seen: set[str] = set()
            changed: list[dict[str, Any]] = []
            for chunk in self.source.iter_rows(self.pub.table, self.columns, 10_000):
                for values in chunk:
                    row = self.maker.row(values)
                    row_files, row_refused = self.maker.take_files()
                    key = str(row[self.key])
                    seen.add(key)
                    held = snapshot.get(key)
                    if held is None or held[0] != digest(row):
                        changed.append(row)
                        files.update(row_files)  # only a changed row's file is kept
                        refused.update(row_refused)
            return seen, changed

        seen, changed_rows = await asyncio.to_thread(scan)
        now = utcnow()
        changed = 0
        for start in range(0, len(changed_rows), self.batch_size):
            async with conn.transaction():
                items = [(row, now) for row in changed_rows[start : start + self.batch_size]]
                changed += (
                    await store.record_rows(
                        conn, self.code, self.schema, items, self.fields_record, files=files, refused=refused
                    )
                ).changed
        return changed + await self._record_deletions(conn, snapshot, seen, now, started)

    async def _find_deletions(self, conn: store.Conn, pacer: Pacer) -> int:
        """Deletions of a table with a change column (its other changes come incrementally):
        the key sets are compared per bucket by the two databases, and the keys of the buckets
        that differ are read; a table and mirror that agree cost two aggregates per key range.
        Each side walks its keys in ranges of its own (key_ranges), pausing between them."""
        table, key, code = self.pub.table, self.key, self.code
        started = utcnow()

        async def mirror_bound(lower: Any, skip: int) -> Any:
            return await store.mirror_key_after(conn, code, lower, skip)

        async def source_bound(lower: Any, skip: int) -> Any:
            return await asyncio.to_thread(self.source.key_after, table, key, lower, skip)

        mirror: KeyTally = {}
        async for lower, upper in pacer.ranges(mirror_bound):
            add_tally(mirror, await store.mirror_key_tally(conn, code, lower, upper))
        source: KeyTally = {}
        async for lower, upper in pacer.ranges(source_bound):
            add_tally(source, await asyncio.to_thread(self.source.key_tally, table, key, lower, upper))
        buckets = sorted(b for b in mirror.keys() | source.keys() if mirror.get(b) != source.get(b))
        if not buckets:
            return await self._record_deletions(conn, {}, set(), utcnow(), started)
        snapshot: dict[str, tuple[bytes | None, int]] = {}
        async for lower, upper in pacer.ranges(mirror_bound):
            snapshot.update(await store.mirror_keys(conn, code, buckets, lower, upper))
        seen: dict[str, Any] = {}
        async for lower, upper in pacer.ranges(source_bound):
            found = await asyncio.to_thread(self.source.keys_in, table, key, buckets, lower, upper)
            # As the mirror holds them: a key the source holds in another form is not a deletion.
            seen.update((self.maker.key_text(value), value) for value in found)
        if not await store.full_sync_moving(conn, code):  # a load that began meanwhile brings them
            lacked = [(text, value) for text, value in seen.items() if text not in snapshot]
            if lacked:
                log.info("keys at the source that the mirror lacks: reading them", resource=code, keys=len(lacked))
                self._missing.update(lacked[: max(0, MISSING_HELD - len(self._missing))])
        return await self._record_deletions(conn, snapshot, set(seen), utcnow(), started)

    async def _record_deletions(
        self,
        conn: store.Conn,
        snapshot: dict[str, tuple[bytes | None, int]],
        seen: set[str],
        now: dt.datetime,
        started: dt.datetime,
    ) -> int:
        """Keys of the snapshot not seen at the source are deleted; quarantined rows whose key
        the source no longer holds (corrected there, or deleted) leave the quarantine. ``seen``
        holds every source key of the buckets that differ from the mirror, and a quarantined
        key, never in the mirror, makes its bucket differ while the source holds it."""
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
            cleared = await store.clear_quarantine(conn, self.code, keep=seen, before=started)
        if cleared:
            log.info("quarantined rows whose key the source no longer holds: cleared", resource=self.code, rows=cleared)
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
