"""Fixtures every suite may use; what they build lives in tests/support/."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.support.exchange import RunningExchange, start_exchange
from tests.support.mariadb import MariaDbServer
from tests.support.postgres import PostgresServer
from tests.support.stacks import make_central_pki, render_stacks
from tests.support.world import World

if TYPE_CHECKING:
    from infra.render import Rendering


@pytest.fixture(scope="session")
def pg() -> Iterator[PostgresServer]:
    # wal_level logical: business databases of the suites that capture changes from the log.
    server = PostgresServer(settings={"wal_level": "logical"}).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mariadb() -> Iterator[MariaDbServer]:
    server = MariaDbServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def module_exchange(pg: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningExchange]:
    """An exchange of the test module's own (its own database), for suites that run nodes against it."""
    running = start_exchange(pg, tmp_path_factory.mktemp("exchange"), dbname=f"exchange_{uuid.uuid4().hex[:6]}")
    yield running
    running.stop()


@pytest.fixture
def world(pg: PostgresServer, module_exchange: RunningExchange, tmp_path: Path) -> Iterator[World]:
    """Departments, their databases and agents for one test (tests/support/world.py)."""
    w = World(pg, module_exchange, tmp_path)
    yield w
    w.stop()


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The central stack's PKI (CA, exchange, ingress, monitor, prometheus), for rendering stacks."""
    return make_central_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def rendered(pki: Path) -> dict[str, Rendering]:
    """The local, dev and prod stacks rendered once per session under Pulumi's mocks."""
    return render_stacks(pki)
