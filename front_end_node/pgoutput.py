"""PostgreSQL's logical replication messages (the pgoutput plugin, protocol version 1), decoded.

pgoutput is built into PostgreSQL (10 and later), so a business database needs no extension for
log capture; its messages are documented in the manual's "Logical Replication Message Formats".
Values come as the type's text output; front_end_node/log_capture.py turns them into Python
values with psycopg's own loaders.
"""

from __future__ import annotations

import datetime as dt
import struct
from dataclasses import dataclass, field

# pgoutput's timestamps count microseconds from PostgreSQL's epoch.
_EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)

UNCHANGED = object()  # a TOASTed value the update left as it was: pgoutput does not send it


@dataclass(frozen=True)
class Column:
    name: str
    type_oid: int
    in_key: bool  # part of the table's replica identity


@dataclass(frozen=True)
class Relation:
    oid: int
    namespace: str
    name: str
    columns: list[Column]


@dataclass
class Change:
    """One row changed: ``op`` 'u' (insert or update) with the new ``values``, or 'd' with the old
    key's; an update that changed the key also carries the ``old`` key's values."""

    relation: int
    op: str
    values: list[bytes | object | None]
    old: list[bytes | object | None] | None = None


@dataclass
class Transaction:
    xid: int
    commit_time: dt.datetime
    end_lsn: int = 0  # the position after the commit: where the slot goes on from
    changes: list[Change] = field(default_factory=list)
    truncated: list[int] = field(default_factory=list)


def lsn_text(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def lsn_value(text: str) -> int:
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) + int(low, 16)


class Decoder:
    """Feeds on the messages of pg_logical_slot_peek_binary_changes, in order; keeps the relations
    it was told of (sent once per session, before a table's first change) and hands out the
    transactions that committed."""

    def __init__(self) -> None:
        self.relations: dict[int, Relation] = {}
        self._open: Transaction | None = None

    def feed(self, data: bytes) -> Transaction | None:
        """One message; the transaction when ``data`` is its commit."""
        kind = data[:1]
        if kind == b"B":
            _final_lsn, micros, xid = struct.unpack_from("!QqI", data, 1)
            self._open = Transaction(xid, _EPOCH + dt.timedelta(microseconds=micros))
        elif kind == b"C":
            _flags, _commit_lsn, end_lsn, _micros = struct.unpack_from("!bQQq", data, 1)
            done, self._open = self._open, None
            if done is not None:
                done.end_lsn = end_lsn
            return done
        elif kind == b"R":
            self._relation(data)
        elif kind in (b"I", b"U", b"D"):
            assert self._open is not None, "a change outside a transaction"
            self._open.changes.append(_change(data))
        elif kind == b"T":
            assert self._open is not None, "a truncation outside a transaction"
            (count,) = struct.unpack_from("!I", data, 1)
            self._open.truncated.extend(struct.unpack_from(f"!{count}I", data, 6))
        # 'Y' (type), 'O' (origin), 'M' (message): nothing to keep
        return None

    def _relation(self, data: bytes) -> None:
        (oid,) = struct.unpack_from("!I", data, 1)
        at = 5
        namespace, at = _string(data, at)
        name, at = _string(data, at)
        at += 1  # replica identity setting
        (count,) = struct.unpack_from("!H", data, at)
        at += 2
        columns = []
        for _ in range(count):
            flags = data[at]
            column, at = _string(data, at + 1)
            type_oid, _typmod = struct.unpack_from("!Ii", data, at)
            at += 8
            columns.append(Column(column, type_oid, bool(flags & 1)))
        self.relations[oid] = Relation(oid, namespace, name, columns)


def _string(data: bytes, at: int) -> tuple[str, int]:
    end = data.index(b"\x00", at)
    return data[at:end].decode(), end + 1


def _change(data: bytes) -> Change:
    kind = data[:1]
    (relation,) = struct.unpack_from("!I", data, 1)
    at = 5
    old = None
    if data[at : at + 1] in (b"K", b"O"):  # the old key (or whole old row) of an update or deletion
        old, at = _tuple(data, at + 1)
        if kind == b"D":
            return Change(relation, "d", old)
    assert data[at : at + 1] == b"N", f"unexpected tuple kind {data[at : at + 1]!r}"
    values, _ = _tuple(data, at + 1)
    return Change(relation, "u", values, old)


def _tuple(data: bytes, at: int) -> tuple[list[bytes | object | None], int]:
    (count,) = struct.unpack_from("!H", data, at)
    at += 2
    values: list[bytes | object | None] = []
    for _ in range(count):
        kind = data[at : at + 1]
        at += 1
        if kind == b"n":
            values.append(None)
        elif kind == b"u":
            values.append(UNCHANGED)
        else:  # 't' (text); 'b' (binary) is only sent when asked for
            (length,) = struct.unpack_from("!I", data, at)
            at += 4
            values.append(data[at : at + length])
            at += length
    return values, at
