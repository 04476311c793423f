"""Business DB -> front-end DB -> exchange -> subscriber's front-end DB, on real databases."""

from __future__ import annotations

import time

import psycopg
import pytest
import yaml

from front_end_node import dba_checklist
from tests.support.nodes import POPULATION_COLUMNS, pg_rows, pg_table_exists, wait_for
from tests.support.samples import PURPOSE, population_entry, resident_id
from tests.support.world import World


def test_inserts_updates_and_deletes_reach_the_subscriber_once(world: World) -> None:
    code, source, provider = world.population(compare_interval_s=1)
    consumer = world.subscriber(code)
    source.insert(range(300))
    provider.start()
    consumer.start()
    world.converge(source.rows, consumer.front_end_db, "gaj_population", POPULATION_COLUMNS, timeout=60)

    for round_ in range(40):  # one row updated many times, in separate transactions
        source.execute("UPDATE population SET name = %s WHERE id_number = %s", (f"改名{round_}", resident_id(7)))
    source.execute("DELETE FROM population WHERE id_number = ANY(%s)", ([resident_id(n) for n in range(10, 20)],))
    source.execute("DELETE FROM population WHERE id_number = %s", (resident_id(20),))
    world.converge(source.rows, consumer.front_end_db, "gaj_population", POPULATION_COLUMNS, timeout=60)
    source.insert([20])  # deleted, then inserted again
    source.execute("UPDATE population SET household_size = 9 WHERE id_number = %s", (resident_id(20),))
    source.insert(range(1000, 1050))
    world.converge(source.rows, consumer.front_end_db, "gaj_population", POPULATION_COLUMNS, timeout=60)

    # Rows no poll reads: a NULL change column (rows from before the column, say) and a value
    # below what was already read (a row restored from a backup). The keyed comparison finds them.
    source.execute(f"ALTER TABLE {source.table} DISABLE TRIGGER {source.table}_touch")
    source.execute(f"ALTER TABLE {source.table} ALTER updated_at SET DEFAULT '2020-01-01T00:00:00+08'")
    source.insert([2001])
    source.execute(f"ALTER TABLE {source.table} ALTER updated_at DROP NOT NULL, ALTER updated_at SET DEFAULT NULL")
    source.insert([2000])
    world.converge(source.rows, consumer.front_end_db, "gaj_population", POPULATION_COLUMNS, timeout=60)

    with psycopg.connect(consumer.front_end_db) as conn:
        name = conn.execute("SELECT name FROM gaj_population WHERE id_number = %s", (resident_id(7),)).fetchone()
    assert name == ("改名39",)
    with psycopg.connect(world.exchange.database_url) as conn:
        doubled = conn.execute(
            "SELECT c.key, c.source_version FROM change c JOIN resource r ON r.id = c.resource_id "
            "WHERE r.code = %s AND c.op <> 'h' GROUP BY 1, 2 HAVING count(*) > 1",
            (code,),
        ).fetchall()
        versions = conn.execute(
            "SELECT k.source_version FROM current_key k JOIN resource r ON r.id = k.resource_id "
            "WHERE r.code = %s AND k.key = %s",
            (code, resident_id(20)),
        ).fetchone()
    assert doubled == [], "a change reached the exchange's log twice"
    assert versions is not None
    assert versions[0] >= 3, "inserted, deleted, inserted again: the key's version kept growing"


