"""A subscriber that starts from nothing loads the resource's snapshot (CSV chunks, COPY), then
follows the change log from the snapshot's position: no row lost or doubled, killed or not."""

from __future__ import annotations

import psycopg
import pytest

from front_end_node.pull import LoadedChunks
from tests.support.nodes import POPULATION_COLUMNS, exchange_client, wait_for
from tests.support.samples import PURPOSE, resident_id
from tests.support.world import World


def _audit(world: World, code: str, action: str) -> list[dict[str, object]]:
    with psycopg.connect(world.exchange.database_url) as conn:
        rows = conn.execute(
            "SELECT entry::jsonb -> 'scope' FROM audit_log WHERE resource = %s AND action = %s AND entry LIKE %s "
            "ORDER BY id",
            (code, action, '%"zjg-wjw"%'),
        ).fetchall()
    return [row[0] for row in rows]


def _exchange_holds(world: World, code: str, rows: int) -> None:
    wait_for(lambda: world.current_rows(code) >= rows, 60, f"the exchange to hold {rows} rows of {code}")


def _loaded(consumer_db: str) -> tuple[str | None, int]:
    """The snapshot's last key loaded (None: not loading), and the rows in the table."""
    with psycopg.connect(consumer_db) as conn:
        if conn.execute("SELECT to_regclass('gdx.subscription_state')").fetchone() == (None,):
            return None, 0
        state = conn.execute("SELECT snapshot_after FROM gdx.subscription_state").fetchone()
        if state is None or state[0] is None:
            return None, 0
        rows = conn.execute("SELECT count(*) FROM gaj_population").fetchone()
    return state[0], rows[0] if rows else 0


@pytest.mark.slow  # a SIGKILL in the middle, like the other kill tests
def test_a_late_subscriber_starts_from_a_snapshot_and_survives_a_kill_in_the_middle(world: World) -> None:
    code, source, provider = world.population(compare_interval_s=1)
    source.insert(range(3000))
    provider.start()
    _exchange_holds(world, code, 3000)

    world.subscribe("zjg-wjw", code)
    consumer = world.agent(
        "zjg-wjw", subscribes=[{"resource": code, "purpose": PURPOSE, "table": "gaj_population"}], snapshot_rows=100
    )
    consumer.start()
    wait_for(lambda: _loaded(consumer.front_end_db)[1] >= 500, 60, "the subscriber to be loading its snapshot")
    consumer.kill()  # SIGKILL between chunks, or in the middle of one
    resume_after, held = _loaded(consumer.front_end_db)
    assert resume_after is not None
    # Meanwhile the source moves on: these reach the subscriber through the change log.
    source.execute(
        "UPDATE population SET name = '改名' WHERE id_number = ANY(%s)", ([resident_id(n) for n in (5, 2999)],)
    )
    source.execute("DELETE FROM population WHERE id_number = ANY(%s)", ([resident_id(n) for n in range(100, 110)],))
    source.insert(range(5000, 5020))
    consumer.start()
    world.converge(source.rows, consumer.front_end_db, "gaj_population", POPULATION_COLUMNS, timeout=90)

    chunks = _audit(world, code, "snapshot")
    loaded = sum(int(c["rows"]) for c in chunks)  # type: ignore[call-overload]
    assert len(chunks) >= 30
    assert loaded >= 3000  # every row once, but for the chunk the kill cut (read again after the restart)
    assert loaded <= 3000 + 20 + 200  # not loaded again from the start
    after_keys = [c["after_key"] for c in chunks]
    assert after_keys.count(None) == 1, "the restarted agent went on after its last committed chunk"
    assert resume_after in after_keys
    assert held >= 500
    pulls = _audit(world, code, "pull")
    assert pulls, "after the snapshot the subscriber follows the change log"
    assert min(int(p["after"]) for p in pulls) >= 3000  # type: ignore[call-overload]
    with psycopg.connect(consumer.front_end_db) as conn:
        state = conn.execute("SELECT after_seq, snapshot_seq, snapshot_after FROM gdx.subscription_state").fetchone()
    assert state is not None
    assert state[1:] == (None, None)
    assert state[0] >= 3000


def test_a_replayed_change_is_applied_only_where_its_chunk_was_read_before_it() -> None:
    loaded = LoadedChunks([["b", 10], ["d", 15], [None, 20]])
    assert loaded.last_position == 20
    assert loaded.holds("a", 10)  # the first chunk was read at 10: a change at 10 is in it
    assert not loaded.holds("a", 11)
    assert loaded.holds("b", 10)
    assert not loaded.holds("b", 12)
    assert loaded.holds("c", 15)
    assert not loaded.holds("c", 16)
    assert loaded.holds("z", 20)
    assert not loaded.holds("z", 21)
    assert loaded.holds("张", 20)  # past every last key: the last chunk
    assert LoadedChunks([[None, 7]]).holds("anything", 7)


def test_a_subscription_begun_during_a_full_load_reads_the_change_log(world: World) -> None:
    code, source, provider = world.population()
    source.insert(range(500))
    provider.start()
    _exchange_holds(world, code, 500)
    with exchange_client(world.exchange, "zjg-gaj") as gaj:
        load = gaj.post(f"/v1/resources/{code}/loads").json()  # as `gdx node sync --full` opens it
    consumer = world.subscriber(code)
    consumer.start()
    world.converge(source.rows, consumer.front_end_db, "gaj_population", POPULATION_COLUMNS, timeout=60)
    assert "reads the change log" in consumer.log()
    refusals = _audit(world, code, "snapshot")
    assert refusals, "the agent asked for the snapshot first"
    assert all(c.get("status") == 409 and "rows" not in c for c in refusals)  # refused while the load moves
    assert min(int(p["after"]) for p in _audit(world, code, "pull")) == 0  # type: ignore[call-overload]
    with exchange_client(world.exchange, "zjg-gaj") as gaj:
        assert gaj.post(f"/v1/resources/{code}/loads/{load['id']}", json={"rows": 500, "finished": True}).is_success
