"""Log capture from PostgreSQL: a logical replication slot with the pgoutput plugin.

One slot per published resource (`gdx_<resource>`), decoding the DBA's publication of the same
name; pgoutput is built into PostgreSQL (10 and later), so the business database needs no
extension. The slot is streamed over the replication protocol (psycopg2's replication support:
psycopg 3 has none) and confirmed only after the agent committed what it read
(front_end_node/log_capture.py). The slot is made, and the first load's snapshot exported, over
psycopg 3's replication connection.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import psycopg
import psycopg2
import psycopg2.extras
from psycopg.pq import Format

from front_end_node import dba_checklist
from front_end_node.captured import CapturedChange, CapturedTransaction, Position
from front_end_node.dba_checklist import slot_name
from front_end_node.pgoutput import UNCHANGED, Decoder, Relation, lsn_text, lsn_value
from front_end_node.sources import PostgresSource, SourceError
from front_end_node.state import SlotFigures
from gdx.sharing import Publication


class PostgresLog:
    """The slot and publication of one resource on the business database, and its checks."""

    kind = "slot"

    def __init__(self, source: PostgresSource, pub: Publication, key: str) -> None:
        self.source = source
        self.pub = pub
        self.key = key
        self.slot = slot_name(pub.resource)
        self.publication = self.slot
        self._decoder = Decoder()
        self._loaders: dict[int, Any] = {}
        self._stream_conn: Any = None
        self._stream_cursor: Any = None

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
                + dba_checklist.postgres_replication(db.user)
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
                f"owner) runs {dba_checklist.postgres_publication(self.pub.resource, table)}"
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

    def figures(self, position: Position | None = None) -> SlotFigures | None:
        """The slot's state, or None when there is no slot (the slot keeps its own position)."""
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
    def new_slot(self, columns: list[str], chunk: int) -> Iterator[tuple[Position, Iterator[list[tuple[Any, ...]]]]]:
        """A new slot (any old one dropped), its first position, and the table's rows as of that
        position, ``chunk`` at a time (the slot's exported snapshot lives while this block runs)."""
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
            yield position, self.source.iter_rows(self.pub.table, columns, chunk, snapshot=snapshot)
        finally:
            conn.close()

    def drop(self) -> bool:
        """Drop the slot (its WAL is let go); False when there was none."""
        self.close()  # a slot being streamed cannot be dropped
        rows = self._query(
            "SELECT pg_drop_replication_slot(slot_name) IS NULL FROM pg_replication_slots WHERE slot_name = %s",
            [self.slot],
        )
        return bool(rows)

    def peek(self, after: Position, limit: int) -> list[CapturedTransaction]:
        """The transactions committed after ``after`` that have come in on the slot's stream (whole,
        about ``limit`` changes), in commit order, with the published table's changes."""
        assert isinstance(after, int)
        stream = self._stream(after)
        table = self.pub.table.rpartition(".")[2]
        done: list[CapturedTransaction] = []
        changes = 0
        try:
            while changes < limit and (message := stream.read_message()) is not None:
                transaction = self._decoder.feed(bytes(message.payload))
                if transaction is None:
                    continue
                captured = CapturedTransaction(transaction.commit_time, transaction.end_lsn)
                captured.truncated = any(self._relation(oid).name == table for oid in transaction.truncated)
                for change in transaction.changes:
                    relation = self._relation(change.relation)
                    if relation.name != table:
                        continue  # another table of a publication the DBA shares
                    old = None if change.old is None else self._row(relation, change.old)
                    captured.changes.append(CapturedChange(change.op, self._row(relation, change.values), old))
                done.append(captured)
                changes += len(captured.changes)
        except psycopg2.Error as exc:
            self.close()
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise SourceError(f"log capture of {self.pub.resource}: the slot's stream: {first}") from None
        return done

    def _stream(self, after: int) -> Any:
        """The slot's stream (the replication protocol's START_REPLICATION), from ``after`` on: the
        server decodes the WAL once, as it comes; reading the slot by SQL decoded it again from the
        slot's restart point at every call, which cost the business database most of a core."""
        if self._stream_cursor is None:
            db = self.source.db
            conn = psycopg2.connect(
                host=db.host, port=db.port, dbname=db.name, user=db.user, password=self.source.password,
                connect_timeout=10, application_name="gdx-front-end-agent",
                connection_factory=psycopg2.extras.LogicalReplicationConnection,
            )  # fmt: skip
            cursor = conn.cursor()
            cursor.start_replication(
                slot_name=self.slot, decode=False, start_lsn=after, status_interval=10,
                options={"proto_version": "1", "publication_names": self.publication},
            )  # fmt: skip
            self._decoder = Decoder()  # the stream sends each relation again before its first change
            self._stream_conn, self._stream_cursor = conn, cursor
        return self._stream_cursor

    def close(self) -> None:
        """Close the slot's stream (the next peek opens it again)."""
        if self._stream_conn is not None:
            with contextlib.suppress(psycopg2.Error):
                self._stream_conn.close()
        self._stream_conn = self._stream_cursor = None

    def position_text(self, position: Position) -> str:
        assert isinstance(position, int)
        return lsn_text(position)

    def position_value(self, text: str) -> Position:
        return lsn_value(text)

    def advance(self, position: Position) -> None:
        """Confirm the position to the server: the slot lets the WAL before it go."""
        assert isinstance(position, int)
        if self._stream_cursor is not None:
            with contextlib.suppress(psycopg2.Error):  # the next peek finds a broken stream
                self._stream_cursor.send_feedback(write_lsn=position, flush_lsn=position, force=True)

    def _relation(self, oid: int) -> Relation:
        return self._decoder.relations[oid]

    def _row(self, relation: Relation, raw: list[Any]) -> dict[str, Any]:
        """Column name -> value; a value the update left unchanged (TOAST) stays UNCHANGED."""
        return {
            column.name: value if value is None or value is UNCHANGED else self._value(column.type_oid, value)
            for column, value in zip(relation.columns, raw, strict=True)
        }

    def _value(self, type_oid: int, data: bytes) -> Any:
        """A value as the type's text output gave it, loaded as psycopg loads a query's (so rows are
        the same as a poll reads them)."""
        loader = self._loaders.get(type_oid)
        if loader is None:
            conn = self.source._connection()
            found = conn.adapters.get_loader(type_oid, Format.TEXT)
            loader = found(type_oid, conn) if found is not None else None
            self._loaders[type_oid] = loader
        return data.decode() if loader is None else loader.load(data)
