"""Working-day deadlines on the official calendar."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from gdx.workdays import CalendarFileError, WorkCalendar

D = dt.date


def test_national_day_holiday_and_the_makeup_saturday() -> None:
    # Filed Tue 29 Sep 2026: Sep 30 (1), Oct 1-7 holiday, Oct 8 (2), Oct 9 (3),
    # Sat Oct 10 is a make-up workday (4), Sun Oct 11 is off, Mon Oct 12 (5).
    deadline = WorkCalendar().add_working_days(D(2026, 9, 29), 5)
    assert deadline.due == D(2026, 10, 12)
    assert not deadline.estimated


def test_ningxia_ten_days_across_the_same_holiday() -> None:
    # Oct 12 (5), 13 (6), 14 (7), 15 (8), 16 (9), 19 (10).
    assert WorkCalendar().add_working_days(D(2026, 9, 29), 10).due == D(2026, 10, 19)


def test_a_sunday_makeup_workday_counts() -> None:
    # Sun 20 Sep 2026 is a make-up workday for National Day.
    assert WorkCalendar().add_working_days(D(2026, 9, 19), 1).due == D(2026, 9, 20)


def test_an_unknown_year_is_estimated_not_a_crash() -> None:
    deadline = WorkCalendar().add_working_days(D(2026, 12, 28), 5)
    # Dec 29, 30, 31 (2026, known: Jan 1 2027 unknown) -> Jan 1, 4 counted Monday-Friday.
    assert deadline.due == D(2027, 1, 4)
    assert deadline.estimated


def test_an_operator_calendar_file_fills_the_unknown_year(tmp_path: Path) -> None:
    path = tmp_path / "calendar.yml"
    path.write_text("2027:\n  holidays: [2027-01-01]\n  workdays: []\n", encoding="utf-8")
    deadline = WorkCalendar.from_file(path).add_working_days(D(2026, 12, 28), 5)
    assert deadline.due == D(2027, 1, 5)
    assert not deadline.estimated


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("2027:\n  holidays: [2026-10-01]\n", "is not a date in 2027"),
        ("- 2027-01-01\n", "expected a mapping"),
        ("2027: [1, 2]\n", "expected `YEAR"),
    ],
)
def test_a_bad_calendar_file_is_named(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "calendar.yml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CalendarFileError, match=problem):
        WorkCalendar.from_file(path)
