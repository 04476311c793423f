"""A market regulation bureau on MariaDB: keyed comparison, a field-limited grant, bad rows."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests.support.mariadb import MariaDbServer
from tests.support.nodes import Agent, exchange_client, wait_for
from tests.support.samples import credit_code, legal_entity_entry
from tests.support.world import World

PURPOSE = "企业登记信息核验（联合执法）"
TABLE = """
CREATE TABLE legal_entity (
    credit_code varchar(18) PRIMARY KEY, name varchar(200) NOT NULL, legal_representative varchar(50),
    registered_capital bigint, established date, status varchar(20), updated_at datetime(6)
) DEFAULT CHARSET = utf8mb4
"""


def entity(n: int) -> tuple[Any, ...]:
    return (
        credit_code(n),
        f"张家港市第{n}机械有限公司",
        f"法人{n}",
        100000 + n,
        "2015-03-0" + str(n % 9 + 1),
        "存续",
        None,
    )


def mariadb_source(world: World, mariadb: MariaDbServer, password: str = "读者-s3cret") -> dict[str, Any]:
    name = f"scjgj_{world.suffix}"
    mariadb.create_database(name, f"reader_{world.suffix}", "读者-s3cret")
    with mariadb.admin(name) as conn, conn.cursor() as cur:
        cur.execute(TABLE)
    secret = world.workdir / "business-db.password"
    secret.write_text(password + "\n", encoding="utf-8")
    secret.chmod(0o600)
    return {
        "kind": "mariadb",
        "host": "127.0.0.1",
        "port": mariadb.port,
        "name": name,
        "user": f"reader_{world.suffix}",
        "password_file": str(secret),
    }


def mariadb_rows(mariadb: MariaDbServer, db: str, columns: list[str]) -> list[tuple[Any, ...]]:
    with mariadb.admin(db) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT {', '.join(columns)} FROM legal_entity WHERE credit_code <> %s", (BAD,))
        return list(cur.fetchall())


def grant(world: World, code: str, asked: list[str], approved: list[str]) -> None:
    """zjg-wjw asks for some fields of the conditional resource; zjg-scjgj approves some."""
    with exchange_client(world.exchange, "zjg-wjw") as wjw, exchange_client(world.exchange, "zjg-scjgj") as scj:
        request = wjw.post("/v1/requests", json={"resource": code, "purpose": PURPOSE, "fields": asked})
        assert request.status_code == 201, request.text
        decision = scj.post(f"/v1/requests/{request.json()['id']}/approve", json={"fields": approved})
        assert decision.status_code == 200, decision.text


def amend(world: World, code: str, more: list[str], approved: list[str]) -> None:
    """zjg-wjw asks for more fields on its grant (an amendment); zjg-scjgj approves these."""
    with exchange_client(world.exchange, "zjg-wjw") as wjw, exchange_client(world.exchange, "zjg-scjgj") as scj:
        held = next(g for g in wjw.get("/v1/grants").json() if g["resource"] == code)
        request = wjw.post(f"/v1/grants/{held['id']}/amend", json={"fields": more, "reason": "业务需要"})
        assert request.status_code == 201, request.text
        decision = scj.post(f"/v1/requests/{request.json()['id']}/approve", json={"fields": approved})
        assert decision.status_code == 200, decision.text


def grant_again(world: World, code: str, asked: list[str], approved: list[str]) -> None:
    """zjg-scjgj revokes zjg-wjw's grant, which asks again for fewer fields and gets some."""
    with exchange_client(world.exchange, "zjg-wjw") as wjw, exchange_client(world.exchange, "zjg-scjgj") as scj:
        held = next(g for g in wjw.get("/v1/grants").json() if g["resource"] == code)
        revoked = scj.post(f"/v1/grants/{held['id']}/revoke", json={"reason": "共享条件调整"})
        assert revoked.status_code == 200, revoked.text
    grant(world, code, asked, approved)


BAD = credit_code(999)[:-1] + ("0" if credit_code(999)[-1] != "0" else "1")  # a wrong check digit


