"""One cell of a spreadsheet or CSV file as a value of its field's type.

People fill templates in Excel and WPS, which write what they show: a date cell as a date, a
number as a float, a CSV date as 2026/1/5 in a Chinese locale. What is unambiguous is taken;
anything else is refused with what was expected, so that the person can put it right. The value
that comes out is the one a front-end node would push (gdx.fields checks it after).
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import re
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

from gdx.fields import FieldType

# A cell the person left empty, or only blanks in: the field's NULL.
EMPTY = ("", None)

TRUE_WORDS = frozenset({"true", "t", "yes", "y", "1", "是", "真"})
FALSE_WORDS = frozenset({"false", "f", "no", "n", "0", "否", "假"})

_INTEGER = re.compile(r"[+-]?[0-9]+")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
# 2026-01-05, 2026/1/5, 2026.1.5, 2026年1月5日
_DATE = re.compile(r"([0-9]{4})(?:[-/.]|年)([0-9]{1,2})(?:[-/.]|月)([0-9]{1,2})日?")
_CLOCK = re.compile(r"([0-9]{1,2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]{1,6}))?)?")


class CellError(ValueError):
    """The cell does not hold a value of its field's type; the message says what was expected."""


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        # A number in a text column (a phone number typed as a number) shows without ".0".
        return str(int(value))
    if isinstance(value, dt.datetime | dt.date | int | float):
        return str(value)
    raise CellError(f"unexpected cell of type {type(value).__name__}")


def to_string(value: Any, zone: ZoneInfo) -> str:
    text = value.strip() if type(value) is str else _text(value).strip()
    if "\x00" in text:
        raise CellError("text may not contain NUL characters")
    return text


def to_integer(value: Any, zone: ZoneInfo) -> int:
    if isinstance(value, bool):
        raise CellError("expected an integer, got true/false")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if value.is_integer():
            return int(value)
        raise CellError(f"expected an integer, got {value!r}")
    text = _text(value).strip()
    if not _INTEGER.fullmatch(text):
        raise CellError(f"expected an integer, got {text!r}")
    return int(text)


def to_number(value: Any, zone: ZoneInfo) -> int | float:
    if isinstance(value, bool):
        raise CellError("expected a number, got true/false")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            raise CellError(f"expected a finite number, got {value!r}")
        return value
    text = _text(value).strip()
    if not _NUMBER.fullmatch(text):
        raise CellError(f"expected a number (digits, a point, no thousands separators), got {text!r}")
    if _INTEGER.fullmatch(text):
        return int(text)
    number = float(text)
    if not math.isfinite(number):
        raise CellError(f"expected a finite number, got {text!r}")
    return number


_BOOLEANS = dict.fromkeys(TRUE_WORDS, True) | dict.fromkeys(FALSE_WORDS, False)


def to_boolean(value: Any, zone: ZoneInfo) -> bool:
    if isinstance(value, bool):
        return value
    text = _text(value).strip().lower()
    found = _BOOLEANS.get(text)
    if found is not None:
        return found
    raise CellError(f"expected 是/否 (or true/false, 1/0), got {text!r}")


def _date_of(text: str) -> dt.date:
    match = _DATE.fullmatch(text)
    if match is None:
        raise CellError(f"expected a date as YYYY-MM-DD, got {text!r}")
    try:
        return dt.date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        raise CellError(f"no such date: {text!r}") from None


def to_date(value: Any, zone: ZoneInfo) -> str:
    if type(value) is str and len(value) == 10 and value[4] == "-" and value[7] == "-":
        # Already YYYY-MM-DD (as most files write it): checked, and kept as it is.
        try:
            dt.date.fromisoformat(value)
            return value
        except ValueError:
            pass  # named below
    if isinstance(value, dt.datetime):
        if value.time() != dt.time(0):
            raise CellError(f"expected a date, got a date and time {value.isoformat(sep=' ')}")
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return _date_of(_text(value).strip()).isoformat()


@functools.lru_cache(maxsize=4096)
def _offset(hour: str, zone: ZoneInfo) -> str:
    """The zone's UTC offset in the hour ``hour`` (YYYY-MM-DD HH), as ISO 8601 writes it."""
    moment = dt.datetime.fromisoformat(f"{hour[:10]}T{hour[11:13]}:30").replace(tzinfo=zone)
    return moment.isoformat()[19:]


def to_timestamp(value: Any, zone: ZoneInfo) -> str:
    """ISO 8601 with the offset; a time without one is the upload's time zone (Beijing time
    unless the upload says otherwise), as a person in an office types it."""
    if type(value) is str and len(value) == 19 and value[10] in " T":
        # YYYY-MM-DD HH:MM:SS, as most files write it: checked, and the zone's offset added to it.
        try:
            dt.datetime.fromisoformat(value)
            return f"{value[:10]}T{value[11:]}{_offset(value[:13], zone)}"
        except ValueError:
            pass  # named below
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, dt.date):
        moment = dt.datetime.combine(value, dt.time(0))
    else:
        text = _text(value).strip()
        try:
            moment = dt.datetime.fromisoformat(text)
        except ValueError:
            moment = _local_moment(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.isoformat()


def _local_moment(text: str) -> dt.datetime:
    day, _, clock = text.partition(" ")
    date = _date_of(day.strip())
    match = _CLOCK.fullmatch(clock.strip()) if clock.strip() else None
    if clock.strip() and match is None:
        raise CellError(f"expected a time as YYYY-MM-DD HH:MM:SS, got {text!r}")
    if match is None:
        return dt.datetime.combine(date, dt.time(0))
    try:
        micros = int((match[4] or "0").ljust(6, "0"))
        return dt.datetime.combine(date, dt.time(int(match[1]), int(match[2]), int(match[3] or 0), micros))
    except ValueError:
        raise CellError(f"no such time: {text!r}") from None


CONVERTERS: dict[FieldType, Callable[[Any, ZoneInfo], Any]] = {
    FieldType.STRING: to_string,
    FieldType.INTEGER: to_integer,
    FieldType.NUMBER: to_number,
    FieldType.BOOLEAN: to_boolean,
    FieldType.DATE: to_date,
    FieldType.TIMESTAMP: to_timestamp,
}

# What the template says each type takes (and the error report repeats).
FORMATS: dict[FieldType, str] = {
    FieldType.STRING: "文本 text",
    FieldType.INTEGER: "整数 integer",
    FieldType.NUMBER: "数值 number",
    FieldType.BOOLEAN: "是/否 boolean",
    FieldType.DATE: "日期 date YYYY-MM-DD",
    FieldType.TIMESTAMP: "时间 timestamp YYYY-MM-DD HH:MM:SS (北京时间 unless +08:00 etc. is given)",
}
