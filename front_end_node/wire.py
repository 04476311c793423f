"""Source rows into the protocol's JSON form, and their digests.

Business databases hand out Decimals, naive datetimes, MariaDB's 0/1 booleans; the catalog
says what each field is, and the exchange expects that type in JSON. Values that cannot be
converted are left as they are, so that the schema check names the field and the row is
quarantined rather than silently changed.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
from collections.abc import Callable, Sequence
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from gdx.attachments import SNIFF_BYTES, sha256_of, type_problem
from gdx.fields import FieldType, KeyKind, tidy_key
from gdx.protocol import ResourceSpec


def _string(value: Any, _: ZoneInfo) -> Any:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="strict")
    if isinstance(value, int | decimal.Decimal) and not isinstance(value, bool):
        return str(value)
    return value


def _integer(value: Any, _: ZoneInfo) -> Any:
    if isinstance(value, decimal.Decimal) and value == value.to_integral_value():
        return int(value)
    return value


def _number(value: Any, _: ZoneInfo) -> Any:
    if isinstance(value, decimal.Decimal):
        return float(value)
    return value


def _boolean(value: Any, _: ZoneInfo) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and value in (0, 1):
        return bool(value)
    return value


def _date(value: Any, _: ZoneInfo) -> Any:
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _timestamp(value: Any, zone: ZoneInfo) -> Any:
    if isinstance(value, dt.datetime):
        return aware(value, zone).isoformat()
    return value


_CONVERT: dict[FieldType, Callable[[Any, ZoneInfo], Any]] = {
    FieldType.STRING: _string,
    FieldType.INTEGER: _integer,
    FieldType.NUMBER: _number,
    FieldType.BOOLEAN: _boolean,
    FieldType.DATE: _date,
    FieldType.TIMESTAMP: _timestamp,
}


def aware(value: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    """A timestamp stored without a zone is read in the business database's zone."""
    return value.replace(tzinfo=zone) if value.tzinfo is None else value


def _file(value: Any, _: ZoneInfo) -> Any:
    return bytes(value) if isinstance(value, bytearray | memoryview) else value


class RowMaker:
    """Turns source tuples (columns in the resource's field order) into protocol rows.

    With ``key`` (the key field and its kind), the key is put in its canonical form where that
    is unambiguous (gdx.fields.tidy_key): a resident ID typed with a lower-case x is the same
    person, and the exchange accepts only the canonical form. ``tidied`` counts those keys;
    a key still wrong after that fails the schema check and is quarantined.

    With ``files`` (a resource of format file: its file field and the media types it takes), the
    file field's bytes become their SHA-256, and the bytes wait in ``files`` (when ``keep_files``)
    to be taken with the row; a file of a type the resource does not take leaves its row's key in
    ``refused``, with the reason, for quarantine."""

    def __init__(
        self,
        fields: Sequence[tuple[str, FieldType]],
        zone: ZoneInfo,
        key: tuple[str, KeyKind] | None = None,
        files: tuple[str, Sequence[str]] | None = None,
        *,
        keep_files: bool = True,
    ) -> None:
        self.names = [name for name, _ in fields]
        self._converters = [(name, _file if files and name == files[0] else _CONVERT[ftype]) for name, ftype in fields]
        self.zone = zone
        self._key = key
        self.tidied = 0
        self._files = files
        self._keep_files = keep_files
        self.files: dict[str, bytes] = {}
        self.refused: dict[str, str] = {}

    @classmethod
    def for_spec(cls, spec: ResourceSpec, zone: ZoneInfo, *, keep_files: bool = True) -> RowMaker:
        files = (spec.file_field, spec.file_types) if spec.file_field is not None else None
        return cls([(f.name, f.type) for f in spec.fields], zone, key=(spec.primary_key, spec.key_kind), files=files,
                   keep_files=keep_files)  # fmt: skip

    def take_files(self) -> tuple[dict[str, bytes], dict[str, str]]:
        """The files of the rows made since the last call (by SHA-256), and the keys refused."""
        if not self.files and not self.refused:
            return {}, {}
        taken = self.files, self.refused
        self.files, self.refused = {}, {}
        return taken

    def row(self, values: Sequence[Any]) -> dict[str, Any]:
        zone = self.zone
        row = {
            name: None if value is None else convert(value, zone)
            for (name, convert), value in zip(self._converters, values, strict=True)
        }
        if self._key is not None:
            name, kind = self._key
            held = row[name]
            tidied = tidy_key(kind, held)
            if tidied != held:
                row[name] = tidied
                self.tidied += 1
        if self._files is not None:
            self._file_to_digest(row)
        return row

    def _file_to_digest(self, row: dict[str, Any]) -> None:
        assert self._files is not None
        name, allowed = self._files
        data = row[name]
        if not isinstance(data, bytes):
            return  # NULL, or a digest already: the schema check decides
        row[name] = sha256_of(data)
        _, problem = type_problem(data[:SNIFF_BYTES], allowed)
        if problem is not None:
            key = row.get(self._key[0]) if self._key else None
            self.refused[str(key)] = f"field {name!r}: {problem}"
        elif self._keep_files:
            self.files[row[name]] = data

    def key_text(self, value: Any) -> str:
        """A source's key value as the mirror holds it (tidied when the maker tidies keys)."""
        if self._key is None or value is None:
            return str(value)
        return str(tidy_key(self._key[1], _string(value, self.zone)))


def encode(row: dict[str, Any]) -> tuple[bytes, bytes]:
    """The row as JSON (keys sorted) and that JSON's digest: one serialisation for both."""
    text = orjson.dumps(row, option=orjson.OPT_SORT_KEYS)
    return text, hashlib.blake2b(text, digest_size=16).digest()


def digest(row: dict[str, Any]) -> bytes:
    return encode(row)[1]
