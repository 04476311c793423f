"""Working days on the Chinese official calendar (holidays and make-up workdays).

`chinese-calendar` knows each year once the State Council has published its schedule
(each November). For a year it does not know, an operator can supply the schedule in a
YAML file; without one we count Monday to Friday, flag the result as estimated and log a
warning — a deadline is never refused for want of a calendar.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

import chinese_calendar
import structlog
import yaml

log = structlog.get_logger(__name__)

# China's one time zone (Beijing time, UTC+8), which deadlines and "today" are counted in.
BEIJING = ZoneInfo("Asia/Shanghai")


def today() -> dt.date:
    """Today's date in Beijing: a deadline falls due on a Beijing working day, whatever the server's zone."""
    return dt.datetime.now(BEIJING).date()


class CalendarFileError(ValueError):
    pass


@dataclass(frozen=True)
class Deadline:
    due: dt.date
    estimated: bool  # some day on the way was counted by weekday only


@dataclass
class WorkCalendar:
    """``holidays`` and ``workdays`` come from an operator file and override the library."""

    holidays: frozenset[dt.date] = frozenset()
    workdays: frozenset[dt.date] = frozenset()
    years: frozenset[int] = frozenset()
    _warned: set[int] = field(default_factory=set)

    @classmethod
    def from_file(cls, path: Path) -> WorkCalendar:
        """Read ``{2027: {holidays: [2027-01-01, ...], workdays: [2027-02-07, ...]}}``."""
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise CalendarFileError(f"{path}: cannot read the calendar file: {exc}") from None
        holidays: set[dt.date] = set()
        workdays: set[dt.date] = set()
        years: set[int] = set()
        if not isinstance(data, dict):
            raise CalendarFileError(f"{path}: expected a mapping of year -> {{holidays, workdays}}")
        for year, spec in data.items():
            if not isinstance(year, int) or not isinstance(spec, dict):
                raise CalendarFileError(f"{path}: {year!r}: expected `YEAR: {{holidays: [...], workdays: [...]}}`")
            for kind, target in (("holidays", holidays), ("workdays", workdays)):
                for day in spec.get(kind) or []:
                    if not isinstance(day, dt.date) or day.year != year:
                        raise CalendarFileError(f"{path}: {year}.{kind}: {day!r} is not a date in {year}")
                    target.add(day)
            years.add(year)
        return cls(frozenset(holidays), frozenset(workdays), frozenset(years))

    def knows(self, day: dt.date) -> bool:
        if day.year in self.years:
            return True
        try:
            chinese_calendar.is_workday(day)
        except NotImplementedError:
            return False
        return True

    def is_workday(self, day: dt.date) -> tuple[bool, bool]:
        """Return (is a working day, known for certain)."""
        if day in self.workdays:
            return True, True
        if day in self.holidays:
            return False, True
        if day.year in self.years:
            return day.weekday() < 5, True
        try:
            return bool(chinese_calendar.is_workday(day)), True
        except NotImplementedError:
            if day.year not in self._warned:
                self._warned.add(day.year)
                log.warning(
                    "calendar_year_unknown",
                    year=day.year,
                    hint="supply the official schedule with --calendar FILE; counting Monday-Friday until then",
                )
            return day.weekday() < 5, False

    def add_working_days(self, start: dt.date, days: int) -> Deadline:
        """The date ``days`` working days after ``start`` (the start day itself not counted)."""
        if days < 0:
            raise ValueError("days must be >= 0")
        day, counted, certain = start, 0, True
        while counted < days:
            day += dt.timedelta(days=1)
            working, known = self.is_workday(day)
            certain = certain and known
            counted += working
        return Deadline(day, not certain)
