"""What /healthz and /metrics say about the subscriptions, read from a real front-end database."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from front_end_node import store
from front_end_node.health import AgentState, create_app
from gdx.pki import init_ca, issue
from tests.support.aio import run
from tests.support.postgres import PostgresServer
from tests.support.promtool import lint_metrics


def test_a_subscription_reading_its_resource_again_shows_on_healthz_and_metrics(
    pg: PostgresServer, tmp_path: Path
) -> None:
    url = pg.create_database(f"health_{uuid.uuid4().hex[:8]}")
    state = AgentState("zjg-wjw", tmp_path / "no.crt")
    app = create_app(state, url)

    async def refresh_and_read(statement: str) -> tuple[dict[str, Any], dict[str, float]]:
        """Change the subscriptions' state, let the agent read it, and ask its endpoints."""
        conn = await store.connect(url)
        async with conn:
            await store.migrate(conn)
            await conn.execute(statement)
            await conn.commit()
            await state.refresh(conn)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://node") as client:
            health = (await client.get("/healthz")).json()
            metrics = (await client.get("/metrics")).text
        family = next(f for f in text_string_to_metric_families(metrics) if f.name == "gdx_node_pull_refilling")
        return health["subscriptions"], {s.labels["resource"]: s.value for s in family.samples}

    subscriptions, refilling = run(
        refresh_and_read(
            "INSERT INTO gdx.subscription_state (resource, table_name, after_seq, refilling) VALUES "
            "('zjg-gaj.population', 'population', 120, true), ('zjg-scjgj.legal-entity', 'legal_entity', 7, false)"
        )
    )
    assert subscriptions == {
        "zjg-gaj.population": {"after_seq": 120, "refilling": True},
        "zjg-scjgj.legal-entity": {"after_seq": 7, "refilling": False},
    }
    assert refilling == {"zjg-gaj.population": 1, "zjg-scjgj.legal-entity": 0}

    subscriptions, refilling = run(
        refresh_and_read("UPDATE gdx.subscription_state SET refilling = false, after_seq = 130")
    )
    assert subscriptions["zjg-gaj.population"] == {"after_seq": 130, "refilling": False}
    assert refilling == {"zjg-gaj.population": 0, "zjg-scjgj.legal-entity": 0}


def test_every_series_of_the_agent_passes_promtool(pg: PostgresServer, tmp_path: Path) -> None:
    url = pg.create_database(f"health_{uuid.uuid4().hex[:8]}")
    init_ca(tmp_path)
    cert, _ = issue(tmp_path, "zjg-gaj")
    state = AgentState("zjg-gaj", cert)
    app = create_app(state, url)
    state.ok("extract", "zjg-gaj.population", rows=3, batches=1, read=5, tidied=1)
    state.failed("push", "zjg-gaj.population", "the exchange is down")
    state.rows_ahead["zjg-gaj.population"] = 2

    async def metrics() -> str:
        conn = await store.connect(url)
        async with conn:
            await store.migrate(conn)
            await conn.execute(
                "INSERT INTO gdx.quarantine (resource, key, reason) VALUES ('zjg-gaj.population', 'x', 'bad key');"
                "INSERT INTO gdx.heartbeat (hop, resource, seq, source_time) VALUES "
                "('extract', 'zjg-gaj.population', 4, now())"
            )
            await conn.commit()
            await state.refresh(conn)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://node") as client:
            return (await client.get("/metrics")).text

    exposition = run(metrics())
    names = {family.name for family in text_string_to_metric_families(exposition)}
    assert {"gdx_node_keys_tidied", "gdx_node_quarantined_rows", "gdx_node_source_rows_ahead"} <= names
    assert lint_metrics(exposition) == []
