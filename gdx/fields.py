"""Field types and key kinds of catalog resources, and the checks rows must pass.

This is protocol code: the central exchange validates pushed rows with it and the
front-end agent validates source rows with it before they leave the department, so
both sides reject exactly the same rows for exactly the same reasons.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Any

from stdnum.cn import ric, uscc
from stdnum.exceptions import ValidationError as StdnumError


class FieldType(StrEnum):
    STRING = "string"
    INTEGER = "integer"
    NUMBER = "number"
    BOOLEAN = "boolean"
    DATE = "date"
    TIMESTAMP = "timestamp"


class KeyKind(StrEnum):
    """What the primary key identifies; ZJG Art. 15 keys population data by resident ID
    number and legal-entity data by unified social credit code."""

    PLAIN = "plain"
    RESIDENT_ID = "resident_id"  # 公民身份号码, GB 11643
    USCC = "uscc"  # 统一社会信用代码, GB 32100


class RowError(ValueError):
    """A row that does not fit its resource's schema; the message names the field."""


def _check_string(value: Any) -> None:
    if not isinstance(value, str):
        raise TypeError("expected a string")
    if "\x00" in value:
        raise TypeError("text may not contain NUL characters")


def _check_integer(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("expected an integer")
    if not -(2**63) <= value < 2**63:
        raise TypeError("integer out of the 64-bit range")


def _check_number(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError("expected a number")


def _check_boolean(value: Any) -> None:
    if not isinstance(value, bool):
        raise TypeError("expected true or false")


def _check_date(value: Any) -> None:
    if not isinstance(value, str):
        raise TypeError("expected a date as YYYY-MM-DD")
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        raise TypeError(f"expected a date as YYYY-MM-DD, got {value!r}") from None


def _check_timestamp(value: Any) -> None:
    if not isinstance(value, str):
        raise TypeError("expected an ISO 8601 timestamp with a UTC offset")
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise TypeError(f"expected an ISO 8601 timestamp, got {value!r}") from None
    if parsed.tzinfo is None:
        raise TypeError(f"timestamp {value!r} has no UTC offset")


TYPE_CHECKS: dict[FieldType, Callable[[Any], None]] = {
    FieldType.STRING: _check_string,
    FieldType.INTEGER: _check_integer,
    FieldType.NUMBER: _check_number,
    FieldType.BOOLEAN: _check_boolean,
    FieldType.DATE: _check_date,
    FieldType.TIMESTAMP: _check_timestamp,
}


@functools.lru_cache(maxsize=65536)
def _region_existed(region: str, year: str) -> bool:
    # python-stdnum finds the place of birth by scanning its region table (about 0.1 ms a
    # number); the answer depends only on the region code and the birth year, so a batch of
    # a million residents of one county asks it a few hundred times instead of a million.
    probe = f"{region}{year}0101000"
    probe += ric.calc_check_digit(probe + "0")
    try:
        ric.get_birth_place(probe)
    except StdnumError:
        return False
    return True


@functools.lru_cache(maxsize=65536)
def _is_date(yyyymmdd: str) -> bool:
    # Birth dates repeat across a population (some 40,000 in a century): remembered, they cost
    # a quarter of building a date each time.
    try:
        dt.date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:]))
    except ValueError:
        return False
    return True


_COMPACT_RESIDENT_ID = re.compile(r"[0-9]{17}[0-9X]")


def _need_string(kind: KeyKind, value: Any) -> None:
    if not isinstance(value, str):
        raise RowError(f"a {kind.value} key must be a string")


def _check_resident_id(value: Any) -> None:
    """stdnum.cn.ric.validate, step by step, with the place lookup memoised."""
    _need_string(KeyKind.RESIDENT_ID, value)
    # stdnum's compact() cleans the number character by character, and get_birth_date()
    # compacts it again: most of a batch's check time. Numbers as sources hold them are
    # compact already and skip both.
    number = value if _COMPACT_RESIDENT_ID.fullmatch(value) else ric.compact(value)
    if len(number) != 18 or not number[:-1].isdigit():
        raise RowError(f"invalid resident_id {value!r}: expected 17 digits and a check digit")
    if number[-1] != ric.calc_check_digit(number):
        raise RowError(f"invalid resident_id {value!r}: wrong check digit")
    if not _is_date(number[6:14]):
        raise RowError(f"invalid resident_id {value!r}: no such birth date")
    if not _region_existed(number[:6], number[6:10]):
        raise RowError(f"invalid resident_id {value!r}: unknown region code {number[:6]} for that birth year")


def _check_uscc(value: Any) -> None:
    _need_string(KeyKind.USCC, value)
    try:
        uscc.validate(value)
    except StdnumError as exc:
        raise RowError(f"invalid {KeyKind.USCC.value} {value!r}: {exc}") from None


# What each key kind checks beyond the key field's type; a plain key, nothing.
_KIND_CHECKS: dict[KeyKind, Callable[[Any], None] | None] = {
    KeyKind.PLAIN: None,
    KeyKind.RESIDENT_ID: _check_resident_id,
    KeyKind.USCC: _check_uscc,
}


def check_key(kind: KeyKind, value: Any) -> None:
    """Raise RowError unless ``value`` is a valid key of ``kind`` (check digits included)."""
    kind_check = _KIND_CHECKS[kind]
    if kind_check is not None:
        kind_check(value)


class RowSchema:
    """Checks rows against one version of a resource's schema.

    Built once per resource version and reused for every row of every batch, so that the
    per-row cost is a dictionary walk and one call per field.
    """

    def __init__(
        self,
        fields: Mapping[str, tuple[FieldType, bool]],
        primary_key: str,
        key_kind: KeyKind,
    ) -> None:
        self.fields = dict(fields)
        self.primary_key = primary_key
        self.key_kind = key_kind
        self._checks = [(name, TYPE_CHECKS[ftype], nullable) for name, (ftype, nullable) in fields.items()]
        self._names = frozenset(fields)
        # Looked up once here: a batch checks a key for every row.
        self._key_type_check = TYPE_CHECKS[self.fields[primary_key][0]]
        self._key_kind_check = _KIND_CHECKS[key_kind]

    def check_key(self, key: Any) -> None:
        if key is None:
            raise RowError(f"primary key {self.primary_key!r} is missing")
        try:
            self._key_type_check(key)
        except TypeError as exc:
            raise RowError(f"primary key {self.primary_key!r}: {exc}") from None
        if self._key_kind_check is not None:
            self._key_kind_check(key)

    def check_row(self, row: Mapping[str, Any]) -> None:
        """Raise RowError naming the first field that is unknown, missing or of the wrong type."""
        unknown = row.keys() - self._names
        if unknown:
            raise RowError(f"unknown field(s) {', '.join(sorted(unknown))}")
        for name, check, nullable in self._checks:
            value = row.get(name)
            if value is None:
                if not nullable:
                    raise RowError(f"field {name!r} is required")
                continue
            try:
                check(value)
            except TypeError as exc:
                raise RowError(f"field {name!r}: {exc}") from None
        self.check_key(row[self.primary_key])