def test_a_table_without_change_column_arrives_with_only_the_granted_fields(
    world: World, mariadb: MariaDbServer
) -> None:
    code = world.code("zjg-scjgj", "legal-entity")
    world.register("zjg-scjgj", legal_entity_entry(code))
    business = mariadb_source(world, mariadb)
    with mariadb.admin(business["name"]) as conn, conn.cursor() as cur:
        cur.executemany("INSERT INTO legal_entity VALUES (%s, %s, %s, %s, %s, %s, %s)", [entity(n) for n in range(200)])
        cur.execute("INSERT INTO legal_entity VALUES (%s, '坏数据公司', NULL, 1, NULL, '存续', NULL)", (BAD,))

    grant(world, code, asked=["name", "status", "established"], approved=["name", "status"])

    provider = world.agent(
        "zjg-scjgj",
        business_db=business,
        publishes=[{"resource": code, "table": "legal_entity", "compare_interval_s": 1}],
    )
    consumer = world.agent(
        "zjg-wjw", subscribes=[{"resource": code, "purpose": PURPOSE, "table": "market.legal_entity"}]
    )
    provider.start()
    consumer.start()
    granted = ["credit_code", "name", "status"]
    world.converge(
        lambda: mariadb_rows(mariadb, business["name"], granted),
        consumer.front_end_db,
        "market.legal_entity",
        granted,
        60,
    )

    with mariadb.admin(business["name"]) as conn, conn.cursor() as cur:
        cur.execute(
            "UPDATE legal_entity SET status = '注销' WHERE credit_code IN (%s, %s)", (credit_code(3), credit_code(4))
        )
        cur.execute("DELETE FROM legal_entity WHERE credit_code = %s", (credit_code(5),))
        cur.execute(
            "UPDATE legal_entity SET legal_representative = '新法人' WHERE credit_code = %s", (credit_code(6),)
        )  # not granted
    world.converge(
        lambda: mariadb_rows(mariadb, business["name"], granted),
        consumer.front_end_db,
        "market.legal_entity",
        granted,
        60,
    )

    with psycopg.connect(consumer.front_end_db) as conn:
        columns = conn.execute(
            "SELECT array_agg(column_name::text ORDER BY ordinal_position) FROM information_schema.columns "
            "WHERE table_schema = 'market' AND table_name = 'legal_entity'"
        ).fetchone()
    assert columns == (granted,), "the subscriber's table holds the granted fields only"
    with psycopg.connect(provider.front_end_db) as conn:
        held = conn.execute("SELECT key, reason FROM gdx.quarantine WHERE resource = %s", (code,)).fetchall()
    assert held == [(BAD, held[0][1])]
    assert "check digit" in held[0][1] or "uscc" in held[0][1], held
    wait_for(lambda: provider.metric("gdx_node_quarantined_rows", resource=code) == 1.0, 10, "the quarantine metric")


def test_a_wrong_password_is_a_clear_health_state_not_a_crash(world: World, mariadb: MariaDbServer) -> None:
    code = world.code("zjg-scjgj", "legal-entity")
    world.register("zjg-scjgj", legal_entity_entry(code))
    business = mariadb_source(world, mariadb, password="wrong")
    provider: Agent = world.agent(
        "zjg-scjgj", business_db=business, publishes=[{"resource": code, "table": "legal_entity"}]
    )
    provider.start().wait_ready()

    def failing() -> bool:
        loop = provider.health()["loops"].get(f"extract/{code}", {})
        return loop.get("state") == "error"

    wait_for(failing, 20, "the extract hop to report its failure", on_timeout=provider.log)
    message = provider.health()["loops"][f"extract/{code}"]["message"]
    assert "Access denied" in message
    assert f"mariadb://reader_{world.suffix}@127.0.0.1:{mariadb.port}" in message
    assert provider.health()["status"] == "degraded"
    assert provider.running(), "the agent keeps running and retrying"
    log = provider.log_path.read_text()
    assert log.count("Access denied") == 1, "the same failure is logged once, not at every retry"


