"""Nothing lost, nothing doubled: outages, restarts and kills on the data path."""

from __future__ import annotations

import random
import subprocess
import sys
import time

import psycopg
import pytest

from tests.support.nodes import POPULATION_COLUMNS, pg_rows, pg_table_exists, wait_for
from tests.support.postgres import PostgresServer
from tests.support.samples import PURPOSE, resident_id
from tests.support.world import World


def doubled_changes(world: World, code: str) -> list[tuple[str, int]]:
    with psycopg.connect(world.exchange.database_url) as conn:
        return conn.execute(
            "SELECT c.key, c.source_version FROM change c JOIN resource r ON r.id = c.resource_id "
            "WHERE r.code = %s AND c.op <> 'h' GROUP BY 1, 2 HAVING count(*) > 1",
            (code,),
        ).fetchall()


@pytest.mark.slow  # an outage, waited out in real time
def test_changes_wait_in_the_front_end_db_while_the_exchange_is_down(world: World) -> None:
    code, source, provider = world.population(compare_interval_s=1)
    world.subscribe("zjg-wjw", code)
    consumer = world.agent("zjg-wjw", subscribes=[{"resource": code, "purpose": PURPOSE, "table": "population"}])
    source.insert(range(100))
    provider.start()
    consumer.start()
    world.converge(source.rows, consumer.front_end_db, "population", POPULATION_COLUMNS, timeout=60)

    world.exchange.stop()
    try:
        source.insert(range(100, 400))
        source.execute("UPDATE population SET name = '断网期间改名' WHERE id_number = %s", (resident_id(1),))
        source.execute("DELETE FROM population WHERE id_number = %s", (resident_id(2),))

        def waiting() -> bool:
            pending = provider.metric("gdx_node_pending_rows", resource=code) or 0
            return pending >= 300 and provider.health()["loops"][f"push/{code}"]["state"] == "error"

        wait_for(waiting, 30, "the changes to wait in the outbox", on_timeout=world.logs)
        message = provider.health()["loops"][f"push/{code}"]["message"]
        assert "unreachable" in message
        assert len(pg_rows(consumer.front_end_db, "population", ["id_number"])) == 100
    finally:
        world.exchange.start_again()
    world.converge(source.rows, consumer.front_end_db, "population", POPULATION_COLUMNS, timeout=60)
    assert doubled_changes(world, code) == []
    wait_for(lambda: provider.health()["status"] == "ok", 20, "the provider to be healthy again")


@pytest.mark.slow  # an outage, waited out in real time
def test_a_front_end_database_restart_mid_batch_loses_nothing(world: World) -> None:
    front_end = PostgresServer().start()
    try:
        code, source, provider = world.population(front_end_db=world.database("fe_gaj", front_end))
        world.subscribe("zjg-wjw", code)
        consumer = world.agent(
            "zjg-wjw",
            world.database("fe_wjw", front_end),
            subscribes=[{"resource": code, "purpose": PURPOSE, "table": "population"}],
        )
        source.insert(range(30_000))
        provider.start()
        consumer.start()

        def moving() -> bool:
            try:
                return len(pg_rows(consumer.front_end_db, "population", ["id_number"])) > 0
            except psycopg.Error:
                return False

        wait_for(moving, 60, "rows to reach the subscriber", on_timeout=world.logs)
        front_end.restart()
        source.insert(range(30_000, 31_000))
        world.converge(source.rows, consumer.front_end_db, "population", POPULATION_COLUMNS, timeout=180)
        assert provider.running()
        assert consumer.running()
        assert doubled_changes(world, code) == []
    finally:
        world.stop()
        front_end.stop()


