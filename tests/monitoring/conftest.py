"""The monitoring suite's live platform, one per module (tests/support/live_platform.py builds it)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.exchange import RunningExchange
from tests.support.live_platform import Platform, start_platform
from tests.support.postgres import PostgresServer


@pytest.fixture(scope="module")
def platform(
    pg: PostgresServer, module_exchange: RunningExchange, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Platform]:
    running = start_platform(pg, module_exchange, tmp_path_factory.mktemp("platform"))
    yield running
    running.stop()
