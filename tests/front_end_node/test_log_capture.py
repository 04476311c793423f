"""Log capture (`capture: log`): a PostgreSQL table's changes read from its write-ahead log by a
replication slot, carried to the subscriber; the DBA's preconditions checked with what to run."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import psycopg
import pytest

from front_end_node import dba_checklist
from front_end_node.dba_checklist import slot_name
from front_end_node.mariadb_binlog import MariaDbBinlog
from front_end_node.postgres_log import PostgresLog
from front_end_node.sources import MariaDbSource, PostgresSource, SourceError
from gdx.sharing import BusinessDb, Publication
from tests.front_end_node.test_mariadb_source import PURPOSE, entity, grant, mariadb_rows, mariadb_source
from tests.front_end_node.test_resilience import doubled_changes
from tests.support.mariadb import MariaDbServer
from tests.support.nodes import POPULATION_COLUMNS, Agent, pg_rows, wait_for
from tests.support.postgres import PostgresServer
from tests.support.samples import credit_code, legal_entity_entry, population_entry, resident_id
from tests.support.world import PopulationSource, World


def publish_for_capture(source: PopulationSource, code: str) -> None:
    """What the DBA runs (docs/front-end-node.md, the DBA's checklist)."""
    source.execute(f"CREATE PUBLICATION {slot_name(code)} FOR TABLE population")


def exchange_keys(world: World, code: str, keys: list[str]) -> list[str]:
    with psycopg.connect(world.exchange.database_url) as conn:
        return [k for (k,) in conn.execute(
            "SELECT DISTINCT c.key FROM change c JOIN resource r ON r.id = c.resource_id "
            "WHERE r.code = %s AND c.key = ANY(%s)",
            (code, keys),
        )]  # fmt: skip


@pytest.mark.slow  # two agents through a dozen kinds of change
def test_log_capture_carries_every_change_in_commit_order(world: World) -> None:
    # No change column: the log needs none, and NULLs in updated_at do not matter.
    code, source, provider = world.population(capture="log", change_column=None)
    publish_for_capture(source, code)
    source.insert(range(300))
    consumer = world.subscriber(code, table="population")
    provider.start()
    consumer.start()
    world.converge(source.rows, consumer.front_end_db, "population", POPULATION_COLUMNS, timeout=60)
    assert provider.health()["capture"][code]["wal_status"] in ("reserved", "extended")

    # A deletion arrives within seconds (polling waited for the next keyed comparison).
    source.execute("DELETE FROM population WHERE id_number = %s", (resident_id(7),))
    deleted_at = time.monotonic()
    wait_for(
        lambda: len(pg_rows(consumer.front_end_db, "population", ["id_number"])) == 299,
        30, "the deletion to reach the subscriber", on_timeout=world.logs,
    )  # fmt: skip
    assert time.monotonic() - deleted_at < 10

    # Many rows in one transaction (some with a NULL change time), a key changed, a transaction rolled back.
    source.execute("DROP TRIGGER population_touch ON population; ALTER TABLE population ALTER updated_at DROP NOT NULL")
    with psycopg.connect(source.url) as conn:
        conn.execute("UPDATE population SET name = '批量改名', updated_at = CASE WHEN household_size > 2 THEN NULL "
                     "ELSE now() END WHERE id_number <> %s", (resident_id(1),))  # fmt: skip
        conn.execute("UPDATE population SET id_number = %s WHERE id_number = %s", (resident_id(5000), resident_id(3)))
    source.insert(range(300, 2300))
    with psycopg.connect(source.url) as conn:
        conn.execute("UPDATE population SET name = '回滚' WHERE id_number = %s", (resident_id(8),))
        conn.execute("DELETE FROM population WHERE id_number = %s", (resident_id(9),))
        conn.rollback()
    world.converge(source.rows, consumer.front_end_db, "population", POPULATION_COLUMNS, timeout=60)
    assert len(pg_rows(consumer.front_end_db, "population", ["id_number"])) == 2299
    assert exchange_keys(world, code, [resident_id(3)]) == [resident_id(3)]  # deleted by the key's change
    assert doubled_changes(world, code) == []
    # The rolled-back deletion never left the node: key 9 was loaded once and never changed.
    with psycopg.connect(world.exchange.database_url) as conn:
        versions = conn.execute(
            "SELECT c.op, c.source_version FROM change c JOIN resource r ON r.id = c.resource_id "
            "WHERE r.code = %s AND c.key = %s ORDER BY c.seq",
            (code, resident_id(9)),
        ).fetchall()
    assert [op for op, _ in versions] == ["u", "u"]  # loaded, then renamed; never deleted

    # Decommissioning (or a disk about to fill): the slot dropped; an agent that runs again loads anew.
    gdx = [sys.executable, "-m", "gdx.cli", "node", "slot"]
    wide = {**os.environ, "COLUMNS": "200"}
    listed = subprocess.run([*gdx, "list", "-c", str(provider.config_path)], capture_output=True, text=True, env=wide)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert slot_name(code) in listed.stderr
    provider.stop()
    kept = subprocess.run([*gdx, "drop", code, "-c", str(provider.config_path)], input="n\n", capture_output=True,
                          text=True)  # fmt: skip
    assert kept.returncode == 1
    dropped = subprocess.run([*gdx, "drop", "--yes", "-c", str(provider.config_path)], capture_output=True, text=True)
    assert dropped.returncode == 0, dropped.stdout + dropped.stderr
    assert f"{code}: slot {slot_name(code)} dropped" in dropped.stderr
    source.execute("DELETE FROM population WHERE id_number = %s", (resident_id(11),))
    provider.start()
    world.converge(source.rows, consumer.front_end_db, "population", POPULATION_COLUMNS, timeout=60)
    assert "loading the table at a new position" in provider.log(tail=200)
    assert doubled_changes(world, code) == []


def test_log_capture_refuses_a_database_not_set_up_for_it(world: World) -> None:
    code, source, _ = world.population(capture="log", change_column=None)
    db = BusinessDb(kind="postgresql", host="127.0.0.1", port=world.pg.port, name=source.url.rsplit("/", 1)[1],
                    user="postgres", password="")  # fmt: skip
    pub = Publication(resource=code, table="population", capture="log")
    capture = PostgresLog(PostgresSource(db, ""), pub, "id_number")

    with pytest.raises(SourceError, match=f"CREATE PUBLICATION {slot_name(code)} FOR TABLE population;"):
        capture.check()
    source.execute(f"CREATE PUBLICATION {slot_name(code)} WITH (publish = 'insert, update')")
    with pytest.raises(SourceError, match=f"ALTER PUBLICATION {slot_name(code)} ADD TABLE population;"):
        capture.check()
    source.execute(f"ALTER PUBLICATION {slot_name(code)} ADD TABLE population")
    with pytest.raises(SourceError, match="SET \\(publish = 'insert, update, delete, truncate'\\)"):
        capture.check()
    source.execute(f"ALTER PUBLICATION {slot_name(code)} SET (publish = 'insert, update, delete, truncate')")
    source.execute("ALTER TABLE population REPLICA IDENTITY NOTHING")
    with pytest.raises(SourceError, match="ALTER TABLE population REPLICA IDENTITY FULL;"):
        capture.check()
    source.execute("ALTER TABLE population REPLICA IDENTITY DEFAULT")
    capture.check()  # the primary key is the resource's key

    reader = f"reader_{world.suffix}"
    source.execute(f"CREATE ROLE {reader} LOGIN")
    source.execute(f"GRANT SELECT ON population TO {reader}")
    as_reader = PostgresLog(PostgresSource(db.model_copy(update={"user": reader}), ""), pub, "id_number")
    with pytest.raises(SourceError, match=f'ALTER ROLE "{reader}" REPLICATION;'):
        as_reader.check()


@pytest.mark.slow  # a PostgreSQL server of its own
def test_log_capture_needs_wal_level_logical(tmp_path: object) -> None:
    server = PostgresServer().start()  # wal_level replica, PostgreSQL's default
    try:
        db = BusinessDb(kind="postgresql", host="127.0.0.1", port=server.port, name="postgres", user="postgres",
                        password="")  # fmt: skip
        pub = Publication(resource="zjg-gaj.population", table="population", capture="log")
        with pytest.raises(SourceError, match="ALTER SYSTEM SET wal_level = logical; and restarts PostgreSQL"):
            PostgresLog(PostgresSource(db, ""), pub, "id_number").check()
    finally:
        server.stop()


def kill_twenty_times_during(provider: Agent, stream: Callable[[], None], rng: random.Random) -> None:
    """SIGKILL the provider's agent 20 times while ``stream`` writes (and start it again each time)."""
    writer = threading.Thread(target=stream)
    writer.start()
    kills_in_stream = 0
    try:
        for _ in range(20):
            time.sleep(rng.uniform(0.2, 0.8))
            provider.kill()
            kills_in_stream += writer.is_alive()
            provider.start()
    finally:
        writer.join()
    assert kills_in_stream >= 15, f"only {kills_in_stream} of the 20 kills came during the stream"


@pytest.mark.slow  # a 100,000-row change stream, the provider's agent killed 20 times in it
def test_sigkill_twenty_times_during_a_100k_row_change_stream(world: World) -> None:
    code, source, provider = world.population(capture="log", change_column=None)
    publish_for_capture(source, code)
    source.insert(range(20_000))
    consumer = world.subscriber(code, table="population")
    provider.start()
    consumer.start()
    rng = random.Random(20261208)
    streamed = {"rows": 0}

    def stream() -> None:
        """Transactions of 1,000 rows: updates of a key range, new rows, deletions."""
        with psycopg.connect(source.url, autocommit=True) as conn:
            step = 0
            while streamed["rows"] < 100_000:
                low = rng.randrange(0, 19_000)
                with conn.transaction():
                    conn.execute(
                        "UPDATE population SET household_size = household_size + 1, remark = %s "
                        "WHERE id_number IN (SELECT id_number FROM population ORDER BY id_number OFFSET %s LIMIT 800)",
                        (f"s{step}", low),
                    )
                    conn.execute(
                        "DELETE FROM population WHERE id_number IN "
                        "(SELECT id_number FROM population ORDER BY id_number OFFSET %s LIMIT 100)",
                        (rng.randrange(0, 19_000),),
                    )
                streamed["rows"] += 900
                source.insert(range(20_000 + step * 100, 20_000 + step * 100 + 100))
                streamed["rows"] += 100
                step += 1
                time.sleep(0.15)  # about 5,000 changed rows a second, across the 20 kills

    kill_twenty_times_during(provider, stream, rng)
    world.converge(source.rows, consumer.front_end_db, "population", POPULATION_COLUMNS, timeout=300)
    assert doubled_changes(world, code) == []


GRANTED = ["credit_code", "name", "status", "established"]


def legal_entities_captured(
    world: World, mariadb: MariaDbServer, business: dict[str, Any], rows: int
) -> tuple[str, Agent, Agent]:
    """zjg-scjgj's legal-entity register (``business``, made by mariadb_source) given ``rows`` rows and
    the DBA's grant, published with capture: log; zjg-wjw granted some fields and subscribed. Returns
    the code and the two agents, started."""
    code = world.code("zjg-scjgj", "legal-entity")
    world.register("zjg-scjgj", legal_entity_entry(code))
    with mariadb.admin(business["name"]) as conn, conn.cursor() as cur:
        cur.execute(dba_checklist.mariadb_grant(business["user"], "%"))
        cur.executemany(
            "INSERT INTO legal_entity VALUES (%s, %s, %s, %s, %s, %s, %s)", [entity(n) for n in range(rows)]
        )
    grant(world, code, asked=GRANTED[1:], approved=GRANTED[1:])
    provider = world.agent("zjg-scjgj", business_db=business,
                           publishes=[{"resource": code, "table": "legal_entity", "capture": "log"}])  # fmt: skip
    consumer = world.agent("zjg-wjw", subscribes=[{"resource": code, "purpose": PURPOSE, "table": "legal_entity"}])
    provider.start()
    consumer.start()
    return code, provider, consumer


@pytest.mark.slow  # two agents, and a binlog purged under one
def test_log_capture_from_a_mariadb_binlog(world: World, mariadb: MariaDbServer) -> None:
    business = mariadb_source(world, mariadb)
    db = BusinessDb.model_validate(business)
    publication = Publication(resource=world.code("zjg-scjgj", "checked"), table="legal_entity", capture="log")
    binlog = MariaDbBinlog(MariaDbSource(db, db.secret()), publication, "credit_code", "zjg-scjgj")
    with pytest.raises(SourceError, match="GRANT REPLICATION SLAVE, BINLOG MONITOR ON"):
        binlog.check()
    with mariadb.admin(business["name"]) as conn, conn.cursor() as cur:
        cur.execute(dba_checklist.mariadb_grant(business["user"], "%"))
    binlog.check()

    code, provider, consumer = legal_entities_captured(world, mariadb, business, 100)
    database, granted = business["name"], GRANTED
    rows = lambda: mariadb_rows(mariadb, database, granted)  # noqa: E731
    world.converge(rows, consumer.front_end_db, "legal_entity", granted, 60)

    with mariadb.admin(database) as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM legal_entity WHERE credit_code = %s", (credit_code(5),))
        deleted_at = time.monotonic()
    wait_for(lambda: len(pg_rows(consumer.front_end_db, "legal_entity", ["credit_code"])) == 99, 30,
             "the deletion to reach the subscriber", on_timeout=world.logs)  # fmt: skip
    assert time.monotonic() - deleted_at < 10

    with mariadb.admin(database) as conn, conn.cursor() as cur:
        cur.execute("START TRANSACTION")
        cur.execute("UPDATE legal_entity SET status = '注销'")  # every row, one transaction
        cur.executemany("INSERT INTO legal_entity VALUES (%s, %s, %s, %s, %s, %s, %s)",
                        [entity(n) for n in range(100, 400)])  # fmt: skip
        cur.execute(
            "UPDATE legal_entity SET credit_code = %s WHERE credit_code = %s", (credit_code(900), credit_code(7))
        )
        cur.execute("COMMIT")
        cur.execute("START TRANSACTION")
        cur.execute("DELETE FROM legal_entity WHERE credit_code = %s", (credit_code(8),))
        cur.execute("ROLLBACK")
        cur.execute("CREATE TABLE other (id int PRIMARY KEY)")  # a table the catalog does not cover
        cur.execute("INSERT INTO other VALUES (1)")
    world.converge(rows, consumer.front_end_db, "legal_entity", granted, 60)
    assert len(rows()) == 399
    assert doubled_changes(world, code) == []
    assert provider.health()["capture"][code]["wal_status"] == "reserved"

    # The binlog the node stands in purged (expire_logs_days, PURGE BINARY LOGS): reported, with the way back.
    provider.stop()
    with mariadb.admin(database) as conn, conn.cursor() as cur:
        cur.execute("FLUSH BINARY LOGS")
        cur.execute("UPDATE legal_entity SET status = '吊销' WHERE credit_code = %s", (credit_code(1),))
        cur.execute("FLUSH BINARY LOGS")
        cur.execute("SHOW BINARY LOGS")
        newest = cur.fetchall()[-1][0]

        def purged() -> bool:
            # MariaDB keeps a binlog until InnoDB's log has caught up with it (about a second here).
            cur.execute(f"PURGE BINARY LOGS TO '{newest}'")
            cur.execute("SHOW BINARY LOGS")
            return len(cur.fetchall()) == 1

        wait_for(purged, 20, "MariaDB to purge the binlogs")
    provider.start()

    def reported() -> bool:
        try:
            return "gdx node sync --full --restart" in provider.health()["loops"][f"extract/{code}"]["message"]
        except (httpx.HTTPError, KeyError):
            return False  # starting

    wait_for(reported, 30, "the lost position to be reported", on_timeout=world.logs)
    loaded = subprocess.run([sys.executable, "-m", "gdx.cli", "node", "sync", "--full", "--restart", code, "--no-wait",
                             "-c", str(provider.config_path)], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    world.converge(rows, consumer.front_end_db, "legal_entity", granted, 60)
    assert ("吊销",) in pg_rows(consumer.front_end_db, "legal_entity", ["status"])


@pytest.mark.slow  # a business database restarted under the capture
def test_a_business_database_restart_during_capture_loses_and_doubles_nothing(world: World) -> None:
    business = PostgresServer(settings={"wal_level": "logical"}).start()
    try:
        code = world.code("zjg-gaj", "population")
        world.register("zjg-gaj", population_entry(code))
        source = PopulationSource(world.database("gaj_business", business)).create()
        publish_for_capture(source, code)
        source.insert(range(5_000))
        provider = world.agent(
            "zjg-gaj",
            business_db={"kind": "postgresql", "host": "127.0.0.1", "port": business.port,
                         "name": source.url.rsplit("/", 1)[1], "user": "postgres", "password": ""},
            publishes=[{"resource": code, "table": "population", "capture": "log"}],
        )  # fmt: skip
        consumer = world.subscriber(code, table="population")
        provider.start()
        consumer.start()
        world.converge(source.rows, consumer.front_end_db, "population", POPULATION_COLUMNS, timeout=60)
        source.execute("UPDATE population SET remark = 'before the restart' WHERE household_size = 2")
        business.restart()  # fast: sessions cut off, the slot kept
        source.execute("DELETE FROM population WHERE household_size = 3")
        source.insert(range(5_000, 6_000))
        world.converge(source.rows, consumer.front_end_db, "population", POPULATION_COLUMNS, timeout=60)
        assert provider.running()
        assert doubled_changes(world, code) == []
    finally:
        world.stop()
        business.stop()


@pytest.mark.slow  # a 100,000-row change stream on MariaDB, the provider's agent killed 20 times in it
def test_sigkill_twenty_times_during_a_mariadb_change_stream(world: World, mariadb: MariaDbServer) -> None:
    business = mariadb_source(world, mariadb)
    code, provider, consumer = legal_entities_captured(world, mariadb, business, 20_000)
    database = business["name"]
    rng = random.Random(20261208)
    streamed = {"rows": 0}

    def stream() -> None:
        with mariadb.admin(database) as conn, conn.cursor() as cur:
            step = 0
            while streamed["rows"] < 100_000:
                low = rng.randrange(0, 19_000)
                cur.execute("START TRANSACTION")
                cur.execute("UPDATE legal_entity SET status = %s WHERE credit_code >= %s "
                            "ORDER BY credit_code LIMIT 800",
                            (f"s{step % 7}", credit_code(low)))  # fmt: skip
                cur.execute("DELETE FROM legal_entity WHERE credit_code >= %s ORDER BY credit_code LIMIT 100",
                            (credit_code(rng.randrange(0, 19_000)),))  # fmt: skip
                cur.executemany("INSERT INTO legal_entity VALUES (%s, %s, %s, %s, %s, %s, %s)",
                                [entity(n) for n in range(20_000 + step * 100, 20_100 + step * 100)])  # fmt: skip
                cur.execute("COMMIT")
                streamed["rows"] += 1000
                step += 1
                time.sleep(0.15)

    kill_twenty_times_during(provider, stream, rng)
    world.converge(lambda: mariadb_rows(mariadb, database, GRANTED), consumer.front_end_db, "legal_entity", GRANTED,
                   timeout=300)  # fmt: skip
    assert doubled_changes(world, code) == []
