"""Log capture from MariaDB: the binlog in row format, read as a replica reads it (mysql-replication).

The position is a binlog file and offset, kept in the front-end database only: the server keeps
no slot for the agent, so it may purge a binlog the agent has not read yet (expire_logs_days,
PURGE BINARY LOGS). That is found by comparing the position with SHOW BINARY LOGS, and reported
as lost, with the way back (a new load). The first load reads the table in a transaction WITH
CONSISTENT SNAPSHOT, whose binlog position MariaDB tells (binlog_snapshot_file/_position).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import zlib
from collections.abc import Iterator
from typing import Any

import pymysql
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.event import QueryEvent, RotateEvent, XidEvent
from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

from front_end_node import dba_checklist
from front_end_node.captured import CapturedChange, CapturedTransaction, Position
from front_end_node.sources import MariaDbSource, SourceError
from front_end_node.state import SlotFigures
from gdx.sharing import Publication

# The account's global privileges (REPLICATION SLAVE, BINLOG MONITOR), as information_schema names them.
_GRANTED = (
    "SELECT PRIVILEGE_TYPE FROM information_schema.USER_PRIVILEGES WHERE GRANTEE = "
    "CONCAT(QUOTE(SUBSTRING_INDEX(CURRENT_USER(), '@', 1)), '@', QUOTE(SUBSTRING_INDEX(CURRENT_USER(), '@', -1)))"
)


class MariaDbBinlog:
    """The binlog of the business database, as one published table's changes."""

    kind = "binlog"

    def __init__(self, source: MariaDbSource, pub: Publication, key: str, department: str) -> None:
        self.source = source
        self.pub = pub
        self.key = key
        self.schema, _, self.table = pub.table.rpartition(".")
        self.schema = self.schema or source.db.name
        self.slot = f"binlog of {source.db.host}:{source.db.port}"
        # Each reader of a server's binlog needs a server id of its own: one per node and resource.
        self.server_id = 0x40000000 + zlib.crc32(f"{department}/{pub.resource}".encode()) % 0x3FFFFFFF

    def _query(self, sql: str, params: list[Any] | tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            return self.source.query(sql, params)
        except pymysql.MySQLError as exc:
            raise SourceError(f"log capture of {self.pub.resource}: {exc.args[-1] if exc.args else exc}") from None

    def check(self) -> None:
        """Refuse, with what the DBA sets, a server whose binlog cannot be captured from."""
        needed = {name: value.upper() for name, value in dba_checklist.MARIADB_SETTINGS.items()}
        needed["log_bin"] = "ON"  # the setting names the files; the variable says whether it is on
        names = ", ".join(f"'{name}'" for name in needed)
        shown = self._query(f"SHOW GLOBAL VARIABLES WHERE Variable_name IN ({names})")
        held = {str(name).lower(): str(value).upper() for name, value in shown}
        wrong = [name for name, wanted in needed.items() if held.get(name) != wanted]
        if wrong:
            found = ", ".join(f"{name} is {held.get(name, 'unset')}" for name in wrong)
            settings = "; ".join(f"{name} = {dba_checklist.MARIADB_SETTINGS[name]}" for name in wrong)
            raise SourceError(
                f"capture: log needs the binlog in full row format ({found}): the DBA sets {settings} under "
                "[mariadbd] in the server's configuration and restarts MariaDB (see docs/front-end-node.md, "
                "'Log capture: the DBA's checklist')"
            )
        granted = {str(p).upper() for (p,) in self._query(_GRANTED)}
        lacking = [p for p in ("REPLICATION SLAVE", "BINLOG MONITOR") if p not in granted and "SUPER" not in granted]
        if lacking:
            user = self.source.db.user
            raise SourceError(
                f"capture: log needs {' and '.join(lacking)} for {user}: the DBA runs "
                + dba_checklist.mariadb_grant(user)
            )

    def _binlogs(self) -> list[tuple[str, int]]:
        return [(str(row[0]), int(row[1])) for row in self._query("SHOW BINARY LOGS")]

    def figures(self, position: Position | None) -> SlotFigures | None:
        """How far the binlog went on past the position; None before the first load."""
        if position is None:
            return None
        assert isinstance(position, tuple)
        logs = self._binlogs()
        files = [name for name, _ in logs]
        if position[0] not in files:
            return SlotFigures("lost", 0, 0)
        behind = sum(size for name, size in logs if name > position[0]) + dict(logs)[position[0]] - position[1]
        # The server keeps no binlog for the agent: it retains nothing on its account.
        return SlotFigures("reserved", 0, max(0, behind))

    @contextlib.contextmanager
    def new_slot(self, columns: list[str], chunk: int) -> Iterator[tuple[Position, Iterator[list[tuple[Any, ...]]]]]:
        """The table's rows as of a binlog position, ``chunk`` at a time, and that position."""
        conn = self.source.snapshot_connection()
        try:
            with conn.cursor() as cur:
                cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
                cur.execute("SHOW STATUS LIKE 'binlog_snapshot_%'")
                status = {str(name).lower(): value for name, value in cur.fetchall()}
            position = (str(status["binlog_snapshot_file"]), int(status["binlog_snapshot_position"]))
            yield position, self.source.iter_in(conn, self.pub.table, columns, chunk)
        finally:
            with contextlib.suppress(pymysql.Error):
                conn.rollback()
                conn.close()

    def peek(self, after: Position, limit: int) -> list[CapturedTransaction]:
        """The transactions committed after ``after``, about ``limit`` changes of the table."""
        assert isinstance(after, tuple)
        db = self.source.db
        stream = BinLogStreamReader(
            connection_settings={"host": db.host, "port": db.port, "user": db.user,
                                 # bytes: PyMySQL would encode a str password as latin-1 and fail on 中文.
                                 "passwd": self.source.password.encode("utf-8"), "charset": "utf8mb4"},
            server_id=self.server_id, resume_stream=True, log_file=after[0], log_pos=after[1], blocking=False,
            only_events=[WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent, XidEvent, QueryEvent, RotateEvent],
            only_schemas=[self.schema], only_tables=[self.table], enable_logging=False,
        )  # fmt: skip
        done: list[CapturedTransaction] = []
        open_: CapturedTransaction | None = None
        changes = 0
        try:
            for event in stream:
                at = dt.datetime.fromtimestamp(event.timestamp, dt.UTC)
                if isinstance(event, RotateEvent):
                    continue
                if open_ is None:
                    open_ = CapturedTransaction(at, after)
                if isinstance(event, WriteRowsEvent):
                    open_.changes.extend(CapturedChange("u", row["values"]) for row in event.rows)
                elif isinstance(event, UpdateRowsEvent):
                    open_.changes.extend(
                        CapturedChange("u", row["after_values"], row["before_values"]) for row in event.rows
                    )
                elif isinstance(event, DeleteRowsEvent):
                    open_.changes.extend(CapturedChange("d", row["values"]) for row in event.rows)
                elif isinstance(event, QueryEvent):
                    query = event.query.decode(errors="replace") if isinstance(event.query, bytes) else event.query
                    statement = query.strip().upper()
                    if statement == "BEGIN":
                        continue
                    if _truncates(query, self.table):
                        open_.truncated = True  # its own transaction, committed with it
                    elif statement != "COMMIT":
                        if not open_.changes:
                            open_ = None  # DDL, or a statement of another table: no rows
                        continue
                if isinstance(event, XidEvent | QueryEvent):  # a commit
                    open_.commit_time = at
                    open_.end = (stream.log_file, event.packet.log_pos)
                    done.append(open_)
                    changes += len(open_.changes)
                    open_ = None
                    if changes >= limit:
                        break
        except pymysql.MySQLError as exc:
            raise SourceError(f"log capture of {self.pub.resource}: reading the binlog: {exc.args[-1]}") from None
        finally:
            stream.close()
        return done

    def advance(self, position: Position) -> None:
        """Nothing to tell the server: the position lives in the front-end database."""

    def drop(self) -> bool:
        """No slot to drop on MariaDB."""
        return False

    def close(self) -> None:
        """Each peek reads the binlog on a connection of its own: nothing stays open."""

    def position_text(self, position: Position) -> str:
        assert isinstance(position, tuple)
        return f"{position[0]}:{position[1]}"

    def position_value(self, text: str) -> Position:
        name, _, offset = text.rpartition(":")
        return (name, int(offset))


def _truncates(query: str, table: str) -> bool:
    pattern = rf"\s*truncate\s+(table\s+)?(`?\w+`?\.)?`?{re.escape(table)}`?\s*$"
    return re.match(pattern, query, re.IGNORECASE) is not None
