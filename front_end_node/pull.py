"""Hop 3: the central exchange -> this node's front-end database, for each subscription.

Each page of changes is applied to the subscription's table and the cursor advanced in
one transaction: after a crash the node re-reads from the cursor it committed, and the
rows it had applied are exactly those before it.
"""

from __future__ import annotations

import bisect
import csv
import io
import time
from typing import Any

import orjson
import structlog
from psycopg.types.json import Jsonb

from front_end_node import store
from front_end_node.errors import Waiting, Withdrawn
from front_end_node.exchange_client import ExchangeClient, ExchangeError
from front_end_node.state import AgentState
from gdx.fields import FieldType
from gdx.protocol import MAX_PAGE_CHANGES, ChangeOut, Grant, GrantStatus, OnRevoke, ResourceSpec
from gdx.sharing import Subscription

HOP = "pull"
# Rows of a snapshot chunk: about 10 MB of CSV for a 10-field table, a second's work or less.
SNAPSHOT_ROWS = 50_000
# ... and of a resource of files, each of whose rows brings a file along.
FILE_SNAPSHOT_ROWS = 50

log = structlog.get_logger("gdx.node")

SQL_TYPES = {
    FieldType.STRING: "text",
    FieldType.INTEGER: "bigint",
    FieldType.NUMBER: "double precision",
    FieldType.BOOLEAN: "boolean",
    FieldType.DATE: "date",
    FieldType.TIMESTAMP: "timestamptz",
}


async def _columns(conn: store.Conn, table: str) -> list[str]:
    cur = await conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped "
        "ORDER BY attnum",
        (table,),
    )
    return [name for (name,) in await cur.fetchall()]


class LoadedChunks:
    """The chunks a snapshot loaded: each one's last key (None for the last chunk: to the end) and
    the position it was read at. A change the log replays after the load is already in the table
    when its key's chunk was read at or after the change's position."""

    def __init__(self, chunks: list[list[Any]]) -> None:
        self.uppers = [str(upper) for upper, _ in chunks[:-1]]
        self.positions = [int(position) for _, position in chunks]
        self.last_position = max(self.positions)

    def holds(self, key: str, seq: int) -> bool:
        # Keys compare as the exchange orders them: by their text's bytes, which UTF-8 keeps in
        # code point order, Python's order for str.
        return seq <= self.positions[bisect.bisect_left(self.uppers, key)]


