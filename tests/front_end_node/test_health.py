"""What /healthz and /metrics say about the subscriptions, read from a real front-end database."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from front_end_node import store
from front_end_node.health import create_app
from front_end_node.state import AgentState
from gdx.pki import Role, init_ca, issue
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


def test_the_health_port_shows_what_each_caller_may_see(pg: PostgresServer, tmp_path: Path) -> None:
    """Without a certificate: health and metrics from this machine only; the tallies, derived
    from the data, only to the monitoring's identity (operator or admin)."""
    url = pg.create_database(f"health_{uuid.uuid4().hex[:8]}")
    init_ca(tmp_path)
    pems = {}
    for name, role in (("zjg-gaj", Role.DEPARTMENT), ("zjg-wjw", Role.DEPARTMENT), ("monitor", Role.OPERATOR)):
        cert, _ = issue(tmp_path, name, role=role)
        pems[name] = cert.read_text()
    inner = create_app(AgentState("zjg-gaj", tmp_path / "zjg-gaj.crt"), url)

    async def migrate() -> None:
        async with await store.connect(url) as conn:
            await store.migrate(conn)

    run(migrate())

    def status(path: str, *, caller: str | None, remote: bool) -> int:
        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if caller is not None:  # as gdx.peer_tls hands a verified certificate over
                scope.setdefault("extensions", {})["tls"] = {"client_cert_chain": [pems[caller]]}
            await inner(scope, receive, send)

        async def get() -> int:
            client_address = ("192.0.2.40" if remote else "127.0.0.1", 50000)
            transport = httpx.ASGITransport(app=app, client=client_address)
            async with httpx.AsyncClient(transport=transport, base_url="https://node") as client:
                return (await client.get(path, params={"side": "provider"})).status_code

        return run(get())

    tally = "/v1/tally/zjg-gaj.population"
    assert [status(p, caller=None, remote=False) for p in ("/healthz", "/metrics")] == [503, 200]
    assert [status(p, caller=None, remote=True) for p in ("/healthz", "/metrics", tally)] == [401, 401, 401]
    assert status(tally, caller=None, remote=False) == 401
    assert [status(p, caller="zjg-wjw", remote=True) for p in ("/healthz", "/metrics", tally)] == [403, 403, 403]
    assert [status(p, caller="zjg-gaj", remote=True) for p in ("/healthz", "/metrics", tally)] == [503, 200, 403]
    # The monitoring reaches the tally (this node has no such resource: 404, not a refusal).
    assert [status(p, caller="monitor", remote=True) for p in ("/healthz", "/metrics", tally)] == [503, 200, 404]
