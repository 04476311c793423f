"""The audit trail is append-only and `gdx audit verify` finds any edit or deletion."""

from __future__ import annotations

import psycopg
import pytest
from typer.testing import CliRunner

from exchange.audit import verify
from exchange.migrate import migrate
from gdx.cli import app
from tests.support.exchange import RunningExchange
from tests.support.postgres import PostgresServer
from tests.support.samples import batch, population_entry, resident_id, unique_code, upsert

PURPOSE = "户籍核验"


def test_every_access_is_recorded_with_who_what_purpose_and_scope(exchange: RunningExchange) -> None:
    code = unique_code("zjg-gaj")
    exchange.client("zjg-gaj").post("/v1/resources", json=population_entry(code))
    exchange.client("zjg-wjw").post(f"/v1/resources/{code}/subscriptions", json={"purpose": PURPOSE})
    exchange.client("zjg-gaj").post(f"/v1/resources/{code}/changes", json=batch(upsert(1, 1)))
    exchange.client("zjg-wjw").get(f"/v1/resources/{code}/changes", params={"purpose": PURPOSE})
    exchange.client("zjg-wjw").get(f"/v1/resources/{code}/records/{resident_id(1)}", params={"purpose": PURPOSE})
    exchange.client("zjg-wjw").get(f"/v1/resources/{code}/records", params={"purpose": PURPOSE})

    entries = exchange.client("bob").get("/v1/audit", params={"resource": code}).json()
    actions = [(e["actor"], e["action"]) for e in entries]
    assert actions == [
        ("zjg-gaj", "catalog.register"),
        ("zjg-wjw", "grant.subscribe"),
        ("zjg-gaj", "push"),
        ("zjg-wjw", "pull"),
        ("zjg-wjw", "lookup"),
        ("zjg-wjw", "download"),
    ]
    pull = entries[3]
    assert pull["purpose"] == PURPOSE
    assert pull["scope"]["count"] == 1
    assert pull["role"] == "department"


def _run_verify(url: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["audit", "verify", "--database-url", url])
    return result.exit_code, result.output


@pytest.fixture
def audited_db(pg: PostgresServer, exchange: RunningExchange) -> str:
    """A copy of the exchange's database to tamper with, leaving the shared one intact."""
    import uuid

    name = f"tamper_{uuid.uuid4().hex[:8]}"
    code = unique_code("zjg-gaj")
    exchange.client("zjg-gaj").post("/v1/resources", json=population_entry(code))
    for n in range(5):
        exchange.client("zjg-gaj").post(f"/v1/resources/{code}/changes", json=batch(upsert(n, 1)))
    url = pg.create_database(name)
    migrate(url)
    # Copy the audit trail row by row, as written.
    with psycopg.connect(exchange.database_url) as src, psycopg.connect(url) as dst:
        rows = src.execute("SELECT id, at, entry, prev_hash, hash FROM audit_log ORDER BY id").fetchall()
        head = src.execute("SELECT last_id, hash FROM audit_head").fetchone()
        with dst.cursor().copy("COPY audit_log (id, at, entry, prev_hash, hash) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        dst.execute("UPDATE audit_head SET last_id = %s, hash = %s", head)
    return url


def test_an_intact_trail_verifies(audited_db: str) -> None:
    code, output = _run_verify(audited_db)
    assert code == 0, output
    assert "audit trail intact" in output


def test_updates_and_deletes_are_refused_by_the_database(audited_db: str) -> None:
    with psycopg.connect(audited_db) as conn:
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            conn.execute("UPDATE audit_log SET entry = entry WHERE id = 1")
        conn.rollback()
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            conn.execute("DELETE FROM audit_log WHERE id = 1")


def _tamper(url: str, sql: str) -> None:
    # An attacker with superuser rights can switch the trigger off; the chain still tells.
    with psycopg.connect(url) as conn:
        conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
        conn.execute(sql)  # type: ignore[arg-type]
        conn.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only")


def test_an_edited_entry_is_found(audited_db: str) -> None:
    _tamper(audited_db, "UPDATE audit_log SET entry = replace(entry, 'zjg-gaj', 'zjg-wjw') WHERE id = 3")
    code, output = _run_verify(audited_db)
    assert code == 1
    assert "entry 3: its content was changed" in output


def test_a_deleted_entry_is_found(audited_db: str) -> None:
    _tamper(audited_db, "DELETE FROM audit_log WHERE id = 4")
    code, output = _run_verify(audited_db)
    assert code == 1
    assert "entries 4..4 are missing" in output


def test_a_removed_tail_is_found_and_an_anchor_catches_a_rewritten_head(audited_db: str) -> None:
    before = verify(audited_db)
    _tamper(audited_db, "DELETE FROM audit_log WHERE id = (SELECT max(id) FROM audit_log)")
    assert "entries were removed" in " ".join(verify(audited_db).problems)
    with psycopg.connect(audited_db) as conn:
        conn.execute(
            "UPDATE audit_head SET last_id = last_id - 1, hash = (SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1)"
        )
    assert verify(audited_db).ok  # a consistent rewrite of the tail...
    anchored = verify(audited_db, anchor=(before.head_id, before.head_hash))
    assert not anchored.ok  # ...is caught by the anchor kept outside the database
    assert "truncated" in " ".join(anchored.problems)
