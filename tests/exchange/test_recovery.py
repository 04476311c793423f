"""The exchange after its database went away: answered 503 meanwhile, serving again within
seconds of the database's return, however long the outage."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.exchange import RunningExchange, start_exchange
from tests.support.postgres import PostgresServer
from tests.support.samples import batch, population_entry, unique_code, upsert

pytestmark = pytest.mark.slow  # an outage of half a minute


@pytest.fixture
def own_database(tmp_path: Path) -> Iterator[tuple[PostgresServer, RunningExchange]]:
    server = PostgresServer().start()
    running = start_exchange(server, tmp_path, "exchange_recovery")
    yield server, running
    running.stop()
    server.stop()


def test_the_exchange_serves_again_within_seconds_of_its_database(
    own_database: tuple[PostgresServer, RunningExchange],
) -> None:
    server, exchange = own_database
    client = exchange.client("zjg-gaj")
    code = unique_code("zjg-gaj")
    assert client.post("/v1/resources", json=population_entry(code)).status_code == 201

    server.halt()
    outage_ends = time.monotonic() + 30
    while time.monotonic() < outage_ends:  # requests keep the pool trying, and its pauses growing
        answer = client.post(f"/v1/resources/{code}/changes", json=batch(upsert(1, 1)))
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"] == "unavailable"
        assert answer.headers["retry-after"]
        time.sleep(1)
    server.resume()
    back = time.monotonic()
    while (answer := client.post(f"/v1/resources/{code}/changes", json=batch(upsert(1, 2)))).status_code != 200:
        assert time.monotonic() - back < 5, f"still {answer.status_code} after 5 s: {answer.text}"
        time.sleep(0.2)
    assert answer.json()["applied"] == 1
    assert client.get("/readyz").status_code == 200