@pytest.mark.slow  # waits out a lookback window in real time
def test_a_late_commit_within_the_lookback_arrives_and_an_idle_table_is_not_read_again(world: World) -> None:
    lookback_s = 4
    code, source, provider = world.population(lookback_s=lookback_s)
    consumer = world.subscriber(code)
    source.insert(range(50))
    provider.start()
    consumer.start()
    world.converge(source.rows, consumer.front_end_db, "gaj_population", POPULATION_COLUMNS, timeout=60)

    def mirrored_remark(n: int) -> str | None:
        with psycopg.connect(provider.front_end_db) as conn:
            row = conn.execute(
                "SELECT row->>'remark' FROM gdx.mirror WHERE resource = %s AND key = %s", (code, resident_id(n))
            ).fetchone()
        return row[0] if row else None

    # The first transaction stamps its row, a second stamps a later one and commits, the agent
    # moves its watermark past the first row's stamp, and only then does the first commit.
    with psycopg.connect(source.url) as late:
        late.execute("UPDATE population SET remark = 'late' WHERE id_number = %s", (resident_id(1),))
        time.sleep(0.2)
        source.execute("UPDATE population SET remark = 'early' WHERE id_number = %s", (resident_id(2),))
        wait_for(lambda: mirrored_remark(2) == "early", 4, "the later change extracted", on_timeout=world.logs)
    world.converge(source.rows, consumer.front_end_db, "gaj_population", POPULATION_COLUMNS, timeout=30)
    assert mirrored_remark(1) == "late"

    # Idle: a lookback (and a second) after the newest change, the window is closed.
    def rows_read() -> float:
        return provider.metric("gdx_node_source_rows_read_total", resource=code) or 0.0

    time.sleep(lookback_s + 1)
    before = rows_read()
    assert before >= 52, "the rows extracted were counted as read"
    provider.wait_cycles("extract", code, cycles=3)
    assert rows_read() == before, "an idle table with a change column is not read again"
    source.execute("UPDATE population SET remark = 'after' WHERE id_number = %s", (resident_id(3),))
    world.converge(source.rows, consumer.front_end_db, "gaj_population", POPULATION_COLUMNS, timeout=30)


@pytest.mark.slow  # shows that nothing moves for a while
def test_reading_and_deletions_wait_while_a_full_load_is_moving_and_flow_when_it_ends(world: World) -> None:
    code, source, provider = world.population(compare_interval_s=1)
    consumer = world.subscriber(code)
    source.insert(range(30))
    provider.start()
    consumer.start()
    world.converge(source.rows, consumer.front_end_db, "gaj_population", POPULATION_COLUMNS, timeout=60)

    def compared() -> float:
        return provider.metric("gdx_node_batches_total", hop="compare", resource=code) or 0.0

    def read() -> float:
        return provider.metric("gdx_node_source_rows_read_total", resource=code) or 0.0

    # A load that copied a page a moment ago (as `gdx node sync --full` records it): it copies
    # every row itself, so the agent reads neither new rows nor keys for deletions meanwhile.
    with psycopg.connect(provider.front_end_db) as conn:
        conn.execute("INSERT INTO gdx.full_sync (resource, rows_done, progressed_at) VALUES (%s, 10, now())", (code,))
    wait_for(
        lambda: "a full load is moving: reading waits" in provider.log_path.read_text(),
        15,
        "the extraction to see the load",
        on_timeout=world.logs,
    )
    read_before = read()
    source.execute("DELETE FROM population WHERE id_number = %s", (resident_id(3),))
    source.insert(range(30, 35))
    provider.wait_cycles("push", code, cycles=3)  # the agent goes round while nothing is read
    time.sleep(2)  # two comparison intervals, in which no comparison runs
    with psycopg.connect(consumer.front_end_db) as conn:
        held = conn.execute(
            "SELECT count(*) FILTER (WHERE id_number = %s), count(*) FROM gaj_population", (resident_id(3),)
        ).fetchone()
    assert held == (1, 30), "no reading and no comparison while the load moves"
    assert read() == read_before
    before = compared()
    with psycopg.connect(provider.front_end_db) as conn:
        conn.execute("UPDATE gdx.full_sync SET finished_at = now() WHERE resource = %s", (code,))
    world.converge(source.rows, consumer.front_end_db, "gaj_population", POPULATION_COLUMNS, timeout=30)
    assert compared() > before


