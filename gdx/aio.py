"""Pieces shared by the long-running processes (exchange, front-end agent, monitoring agent)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import Generator

import uvicorn


class QuietServer(uvicorn.Server):
    """uvicorn would take SIGTERM for itself; the process handles signals and stops it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def pause(stop: asyncio.Event, seconds: float) -> None:
    """Sleep, but wake at once when ``stop`` is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


def tune_gc() -> None:
    """Collect garbage less often in a process that handles batches of thousands of rows.

    Python's cycle collector runs every 700 new container objects and rescans everything alive;
    parsing one 1,000-change batch makes about 25,000 of them, and those collections took half
    of the time spent parsing and validating it. Objects alive once the process has started
    (modules, models, schemas) are frozen: no collection scans them again. Refcounting still
    frees almost everything at once; only cycles wait for the rarer collections.
    """
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
