"""What /healthz and /metrics say about the subscriptions, read from a real front-end database."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from front_end_node import store
from front_end_node.health import AgentState, create_app
from tests.support.aio import run
from tests.support.postgres import PostgresServer


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