@pytest.mark.slow  # two catalog versions and an agent restart
@pytest.mark.parametrize("capture", ["poll", "log"])
def test_the_publication_follows_new_schema_versions_and_quarantines_nothing(world: World, capture: str) -> None:
    """The provider publishes a version with a field more, then one with a field less, while
    the agents run: every row gets the new field, and rows made with the dropped one still go;
    alike whether changes are polled for or captured from the log."""
    code, source, provider = world.population(leave_out=("income",), catalog_check_interval_s=1, capture=capture)
    if capture == "log":
        source.execute(dba_checklist.postgres_publication(code, "population"))
    world.subscribe("zjg-wjw", code)
    subscription = {"resource": code, "purpose": PURPOSE, "table": "gaj_population", "grant_check_interval_s": 1}
    consumer = world.agent("zjg-wjw", subscribes=[subscription])
    source.insert(range(80))
    provider.start()
    consumer.start()
    first = [c for c in POPULATION_COLUMNS if c != "income"]
    world.converge(lambda: source.rows(first), consumer.front_end_db, "gaj_population", first, timeout=60)

    # A field more, found at the agent's next look at the catalog: every row gets it, not only
    # the rows that change from now on.
    world.update("zjg-gaj", population_entry(code))
    world.converge(source.rows, consumer.front_end_db, "gaj_population", POPULATION_COLUMNS, timeout=60)
    assert "the resource's fields changed" in provider.log_path.read_text()

    # A field less while the agent still makes rows with it (its next look at the catalog is
    # far off): the exchange refuses them, and the agent drops the field instead of
    # quarantining the rows.
    assert provider.stop() == 0
    config = yaml.safe_load(provider.config_path.read_text(encoding="utf-8"))
    config["publishes"][0]["catalog_check_interval_s"] = 3600
    provider.config_path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    provider.start().wait_ready()
    wait_for(
        lambda: provider.health()["loops"].get(f"extract/{code}", {}).get("state") == "ok",
        30,
        "the extraction to start",
        on_timeout=world.logs,
    )
    world.update("zjg-gaj", population_entry(code, leave_out=("address",)))
    source.execute(
        "UPDATE population SET name = name || '（改）' WHERE id_number = ANY(%s)", ([resident_id(n) for n in range(5)],)
    )
    source.insert(range(80, 90))
    last = [c for c in POPULATION_COLUMNS if c != "address"]
    world.converge(lambda: source.rows(last), consumer.front_end_db, "gaj_population", last, timeout=60)
    with psycopg.connect(provider.front_end_db) as conn:
        quarantined = conn.execute("SELECT count(*) FROM gdx.quarantine").fetchone()
    assert quarantined == (0,), "no row was quarantined for the catalog's change"
    assert '"dropped_from_waiting_rows": ["address"]' in provider.log_path.read_text()


@pytest.mark.slow  # waits for heartbeats at their interval
def test_heartbeats_cross_every_hop_and_keep_advancing_when_idle(world: World) -> None:
    code, source, provider = world.population()
    world.subscribe("zjg-wjw", code)
    consumer = world.agent("zjg-wjw", subscribes=[{"resource": code, "purpose": PURPOSE}])
    provider.start().wait_ready()
    consumer.start().wait_ready()

    def seq(agent: object, hop: str) -> float:
        value = agent.metric("gdx_node_heartbeat_seq", hop=hop, resource=code)  # type: ignore[attr-defined]
        return value or 0.0

    wait_for(lambda: seq(consumer, "pull") >= 2, 30, "a heartbeat at the subscriber", on_timeout=world.logs)
    first = {hop: seq(provider, hop) for hop in ("extract", "push")} | {"pull": seq(consumer, "pull")}
    wait_for(lambda: seq(consumer, "pull") >= first["pull"] + 2, 30, "the heartbeat to advance", on_timeout=world.logs)
    assert seq(provider, "extract") > first["extract"]
    assert seq(provider, "push") > first["push"]
    with psycopg.connect(source.url) as conn:
        written = conn.execute("SELECT seq FROM gdx_heartbeat WHERE resource = %s", (code,)).fetchone()
    assert written is not None
    assert written[0] >= seq(consumer, "pull"), "the heartbeat row in the business DB is where they start"

    health = consumer.health()
    assert health["status"] == "ok", health
    assert health["loops"][f"pull/{code}"]["state"] == "ok"
    timestamp = consumer.metric("gdx_node_heartbeat_timestamp_seconds", hop="pull", resource=code)
    assert timestamp is not None
    assert provider.metric("gdx_node_certificate_expiry_timestamp_seconds") is not None
    assert provider.metric("gdx_node_front_end_db_up") == 1.0
    assert provider.stop() == 0, "SIGTERM ends the agent cleanly"
    assert '"stopped"' in provider.log_path.read_text()


