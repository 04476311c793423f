from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.exchange import RunningExchange, start_exchange
from tests.support.postgres import PostgresServer


@pytest.fixture(scope="session")
def exchange(pg: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningExchange]:
    running = start_exchange(pg, tmp_path_factory.mktemp("exchange"))
    yield running
    running.stop()


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    return tmp_path
