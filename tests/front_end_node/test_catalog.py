"""The catalog check of a publication: the kept entry serves while the exchange does not answer."""

from __future__ import annotations

import socket
import time
import uuid
from pathlib import Path

import pytest

from front_end_node import catalog, store
from front_end_node.config import ExchangeSettings
from front_end_node.errors import Waiting
from front_end_node.exchange_client import ExchangeClient
from gdx.pki import init_ca, issue
from gdx.protocol import ResourceSpec
from tests.support.aio import run
from tests.support.postgres import PostgresServer
from tests.support.samples import population_entry

CODE = "zjg-gaj.population"


def test_a_kept_entry_serves_at_once_when_the_exchange_does_not_answer(pg: PostgresServer, tmp_path: Path) -> None:
    """A network cut: the exchange's address takes the connection and never answers (a socket
    that listens and never accepts). Extraction must not wait out the client's 30 s."""
    init_ca(tmp_path)
    cert, key = issue(tmp_path, "zjg-gaj")
    url = pg.create_database(f"catalog_{uuid.uuid4().hex[:8]}")
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        settings = ExchangeSettings(
            url=f"https://127.0.0.1:{silent.getsockname()[1]}", ca=tmp_path / "ca.crt", cert=cert, key=key, timeout_s=30
        )

        async def check() -> tuple[ResourceSpec, float]:
            client = ExchangeClient(settings)
            try:
                async with await store.connect(url) as conn:
                    await store.migrate(conn)
                    await store.cache_spec(conn, CODE, ResourceSpec.model_validate(population_entry(CODE)))
                    started = time.monotonic()
                    spec = await catalog.resource_spec(conn, client, CODE, "zjg-gaj")
                    return spec, time.monotonic() - started
            finally:
                await client.close()

        spec, took = run(check())
    assert spec.code == CODE
    assert took < 10, f"the catalog check held extraction up for {took:.1f} s"


def test_without_a_kept_entry_the_hop_waits_and_says_why(pg: PostgresServer, tmp_path: Path) -> None:
    init_ca(tmp_path)
    cert, key = issue(tmp_path, "zjg-gaj")
    url = pg.create_database(f"catalog_{uuid.uuid4().hex[:8]}")
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, not listening: connections are refused at once
        settings = ExchangeSettings(url=f"https://127.0.0.1:{port}", ca=tmp_path / "ca.crt", cert=cert, key=key)

        async def check() -> None:
            client = ExchangeClient(settings)
            try:
                async with await store.connect(url) as conn:
                    await store.migrate(conn)
                    await catalog.resource_spec(conn, client, CODE, "zjg-gaj")
            finally:
                await client.close()

        with pytest.raises(Waiting, match="never been reached"):
            run(check())
