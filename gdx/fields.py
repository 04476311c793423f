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
# GB 32100's alphabet: digits and the upper-case letters but I, O, Z, S and V.
_COMPACT_USCC = re.compile(r"[0-9A-HJ-NPQRTUWXY]{18}")
# Full-width forms of ASCII (U+FF01-U+FF5E) and the ideographic space, as Chinese input
# methods type them: the same characters to a reader, other code points to a database.
_FULL_WIDTH = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}


def tidy_key(kind: KeyKind, value: Any) -> Any:
    """``value`` with what is unambiguous about a key of ``kind`` put right: white space around
    it (a no-break or ideographic space too), full-width digits and letters of a resident ID or
    credit code, and their case. The front-end agent sends keys through this; what it leaves
    wrong is refused by check_key. A plain key only loses its surrounding white space: its
    case and its full-width characters may be what tells two keys apart."""
    if not isinstance(value, str):
        return value
    if kind is KeyKind.PLAIN:
        return value.strip()
    if value.isascii():  # nothing full-width to translate (the translation is most of the cost)
        return value.strip().upper()
    return value.translate(_FULL_WIDTH).strip().upper()


def canonical_key(kind: KeyKind, value: Any) -> Any | None:
    """The canonical form of a key that is a variant of a valid one (tidied, and the spaces
    and hyphens inside a resident ID or credit code taken out), to name in a refusal; None
    when no valid key is in sight."""
    tidied = tidy_key(kind, value)
    if isinstance(tidied, str) and kind is not KeyKind.PLAIN:
        tidied = re.sub(r"[\s\-]", "", tidied)
    if tidied == value:
        return None
    try:
        check_key(kind, tidied)
    except RowError:
        return None
    return tidied


def _not_canonical(kind: KeyKind, value: Any, rule: str) -> RowError:
    canonical = canonical_key(kind, value)
    if canonical is None:
        return RowError(f"invalid {kind.value} {value!r}: {rule}")
    return RowError(f"{kind.value} {value!r} is not in canonical form ({rule}): send {canonical!r}")


def _need_string(kind: KeyKind, value: Any) -> None:
    if not isinstance(value, str):
        raise RowError(f"a {kind.value} key must be a string")


def _check_resident_id(value: Any) -> None:
    """stdnum.cn.ric.validate, step by step, with the place lookup memoised, on the one
    canonical form: 17 ASCII digits and a check digit (upper-case X), nothing around them."""
    _need_string(KeyKind.RESIDENT_ID, value)
    number = value
    if not _COMPACT_RESIDENT_ID.fullmatch(number):
        raise _not_canonical(KeyKind.RESIDENT_ID, value, "expected 17 ASCII digits and a check digit, 0-9 or X")
    if number[-1] != ric.calc_check_digit(number):
        raise RowError(f"invalid resident_id {value!r}: wrong check digit")
    if not _is_date(number[6:14]):
        raise RowError(f"invalid resident_id {value!r}: no such birth date")
    if not _region_existed(number[:6], number[6:10]):
        raise RowError(f"invalid resident_id {value!r}: unknown region code {number[:6]} for that birth year")


def _check_uscc(value: Any) -> None:
    _need_string(KeyKind.USCC, value)
    if not _COMPACT_USCC.fullmatch(value):
        rule = "expected 18 characters of 0-9 and upper-case A-Y but I, O, S, V, Z"
        raise _not_canonical(KeyKind.USCC, value, rule)
    try:
        uscc.validate(value)
    except StdnumError as exc:
        raise RowError(f"invalid {KeyKind.USCC.value} {value!r}: {exc}") from None


def _check_plain(value: Any) -> None:
    if not isinstance(value, str):
        return  # an integer key: its type check is all
    if not value:
        raise RowError("a key may not be empty")
    if value != value.strip():
        raise _not_canonical(KeyKind.PLAIN, value, "white space around a key is not part of it")


# What each key kind checks beyond the key field's type: one canonical form for each, so that
# one person or company is one key wherever it enters (docs/exchange.md, "Keys").
_KIND_CHECKS: dict[KeyKind, Callable[[Any], None]] = {
    KeyKind.PLAIN: _check_plain,
    KeyKind.RESIDENT_ID: _check_resident_id,
    KeyKind.USCC: _check_uscc,
}


def check_key(kind: KeyKind, value: Any) -> None:
    """Raise RowError unless ``value`` is a valid key of ``kind`` in its canonical form (check
    digits included); a variant of a valid key is refused with the canonical form named."""
    _KIND_CHECKS[kind](value)


def _check_file(value: Any) -> None:
    """A resource of format file names each record's file by the SHA-256 of its bytes."""
    if not (isinstance(value, str) and len(value) == 64 and value.strip("0123456789abcdef") == ""):
        raise TypeError("expected a file: the SHA-256 of its bytes, 64 lower-case hex digits")


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
        file_field: str | None = None,
    ) -> None:
        self.fields = dict(fields)
        self.primary_key = primary_key
        self.key_kind = key_kind
        self.file_field = file_field
        self._checks = [
            (name, _check_file if name == file_field else TYPE_CHECKS[ftype], nullable)
            for name, (ftype, nullable) in fields.items()
        ]
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
