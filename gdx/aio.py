"""Pieces shared by the long-running processes (front-end agent, monitoring agent)."""

from __future__ import annotations

import asyncio
import contextlib
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
