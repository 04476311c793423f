"""Tallies agree whatever store the values come from, and differ when one row does."""

from __future__ import annotations

import datetime as dt

import pytest

from gdx.fields import FieldType
from gdx.reconcile import Counter, differences, key_range, mismatched

FIELDS = [
    ("id", FieldType.INTEGER),
    ("name", FieldType.STRING),
    ("born", FieldType.DATE),
    ("seen", FieldType.TIMESTAMP),
    ("score", FieldType.NUMBER),
    ("active", FieldType.BOOLEAN),
]
# As JSON gives them (wire, exchange, provider mirror) and as typed columns give them (subscriber).
AS_JSON = [[n, f"名{n}", "1990-02-03", "2026-05-01T08:00:00+08:00", 2, n % 2 == 0] for n in range(500)]
AS_COLUMNS = [
    [n, f"名{n}", dt.date(1990, 2, 3), dt.datetime(2026, 5, 1, 0, 0, tzinfo=dt.UTC), 2.0, n % 2 == 0]
    for n in range(500)
]


def tally(rows: list[list[object]], ranges: int = 16):
    counter = Counter("r", FIELDS, ranges)
    for row in rows:
        counter.add(row[0], row)
    return counter.tally()


def test_json_and_typed_columns_give_the_same_tally() -> None:
    a, b = tally(AS_JSON), tally(list(reversed(AS_COLUMNS)))
    assert a.rows == b.rows == 500
    assert mismatched(a, b) == []


def test_one_changed_missing_or_extra_row_shows_in_its_range_only() -> None:
    base = tally(AS_JSON)
    changed = [row[:] for row in AS_JSON]
    changed[42][1] = "改名"
    assert mismatched(base, tally(changed)) == [key_range("42", 16)]
    assert mismatched(base, tally(AS_JSON[:-1])) == [key_range("499", 16)]
    assert mismatched(base, tally([*AS_JSON, [900, "x", None, None, None, None]])) == [key_range("900", 16)]


def test_ranges_spread_keys_evenly() -> None:
    counts = tally(AS_JSON, ranges=8).counts
    assert min(counts) > 500 / 8 * 0.6, counts


def test_tallies_of_different_fields_are_not_compared() -> None:
    other = Counter("r", FIELDS[:2], 16)
    with pytest.raises(ValueError, match="not comparable"):
        mismatched(tally(AS_JSON), other.tally())
    with pytest.raises(ValueError, match="ranges must be between"):
        Counter("r", FIELDS, 0)


def test_a_difference_that_stays_the_same_is_told_from_rows_in_flight() -> None:
    """Rows on their way change a range's difference from one round to the next; a row lost
    for good leaves the same difference every round."""
    central = tally(AS_JSON)
    lost = [row[:] for row in AS_JSON]
    lost[42][1] = "旧名"
    first, second = differences(tally(lost), central), differences(tally(lost), central)
    assert list(first) == [key_range("42", 16)]
    assert first == second
    moving = [row[:] for row in lost]
    in_flight = next(row for row in moving if key_range(str(row[0]), 16) == key_range("42", 16) and row[0] != 42)
    in_flight[1] = "在途"
    assert differences(tally(moving), central)[key_range("42", 16)] != first[key_range("42", 16)]