@pytest.mark.slow  # waits for the source clock to pass the stamp (about 25 s)
def test_a_row_stamped_ahead_of_the_source_clock_holds_back_no_other_change(world: World) -> None:
    """A writer whose clock is ahead stamps a row in the future: that row waits for the
    business database's clock, and every change made meanwhile flows (none is skipped)."""
    code, source, provider = world.population()
    consumer = world.subscriber(code)
    source.insert(range(60))
    provider.start()
    consumer.start()
    world.converge(source.rows, consumer.front_end_db, "gaj_population", POPULATION_COLUMNS, timeout=60)

    ahead_s = 20
    source.execute(f"ALTER TABLE {source.table} DISABLE TRIGGER {source.table}_touch")
    source.execute(
        f"UPDATE {source.table} SET remark = 'from the future', "
        f"updated_at = clock_timestamp() + interval '{ahead_s} seconds' WHERE id_number = %s",
        (resident_id(1),),
    )
    source.execute(f"ALTER TABLE {source.table} ENABLE TRIGGER {source.table}_touch")
    # Long enough for the agent to take the stamp for the clock's, were it to trust it.
    time.sleep(3)
    for n in range(10, 40):  # the changes of the next seconds, each stamped by the source's clock
        source.execute(f"UPDATE {source.table} SET remark = 'now' WHERE id_number = %s", (resident_id(n),))

    def remarks() -> dict[str, str | None]:
        return dict(pg_rows(consumer.front_end_db, "gaj_population", ["id_number", "remark"]))

    wait_for(
        lambda: all(remarks().get(resident_id(n)) == "now" for n in range(10, 40)),
        ahead_s - 5,
        "the changes made after the row stamped ahead",
        on_timeout=world.logs,
    )
    assert remarks()[resident_id(1)] != "from the future", "the row ahead waits for the source's clock"
    wait_for(
        lambda: provider.metric("gdx_node_source_rows_ahead", resource=code) == 1,
        15,
        "the row ahead of the clock counted",
        on_timeout=world.logs,
    )
    # Once the source's clock passes it, the row itself arrives.
    world.converge(source.rows, consumer.front_end_db, "gaj_population", POPULATION_COLUMNS, timeout=ahead_s + 30)


def test_keys_are_sent_in_their_canonical_form_and_the_rest_quarantined(world: World) -> None:
    code, source, provider = world.population(compare_interval_s=1)
    consumer = world.subscriber(code)
    with_x = next(resident_id(n) for n in range(100, 400) if resident_id(n).endswith("X"))
    variants = {
        f" {resident_id(1)}",
        with_x.lower(),
        resident_id(2).translate(str.maketrans("0123456789", "０１２３４５６７８９")),
    }
    unfixable = f"{resident_id(3)[:6]} {resident_id(3)[6:]}"
    source.insert([50])
    for key in [*variants, unfixable]:
        source.execute(f"INSERT INTO {source.table} (id_number, name) VALUES (%s, '居民')", (key,))
    provider.start()
    consumer.start()
    canonical = {resident_id(50), resident_id(1), with_x, resident_id(2)}

    def consumer_keys() -> set[str]:
        if not pg_table_exists(consumer.front_end_db, "gaj_population"):
            return set()
        return {row[0] for row in pg_rows(consumer.front_end_db, "gaj_population", ["id_number"])}

    wait_for(lambda: consumer_keys() == canonical, 60, "the canonical keys at the subscriber", on_timeout=world.logs)
    assert provider.metric("gdx_node_keys_tidied_total", resource=code) == 3
    wait_for(lambda: provider.health()["quarantined"] == {code: 1}, 15, "the unfixable key quarantined")
    provider.wait_cycles("compare", code, cycles=2)  # a key held in another form is no deletion
    with psycopg.connect(world.exchange.database_url) as conn:
        changes = conn.execute(
            "SELECT count(*) FROM change c JOIN resource r ON r.id = c.resource_id WHERE r.code = %s AND c.op <> 'h'",
            (code,),
        ).fetchone()
    assert changes == (4,), "each key sent once, never deleted and sent again"

    # The DBA corrects the key at the source: the row flows, and its quarantine entry goes.
    source.execute(f"UPDATE {source.table} SET id_number = %s WHERE id_number = %s", (resident_id(3), unfixable))
    wait_for(lambda: consumer_keys() == {*canonical, resident_id(3)}, 30, "the corrected key", on_timeout=world.logs)
    wait_for(lambda: provider.health()["quarantined"] == {}, 15, "the quarantine cleared", on_timeout=world.logs)