@pytest.mark.slow  # waits out a lookback window in real time
def test_a_change_column_on_mariadb_finds_new_rows_and_a_late_commit(world: World, mariadb: MariaDbServer) -> None:
    code = world.code("zjg-scjgj", "legal-entity")
    world.register("zjg-scjgj", legal_entity_entry(code))
    grant(world, code, asked=["name", "status"], approved=["name", "status"])
    business = mariadb_source(world, mariadb)
    with mariadb.admin(business["name"]) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO legal_entity VALUES (%s, %s, %s, %s, %s, %s, NOW(6))", [entity(n)[:-1] for n in range(40)]
        )
    provider = world.agent(
        "zjg-scjgj",
        business_db=business,
        publishes=[{"resource": code, "table": "legal_entity", "change_column": "updated_at", "lookback_s": 3}],
    )
    consumer = world.agent("zjg-wjw", subscribes=[{"resource": code, "purpose": PURPOSE, "table": "legal_entity"}])
    provider.start()
    consumer.start()
    columns = ["credit_code", "name", "status"]

    def converge() -> None:
        rows = lambda: mariadb_rows(mariadb, business["name"], columns)  # noqa: E731
        world.converge(rows, consumer.front_end_db, "legal_entity", columns, 60)

    converge()

    def mirrored_status(n: int) -> str | None:
        with psycopg.connect(provider.front_end_db) as conn:
            row = conn.execute(
                "SELECT row->>'status' FROM gdx.mirror WHERE resource = %s AND key = %s", (code, credit_code(n))
            ).fetchone()
        return row[0] if row else None

    # Stamped first, committed after a later change was extracted: found by the settled-range check.
    late = mariadb.admin(business["name"])
    try:
        with late.cursor() as cur:
            cur.execute("BEGIN")
            cur.execute(
                "UPDATE legal_entity SET status = '迟到', updated_at = NOW(6) WHERE credit_code = %s", (credit_code(1),)
            )
        with mariadb.admin(business["name"]) as conn, conn.cursor() as cur:
            cur.execute(
                "UPDATE legal_entity SET status = '吊销', updated_at = NOW(6) WHERE credit_code = %s", (credit_code(2),)
            )
            cur.execute(
                "INSERT INTO legal_entity VALUES (%s, '新设公司', NULL, 1, NULL, '存续', NOW(6))", (credit_code(100),)
            )
        wait_for(lambda: mirrored_status(2) == "吊销", 10, "the later change extracted", on_timeout=world.logs)
        with late.cursor() as cur:
            cur.execute("COMMIT")
    finally:
        late.close()
    converge()
    assert mirrored_status(1) == "迟到"


@pytest.mark.slow  # two grant changes followed by a running agent
def test_a_wider_grant_fills_its_fields_in_every_row_and_a_narrower_one_clears_them(
    world: World, mariadb: MariaDbServer
) -> None:
    code = world.code("zjg-scjgj", "legal-entity")
    world.register("zjg-scjgj", legal_entity_entry(code))
    grant(world, code, asked=["name", "status"], approved=["name"])
    business = mariadb_source(world, mariadb)
    with mariadb.admin(business["name"]) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO legal_entity VALUES (%s, %s, %s, %s, %s, %s, NOW(6))", [entity(n)[:-1] for n in range(60)]
        )
        for n in range(3):  # changes the consumer reads at first without these fields
            cur.execute(
                "UPDATE legal_entity SET status = %s, updated_at = NOW(6) WHERE credit_code = %s",
                (f"变更{n}", credit_code(1)),
            )
    provider = world.agent(
        "zjg-scjgj",
        business_db=business,
        publishes=[{"resource": code, "table": "legal_entity", "change_column": "updated_at"}],
    )
    subscription = {"resource": code, "purpose": PURPOSE, "table": "legal_entity", "grant_check_interval_s": 2}
    consumer = world.agent("zjg-wjw", subscribes=[subscription])
    provider.start()
    consumer.start()

    def converge(columns: list[str]) -> None:
        rows = lambda: mariadb_rows(mariadb, business["name"], columns)  # noqa: E731
        world.converge(rows, consumer.front_end_db, "legal_entity", columns, 60)

    def held(column: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(consumer.front_end_db) as conn:
            return conn.execute(f"SELECT count({column}) FROM legal_entity").fetchall()

    def columns_held() -> list[str]:
        with psycopg.connect(consumer.front_end_db) as conn:
            found = conn.execute(
                "SELECT column_name::text FROM information_schema.columns WHERE table_name = 'legal_entity' "
                "ORDER BY ordinal_position"
            )
            return [name for (name,) in found]

    converge(["credit_code", "name"])

    # Widened while the agent runs (an amendment): the next row it reads carries the new fields.
    amend(world, code, more=["status", "established"], approved=["name", "status", "established"])
    with mariadb.admin(business["name"]) as conn, conn.cursor() as cur:
        cur.execute(
            "UPDATE legal_entity SET name = '改名公司', updated_at = NOW(6) WHERE credit_code = %s", (credit_code(7),)
        )
    wanted = ["credit_code", "name", "status", "established"]
    wait_for(lambda: sorted(columns_held()) == sorted(wanted), 30, "the new fields' columns", on_timeout=world.logs)
    converge(wanted)  # every row, not only the changed one
    assert "the subscription's fields changed" in consumer.log()

    # Narrowed (revoked, then granted again for less): the agent clears what the grant no longer covers.
    grant_again(world, code, asked=["name", "status"], approved=["status"])
    wait_for(lambda: held("established") == [(0,)], 30, "the withdrawn field cleared", on_timeout=world.logs)
    assert held("name") == [(0,)]
    converge(["credit_code", "status"])