@pytest.mark.slow  # an outage, waited out in real time
def test_full_sync_resumes_after_a_kill_and_doubles_nothing(world: World) -> None:
    code, source, provider = world.population(lookback_s=3)
    source.insert(range(20_000))
    command = [sys.executable, "-m", "gdx.cli", "node", "sync", "--full", code, "--no-wait", "--config",
               str(provider.config_path)]  # fmt: skip
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def rows_done() -> int:
        try:
            with psycopg.connect(provider.front_end_db) as conn:
                row = conn.execute("SELECT rows_done FROM gdx.full_sync WHERE resource = %s", (code,)).fetchone()
        except psycopg.Error:
            return 0
        return int(row[0]) if row else 0

    wait_for(lambda: rows_done() > 0 or first.poll() is not None, 60, "the load to commit its first page")
    first.kill()
    first.wait()
    interrupted_at = rows_done()
    assert 0 < interrupted_at < 20_000, "killed in the middle of the load"

    second = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    assert "20,000 rows read" in second.stderr
    with psycopg.connect(provider.front_end_db) as conn:
        figures = conn.execute(
            "SELECT (SELECT count(*) FROM gdx.mirror WHERE resource = %(c)s), "
            "(SELECT count(*) FROM gdx.outbox WHERE resource = %(c)s AND op = 'u'), "
            "(SELECT max(version) FROM gdx.mirror WHERE resource = %(c)s)",
            {"c": code},
        ).fetchone()
    assert figures == (20_000, 20_000, 1), "every row once, none twice"
    with psycopg.connect(world.exchange.database_url) as conn:
        load = conn.execute(
            "SELECT l.rows, l.finished_at FROM resource_load l JOIN resource r ON r.id = l.resource_id "
            "WHERE r.code = %s",
            (code,),
        ).fetchall()
    assert load == [(20_000, None)], "one load, resumed, open at the exchange until the agent pushes its rows"

    world.subscribe("zjg-wjw", code)
    consumer = world.agent("zjg-wjw", subscribes=[{"resource": code, "purpose": PURPOSE, "table": "population"}])
    provider.start()
    consumer.start()
    world.converge(source.rows, consumer.front_end_db, "population", POPULATION_COLUMNS, timeout=120)

    # The agent checks the loaded rows' change values for late commits, as (value, key)
    # pairs; rows the load put in the mirror at those values are not read again in full.
    def rows_read() -> float:
        return provider.metric("gdx_node_source_rows_read_total", resource=code) or 0.0

    wait_for(lambda: rows_read() >= 20_000, 30, "the loaded range checked for late commits", on_timeout=world.logs)
    time.sleep(2)
    assert rows_read() < 21_000


@pytest.mark.slow
def test_sigkill_twenty_times_during_a_100k_row_sync(world: World) -> None:
    code, source, provider = world.population(compare_interval_s=5)
    world.subscribe("zjg-wjw", code)
    consumer = world.agent("zjg-wjw", subscribes=[{"resource": code, "purpose": PURPOSE, "table": "population"}])
    source.insert(range(100_000))
    rng = random.Random(20261122)
    provider.start()
    consumer.start()
    mid_sync = 0
    for _ in range(20):
        time.sleep(rng.uniform(0.3, 1.5))
        victims = rng.choice([[provider], [consumer], [provider, consumer]])
        for agent in victims:
            agent.kill()
        held = (
            len(pg_rows(consumer.front_end_db, "population", ["id_number"]))
            if pg_table_exists(consumer.front_end_db, "population")
            else 0
        )
        mid_sync += held < 100_000
        # the source keeps changing while the agents die
        changed = [resident_id(rng.randrange(100_000)) for _ in range(20)]
        source.execute(
            "UPDATE population SET household_size = household_size + 1 WHERE id_number = ANY(%s)", (changed,)
        )
        for agent in victims:
            agent.start()
    assert mid_sync >= 10, f"only {mid_sync} of the 20 kills came before the subscriber had every row"
    world.converge(source.rows, consumer.front_end_db, "population", POPULATION_COLUMNS, timeout=300)
    assert doubled_changes(world, code) == []