class Puller:
    def __init__(
        self, sub: Subscription, client: ExchangeClient, state: AgentState, snapshot_rows: int = SNAPSHOT_ROWS
    ) -> None:
        self.sub = sub
        self.snapshot_rows = snapshot_rows
        self.code = sub.resource
        self.table = sub.table_name()
        self.client = client
        self.state = state
        self.columns: list[str] = []
        self.key = ""
        self.integer_key = False
        self._ignored: frozenset[str] = frozenset()  # fields in old rows that the resource dropped
        self._loaded: LoadedChunks | None = None  # what the snapshot loaded, while the log replays past it
        self._follow_log = False  # a full load was moving when the subscription began: no snapshot
        self._grant_checked = 0.0
        self.file_field: str | None = None  # a resource of files, its file field granted: files come along

    async def prepare(self, conn: store.Conn) -> None:
        """Find the grant, then make the subscription's table hold exactly the granted fields."""
        resource = await self.client.resource(self.code)
        spec = ResourceSpec.model_validate(resource.model_dump(include=set(ResourceSpec.model_fields)))
        await store.cache_spec(conn, self.code, spec)  # the field types, for reconciliation tallies
        grants = [g for g in await self.client.grants() if g.resource == self.code]
        grant = next((g for g in grants if g.purpose == self.sub.purpose), None)
        if grant is None:
            held = "; ".join(repr(g.purpose) for g in grants) or "none"
            raise Waiting(
                f"no grant on {self.code} for the purpose {self.sub.purpose!r} yet (grants held: {held}); "
                "subscribe, or wait for the provider to approve the request"
            )
        if grant.status is not GrantStatus.ACTIVE:
            await self._withdraw(conn, grant)
        granted = set(grant.fields) if grant.fields is not None else None
        fields = [f for f in spec.fields if f.name == spec.primary_key or granted is None or f.name in granted]
        self.columns = [f.name for f in fields]
        self.file_field = spec.file_field if spec.file_field in self.columns else None
        self.key = spec.primary_key
        self.integer_key = next(f.type for f in fields if f.name == self.key) is FieldType.INTEGER
        definitions = ", ".join(
            f'"{f.name}" {SQL_TYPES[f.type]}' + (" PRIMARY KEY" if f.name == spec.primary_key else "") for f in fields
        )
        table = store.quote(self.table)
        async with conn.transaction():
            if "." in self.table:
                await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.table.split(".")[0]}"')
            await conn.execute(f"CREATE TABLE IF NOT EXISTS {table} ({definitions})")
            existing = await _columns(conn, table)
            added = [f for f in fields if f.name not in existing]
            withdrawn = [c for c in existing if c not in self.columns]
            for f in added:
                await conn.execute(f'ALTER TABLE {table} ADD COLUMN "{f.name}" {SQL_TYPES[f.type]}')
            if withdrawn:
                # Data the grant no longer covers is not kept; the columns stay, so that what the
                # department built on the table keeps working.
                cleared = ", ".join(f'"{c}" = NULL' for c in withdrawn)
                holding = " OR ".join(f'"{c}" IS NOT NULL' for c in withdrawn)
                await conn.execute(f"UPDATE {table} SET {cleared} WHERE {holding}")  # noqa: S608
            if spec.file_field is not None:
                # Files no row names any more, or all of them when the grant no longer covers them.
                await store.prune_files(conn, self.code, self.table, self.file_field)
            # Rows applied before a field was granted lack it: read the resource again.
            await conn.execute(
                "INSERT INTO gdx.subscription_state (resource, table_name, fields) "
                "VALUES (%(code)s, %(table)s, %(fields)s) ON CONFLICT (resource) DO UPDATE "
                "SET table_name = EXCLUDED.table_name, fields = EXCLUDED.fields, "
                "after_seq = CASE WHEN %(refill)s THEN 0 ELSE subscription_state.after_seq END, "
                "snapshot_chunks = CASE WHEN %(refill)s THEN NULL ELSE subscription_state.snapshot_chunks END, "
                "refilling = subscription_state.refilling OR (%(refill)s AND subscription_state.after_seq > 0)",
                {
                    "code": self.code,
                    "table": self.table,
                    "fields": orjson.dumps(self.columns).decode(),
                    "refill": bool(added),
                },
            )
        if added or withdrawn:
            log.warning(
                "the subscription's fields changed; its table follows the grant",
                resource=self.code,
                table=self.table,
                added=[f.name for f in added],
                withdrawn_and_cleared=withdrawn,
                read_again=bool(added),
            )
        self._grant_checked = time.monotonic()

    async def _withdraw(self, conn: store.Conn, grant: Grant) -> None:
        """The grant ended: carry out its on_revoke setting, then stop (Withdrawn) until it lives again.
        Purged rows are read again from the start if it does; kept ones are read on from the cursor."""
        purge = grant.on_revoke is OnRevoke.PURGE
        if purge:
            async with conn.transaction():
                cur = await conn.execute("SELECT to_regclass(%s)", (store.quote(self.table),))
                exists = (await cur.fetchone() or [None])[0] is not None
                if exists:
                    held = await conn.execute(f"SELECT EXISTS (SELECT FROM {store.quote(self.table)})")  # noqa: S608
                    if (await held.fetchone() or [False])[0]:
                        await conn.execute(f"TRUNCATE {store.quote(self.table)}")
                        log.warning(
                            "the grant ended: the subscription's rows were purged, as it says",
                            resource=self.code, table=self.table, grant=grant.id, status=grant.status.value,
                        )  # fmt: skip
                await conn.execute("DELETE FROM gdx.file WHERE resource = %s", (self.code,))  # its files go too
                await conn.execute(
                    "UPDATE gdx.subscription_state SET after_seq = 0, refilling = false, snapshot_seq = NULL, "
                    "snapshot_after = NULL WHERE resource = %s",
                    (self.code,),
                )
        rows = "purged" if purge else "kept"
        raise Withdrawn(
            f"{grant.ended_because()}; the subscription is stopped and its rows are {rows} "
            f"(on_revoke: {grant.on_revoke.value})",
            grant.status.value,
            rows,
        )

    async def step(self, conn: store.Conn) -> bool:
        if time.monotonic() - self._grant_checked >= self.sub.grant_check_interval_s:
            await self.prepare(conn)  # a grant changed meanwhile: the table follows it
        cur = await conn.execute(
            "SELECT after_seq, refilling, snapshot_seq, snapshot_after, snapshot_chunks FROM gdx.subscription_state "
            "WHERE resource = %s",
            (self.code,),
        )
        row = await cur.fetchone()
        after, refilling = (int(row[0]), bool(row[1])) if row else (0, False)
        if after == 0 and not refilling and not self._follow_log:
            # Nothing applied yet: the resource's current rows in bulk, then the change log from there.
            return await self._load_snapshot(conn, row[2] if row else None, row[3] if row else None)
        self._loaded = LoadedChunks(row[4]) if row and row[4] and not refilling else None
        if self._loaded is not None and after >= self._loaded.last_position:
            self._loaded = None  # the log has replayed past every chunk
            await conn.execute(
                "UPDATE gdx.subscription_state SET snapshot_chunks = NULL WHERE resource = %s", (self.code,)
            )
        try:
            page = await self.client.pull(self.code, self.sub.purpose, after, MAX_PAGE_CHANGES, latest=refilling)
        except ExchangeError as exc:
            await self._grant_ended(conn, exc)
            raise
        unknown = self._unknown_fields(page.changes)
        if unknown:
            # Fields this table lacks: the grant was widened, or the resource's schema grew.
            before = self.columns
            await self.prepare(conn)
            if self.columns != before:
                return True
            # Not granted fields after all: rows from before a schema version dropped them.
            self._ignored |= unknown
        refilled = refilling and not page.has_more
        if page.changes or refilled:
            await self._apply(conn, after, page.changes, page.next_after, refilled)
        data = sum(1 for c in page.changes if c.op != "heartbeat")
        self.state.ok(HOP, self.code, rows=data, batches=1 if page.changes else 0)
        return page.has_more

    async def _grant_ended(self, conn: store.Conn, exc: ExchangeError) -> None:
        if exc.status == 403 and str(exc.body.get("error", "")).startswith("grant_"):
            await self.prepare(conn)  # the grant ended: prepare() says how, and stops the hop

    async def _load_snapshot(self, conn: store.Conn, started_at: int | None, after_key: str | None) -> bool:
        """One chunk of the resource's snapshot, copied into the table with the load's progress in
        one transaction: a killed agent goes on after the last chunk it committed. The load's
        position is its first chunk's; when the last chunk is in, the change log is read from there
        (every later chunk is as new or newer, and the changes after that position bring each key
        to where the log says). True while there is more to read."""
        limit = self.snapshot_rows if self.file_field is None else min(self.snapshot_rows, FILE_SNAPSHOT_ROWS)
        try:
            chunk = await self.client.snapshot(self.code, self.sub.purpose, after_key, limit)
        except ExchangeError as exc:
            if exc.status == 409 and exc.body.get("error") == "load_in_progress":
                # The provider is loading the resource in full: its rows come through the change
                # log as they are loaded, read as they come (a snapshot now would read them twice).
                log.info("the provider is loading the resource in full: the subscription reads the change log",
                         resource=self.code, reason=str(exc.body.get("message", "")))  # fmt: skip
                self._follow_log = True
                return True
            await self._grant_ended(conn, exc)
            raise
        if set(chunk.columns) != set(self.columns):
            # The grant or the schema changed: the table follows it, and the load starts again.
            await self.prepare(conn)
            await conn.execute(
                "UPDATE gdx.subscription_state SET snapshot_seq = NULL, snapshot_after = NULL "
                "WHERE resource = %s AND after_seq = 0",
                (self.code,),
            )
            return True
        table = store.quote(self.table)
        position = chunk.seq if started_at is None else started_at
        files = {}
        if self.file_field is not None and chunk.rows:
            at = chunk.columns.index(self.file_field)
            named = [row[at] for row in csv.reader(io.StringIO(chunk.body.decode("utf-8"))) if row[at]]
            files = await self._fetch_files(conn, named)
        async with conn.transaction():
            await store.store_files(conn, self.code, files, sent=True)
            if after_key is None:
                held = await conn.execute(f"SELECT EXISTS (SELECT FROM {table})")  # noqa: S608
                if (await held.fetchone() or [False])[0]:
                    log.warning("the subscription's table held rows before its first load; emptied",
                                resource=self.code, table=self.table)  # fmt: skip
                    await conn.execute(f"TRUNCATE {table}")
            if chunk.rows:
                columns = ", ".join(f'"{c}"' for c in chunk.columns)
                async with (
                    conn.cursor() as cur,
                    cur.copy(f"COPY {table} ({columns}) FROM STDIN WITH (FORMAT csv)") as copy,
                ):
                    await copy.write(chunk.body)
            loaded = Jsonb([[chunk.last_key, chunk.seq]])
            if after_key is None:
                beat = chunk.heartbeat or (None, None)
                await conn.execute(
                    "UPDATE gdx.subscription_state SET snapshot_beat_seq = %s, snapshot_beat_time = %s "
                    "WHERE resource = %s",
                    (beat[0], beat[1], self.code),
                )
            if chunk.last_key is not None:
                moved = await conn.execute(
                    "UPDATE gdx.subscription_state SET snapshot_seq = %s, snapshot_after = %s, snapshot_chunks = "
                    "CASE WHEN snapshot_after IS NULL THEN %s ELSE snapshot_chunks || %s END "
                    "WHERE resource = %s AND after_seq = 0",
                    (position, chunk.last_key, loaded, loaded, self.code),
                )
            else:
                moved = await conn.execute(
                    "UPDATE gdx.subscription_state SET after_seq = %s, snapshot_seq = NULL, snapshot_after = NULL, "
                    "snapshot_chunks = CASE WHEN snapshot_after IS NULL THEN %s ELSE snapshot_chunks || %s END "
                    "WHERE resource = %s AND after_seq = 0",
                    (position, loaded, loaded, self.code),
                )
            if moved.rowcount != 1:
                raise RuntimeError(f"the cursor of {self.code} moved under this agent (is a second agent running?)")
            if chunk.last_key is None:
                # The load is in: the table is the state at its position, as new as the provider's
                # heartbeat there. Without this the hop would have no heartbeat until the next one the
                # provider sends, and would look stalled with the table complete.
                cur = await conn.execute(
                    "SELECT snapshot_beat_seq, snapshot_beat_time FROM gdx.subscription_state WHERE resource = %s",
                    (self.code,),
                )
                beat_seq, beat_time = await cur.fetchone() or (None, None)
                if beat_seq is not None:
                    await store.record_heartbeat(conn, HOP, self.code, beat_seq, beat_time)
        if chunk.rows:
            log.info("snapshot chunk loaded", resource=self.code, rows=chunk.rows, up_to_key=chunk.last_key,
                     position=position, done=chunk.last_key is None)  # fmt: skip
        self.state.ok(HOP, self.code, rows=chunk.rows, batches=1 if chunk.rows else 0)
        return chunk.last_key is not None or position > 0

    async def _fetch_files(self, conn: store.Conn, named: list[Any]) -> dict[str, bytes]:
        """The files that rows about to be applied name and this node lacks, read from the exchange:
        a row is applied only with its file."""
        wanted = {sha for sha in named if isinstance(sha, str)}
        missing = sorted(wanted - await store.files_held(conn, self.code, list(wanted)))
        return {sha: await self.client.get_file(self.code, sha, self.sub.purpose) for sha in missing}

    def _unknown_fields(self, changes: list[ChangeOut]) -> set[str]:
        expected = self._ignored.union(self.columns)
        unknown: set[str] = set()
        for change in changes:
            if change.row is not None and not expected.issuperset(change.row):
                unknown.update(change.row.keys() - expected)
        return unknown

    async def _apply(
        self, conn: store.Conn, after: int, changes: list[ChangeOut], next_after: int, refilled: bool = False
    ) -> None:
        latest: dict[str, ChangeOut] = {}
        beat = None
        loaded = self._loaded
        for change in changes:
            if change.heartbeat is not None:
                beat = change.heartbeat
            elif loaded is None or not loaded.holds(str(change.key), change.seq):
                latest[str(change.key)] = change
        upserts = [c.row for c in latest.values() if c.op == "upsert"]
        deletes = [c.key for c in latest.values() if c.op == "delete"]
        table, key = store.quote(self.table), f'"{self.key}"'
        files = {}
        if self.file_field is not None:
            files = await self._fetch_files(conn, [row.get(self.file_field) for row in upserts if row is not None])
        async with conn.transaction():
            await store.store_files(conn, self.code, files, sent=True)
            cur = await conn.execute(
                "UPDATE gdx.subscription_state SET after_seq = %s, refilling = refilling AND NOT %s "
                "WHERE resource = %s AND after_seq = %s",
                (next_after, refilled, self.code, after),
            )
            if cur.rowcount != 1:
                raise RuntimeError(f"the cursor of {self.code} moved under this agent (is a second agent running?)")
            if loaded is not None and next_after >= loaded.last_position:
                await conn.execute(
                    "UPDATE gdx.subscription_state SET snapshot_chunks = NULL WHERE resource = %s", (self.code,)
                )
            if deletes:
                await conn.execute(f"DELETE FROM {table} WHERE {key} = ANY(%s)", (deletes,))  # noqa: S608
            if upserts:
                cols = ", ".join(f'"{c}"' for c in self.columns)
                updates = (
                    ", ".join(f'"{c}" = EXCLUDED."{c}"' for c in self.columns if c != self.key) or f"{key} = {key}"
                )
                await conn.execute(
                    f"INSERT INTO {table} ({cols}) SELECT {cols} FROM json_populate_recordset(NULL::{table}, %s) "  # noqa: S608
                    f"ON CONFLICT ({key}) DO UPDATE SET {updates}",
                    (orjson.dumps(upserts).decode(),),
                )
            if beat is not None:
                await store.record_heartbeat(conn, HOP, self.code, beat.seq, beat.source_time)
