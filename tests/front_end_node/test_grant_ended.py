"""A subscriber's node when its grant ends: it stops, says so in /healthz and a metric, and keeps
its rows frozen or purges them as the grant says; restored, it reads on."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tests.support.nodes import POPULATION_COLUMNS, exchange_client, pg_rows, wait_for
from tests.support.samples import PURPOSE, resident_id
from tests.support.world import World


def _withdrawn(agent_metrics: str, code: str) -> list[dict[str, str]]:
    return [
        sample.labels
        for family in text_string_to_metric_families(agent_metrics)
        if family.name == "gdx_node_subscription_withdrawn"
        for sample in family.samples
        if sample.labels["resource"] == code and sample.value == 1
    ]


def test_a_revoked_grant_stops_the_subscription_keeping_or_purging_its_rows(world: World) -> None:
    code, source, provider = world.population()
    consumer = world.subscriber(code)
    source.insert(range(40))
    provider.start()
    consumer.start()
    world.converge(source.rows, consumer.front_end_db, "gaj_population", POPULATION_COLUMNS, timeout=60)
    with exchange_client(world.exchange, "zjg-wjw") as wjw:
        grant = next(g for g in wjw.get("/v1/grants").json() if g["resource"] == code)

    def revoke(on_revoke: str) -> None:
        with exchange_client(world.exchange, "zjg-gaj") as gaj:
            answer = gaj.post(f"/v1/grants/{grant['id']}/revoke", json={"reason": "超出用途", "on_revoke": on_revoke})
            assert answer.status_code == 200, answer.text

    def restore() -> None:
        with exchange_client(world.exchange, "zjg-gaj") as gaj:
            assert gaj.post(f"/v1/grants/{grant['id']}/restore", json={"reason": "整改完成"}).status_code == 200

    def stopped(rows: str) -> bool:
        said = consumer.health().get("withdrawn", {}).get(code)
        return bool(said and said["grant"] == "revoked" and said["rows"] == rows)

    # Kept: the rows stay as they were, and what the provider changes afterwards does not arrive.
    revoke("keep")
    wait_for(lambda: stopped("kept"), 30, "the node to say its grant was revoked", on_timeout=consumer.log)
    health = consumer.health()
    assert health["loops"][f"pull/{code}"]["state"] == "withdrawn"
    assert "超出用途" in health["loops"][f"pull/{code}"]["message"]
    assert health["status"] == "ok"  # the node is not at fault
    assert _withdrawn(consumer.metrics(), code) == [{"resource": code, "grant": "revoked", "rows": "kept"}]
    held = pg_rows(consumer.front_end_db, "gaj_population", POPULATION_COLUMNS)
    assert len(held) == 40
    source.insert(range(100, 110))
    with exchange_client(world.exchange, "zjg-gaj") as gaj:  # the provider's changes reach the exchange...
        newest = f"/v1/resources/{code}/records/{resident_id(109)}"
        wait_for(lambda: gaj.get(newest, params={"purpose": PURPOSE}).status_code == 200, 30, "the new rows centrally")
    assert sorted(pg_rows(consumer.front_end_db, "gaj_population", POPULATION_COLUMNS)) == sorted(held)  # ...not here

    # Restored: it reads on from where it stopped.
    restore()
    world.converge(source.rows, consumer.front_end_db, "gaj_population", POPULATION_COLUMNS, timeout=60)
    assert _withdrawn(consumer.metrics(), code) == []
    assert "withdrawn" not in consumer.health()["loops"][f"pull/{code}"]["state"]

    # Purged: the table is emptied.
    revoke("purge")
    wait_for(lambda: stopped("purged"), 30, "the node to purge the revoked rows", on_timeout=consumer.log)
    assert pg_rows(consumer.front_end_db, "gaj_population", POPULATION_COLUMNS) == []
    restore()  # and read again from the start
    world.converge(source.rows, consumer.front_end_db, "gaj_population", POPULATION_COLUMNS, timeout=60)
