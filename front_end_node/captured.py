"""What log capture reads from a business database's log, whichever the database: transactions
of one published table, in commit order, each with the position after it."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from front_end_node.state import SlotFigures
from gdx.sharing import Publication

# Where a log stands: PostgreSQL's LSN, or a MariaDB binlog's (file, offset); each orders itself.
Position = int | tuple[str, int]


@dataclass
class CapturedChange:
    """One row changed: ``op`` 'u' (insert or update) with the new ``row``, or 'd' with the old key's
    columns in ``row``; an update that changed the key also carries the ``old`` row (or key)."""

    op: str
    row: dict[str, Any]
    old: dict[str, Any] | None = None


@dataclass
class CapturedTransaction:
    commit_time: dt.datetime
    end: Position  # the position after its commit: where reading goes on from
    changes: list[CapturedChange] = field(default_factory=list)
    truncated: bool = False  # the published table was emptied


class ChangeLog(Protocol):
    """A business database's log of one published table (postgres_log.py, mariadb_binlog.py)."""

    kind: str  # how the messages name it: "slot", "binlog"
    slot: str
    pub: Publication

    def check(self) -> None: ...
    def figures(self, position: Position | None) -> SlotFigures | None: ...
    def new_slot(
        self, columns: list[str], chunk: int
    ) -> contextlib.AbstractContextManager[tuple[Position, Iterator[list[tuple[Any, ...]]]]]: ...
    def peek(self, after: Position, limit: int) -> list[CapturedTransaction]: ...
    def advance(self, position: Position) -> None: ...
    def drop(self) -> bool: ...
    def close(self) -> None: ...
    def position_text(self, position: Position) -> str: ...
    def position_value(self, text: str) -> Position: ...
