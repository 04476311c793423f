"""Walking a big table's keys in ranges, as pt-table-checksum does: each range sized to take
about RANGE_SECONDS, and a pause after each, so that a keyed comparison of a million-row table
never holds the business database (or the front-end server's cores) for seconds at a time.

The walk is not one snapshot: a key that changes meanwhile can make its bucket differ, and then
the bucket's keys are read; it never makes a deletion up (see Extractor.compare)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

RANGE_SECONDS = 0.1  # the work of one range ...
PAUSE_RATIO = 2.0  # ... then a pause twice as long: at most a third of a core
FIRST_RANGE = 10_000
SMALLEST_RANGE = 1_000
LARGEST_RANGE = 1_000_000

# (lower, skip) -> the key `skip` + 1 places after lower, or None when fewer are left.
NextBound = Callable[[Any, int], Awaitable[Any]]


class Pacer:
    """Sizes each walk's ranges by how long the last one took; `busy` adds up the time of the
    ranges, pauses left out."""

    def __init__(
        self,
        seconds: float = RANGE_SECONDS,
        pause_ratio: float = PAUSE_RATIO,
        first: int = FIRST_RANGE,
        smallest: int = SMALLEST_RANGE,
    ) -> None:
        self.seconds = seconds
        self.pause_ratio = pause_ratio
        self.first = first
        self.smallest = smallest
        self.busy = 0.0

    async def ranges(self, next_bound: NextBound) -> AsyncIterator[tuple[Any, Any]]:
        """(lower, upper) ranges that cover every key, lower < key <= upper, None unbounded.
        The caller's work on a range counts into its time."""
        lower, size = None, self.first
        while True:
            started = time.monotonic()
            upper = await next_bound(lower, size - 1)
            yield lower, upper
            took = time.monotonic() - started
            self.busy += took
            if upper is None:
                return
            growth = min(4.0, self.seconds / max(took, 0.001))  # at most 4x at a time
            size = max(self.smallest, min(LARGEST_RANGE, int(size * growth)))
            lower = upper
            await asyncio.sleep(took * self.pause_ratio)
