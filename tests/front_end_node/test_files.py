"""A resource of files carried by the agents: the provider's business table holds each file's bytes,
the subscriber's front-end database receives the record (the file named by its SHA-256) and the file."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from tests.support.mariadb import MariaDbServer
from tests.support.nodes import exchange_client, wait_for
from tests.support.samples import PURPOSE, credit_code, licence_scan_entry
from tests.support.world import World

LICENCES = """
CREATE TABLE licence (
    credit_code  text PRIMARY KEY,
    licence_no   text NOT NULL,
    issued       date,
    scan         bytea NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""


def pdf(n: int) -> bytes:
    return b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n" + f"营业执照 {n}\n".encode() + os.urandom(20_000 + n * 3000)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


Insert = Callable[[dict[int, bytes]], None]


def postgresql_source(world: World) -> tuple[dict[str, Any], Insert]:
    """The licences in a PostgreSQL business database (bytea), and how to insert or replace files."""
    url = world.database("scjgj_business")
    with psycopg.connect(url) as conn:
        conn.execute(LICENCES)

    def insert(rows: dict[int, bytes]) -> None:
        with psycopg.connect(url) as conn:
            for n, data in rows.items():
                conn.execute(
                    "INSERT INTO licence (credit_code, licence_no, issued, scan) VALUES (%s, %s, '2026-03-01', %s) "
                    "ON CONFLICT (credit_code) DO UPDATE SET scan = EXCLUDED.scan, updated_at = clock_timestamp()",
                    (credit_code(n), f"320582{n:09d}", data),
                )

    db = {"kind": "postgresql", "host": "127.0.0.1", "port": world.pg.port, "name": url.rsplit("/", 1)[1],
          "user": "postgres", "password": ""}  # fmt: skip
    return db, insert


def mariadb_source(world: World, mariadb: MariaDbServer) -> tuple[dict[str, Any], Insert]:
    """The licences in a MariaDB business database (LONGBLOB)."""
    name = f"scjgj_files_{world.suffix}"
    mariadb.create_database(name, f"files_{world.suffix}", "读者-s3cret")
    with mariadb.admin(name) as conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE licence (credit_code varchar(18) PRIMARY KEY, licence_no varchar(20) NOT NULL, issued date, "
            "scan longblob NOT NULL, updated_at datetime(6) NOT NULL DEFAULT current_timestamp(6) "
            "ON UPDATE current_timestamp(6))"
        )

    def insert(rows: dict[int, bytes]) -> None:
        with mariadb.admin(name) as conn, conn.cursor() as cur:
            for n, data in rows.items():
                cur.execute(
                    "INSERT INTO licence (credit_code, licence_no, issued, scan) VALUES (%s, %s, '2026-03-01', %s) "
                    "ON DUPLICATE KEY UPDATE scan = VALUES(scan)",
                    (credit_code(n), f"320582{n:09d}", data),
                )
            conn.commit()

    secret = world.workdir / "files-db.password"
    secret.write_text("读者-s3cret\n", encoding="utf-8")
    secret.chmod(0o600)
    db = {"kind": "mariadb", "host": "127.0.0.1", "port": mariadb.port, "name": name, "user": f"files_{world.suffix}",
          "password_file": str(secret)}  # fmt: skip
    return db, insert


def received(front_end_db: str, code: str) -> dict[str, tuple[str, bytes | None]]:
    """credit code -> (the digest the subscriber's row names, the file's bytes held beside it)."""
    with psycopg.connect(front_end_db) as conn:
        if conn.execute("SELECT to_regclass('scjgj_licence')").fetchone() == (None,):
            return {}
        rows = conn.execute(
            "SELECT t.credit_code, t.scan, f.data FROM scjgj_licence t "
            "LEFT JOIN gdx.file f ON f.resource = %s AND f.sha256 = t.scan",
            (code,),
        ).fetchall()
    return {code: (digest, None if data is None else bytes(data)) for code, digest, data in rows}


def held_files(front_end_db: str, code: str) -> set[str]:
    with psycopg.connect(front_end_db) as conn:
        return {sha for (sha,) in conn.execute("SELECT sha256 FROM gdx.file WHERE resource = %s", (code,))}


@pytest.mark.slow  # two agents and a purge: the exchange's own tests of attachments stay in make test-fast
def test_files_travel_with_their_records_from_postgresql(world: World) -> None:
    carry(world, *postgresql_source(world))


@pytest.mark.slow  # the same path as from PostgreSQL, but for the driver's BLOB
def test_files_travel_with_their_records_from_mariadb(world: World, mariadb: MariaDbServer) -> None:
    carry(world, *mariadb_source(world, mariadb))


def carry(world: World, business_db: dict[str, Any], insert: Insert) -> None:
    """Files from the provider's business table to the subscriber's front-end database, through a
    snapshot and then the change log; a replaced file let go; a purge taking the files along."""
    code = world.code("zjg-scjgj", "licence-scan")
    world.register("zjg-scjgj", licence_scan_entry(code, "unconditional"))
    files = {n: pdf(n) for n in range(12)}
    files[12] = files[3]  # two records, one file: stored and sent once
    files[13] = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + os.urandom(5000)
    insert(files)
    insert({99: "不是扫描件，是一段文字。".encode() * 50})  # a type the catalog does not list
    provider = world.agent(
        "zjg-scjgj",
        business_db=business_db,
        publishes=[{"resource": code, "table": "licence", "change_column": "updated_at", "compare_interval_s": 1}],
    )  # fmt: skip
    provider.start()
    wait_for(lambda: world.current_rows(code) == len(files), 60, "the provider's records at the exchange",
             on_timeout=world.logs)  # fmt: skip
    # The subscriber starts after them: its first load is a snapshot, and the files come with its chunks.
    world.subscribe("zjg-wjw", code)
    consumer = world.agent("zjg-wjw", subscribes=[{"resource": code, "purpose": PURPOSE, "table": "scjgj_licence",
                                                   "grant_check_interval_s": 1}])  # fmt: skip
    consumer.start()

    def expected() -> dict[str, tuple[str, bytes | None]]:
        return {credit_code(n): (sha(data), data) for n, data in files.items()}

    wait_for(lambda: received(consumer.front_end_db, code) == expected(), 60, "the records and their files",
             on_timeout=world.logs)  # fmt: skip

    # A record's file replaced at the source, and a new record: through the change log this time.
    files[5] = pdf(105)
    files[20] = pdf(20)
    insert({5: files[5], 20: files[20]})
    wait_for(lambda: received(consumer.front_end_db, code) == expected(), 60, "the changed file",
             on_timeout=world.logs)  # fmt: skip

    # The replaced file is let go on both nodes (the exchange keeps it: older changes name it).
    current = {sha(data) for data in files.values()}
    wait_for(lambda: held_files(provider.front_end_db, code) == current, 30, "the provider to let the old file go",
             on_timeout=world.logs)  # fmt: skip
    wait_for(lambda: held_files(consumer.front_end_db, code) == current, 30, "the subscriber to let the old file go",
             on_timeout=world.logs)  # fmt: skip

    with psycopg.connect(provider.front_end_db) as conn:
        quarantined = conn.execute("SELECT key, reason FROM gdx.quarantine").fetchall()
        unsent = conn.execute("SELECT count(*) FROM gdx.file WHERE sent_at IS NULL").fetchone()
    assert [key for key, _ in quarantined] == [credit_code(99)]
    assert "application/pdf, image/jpeg, image/png" in quarantined[0][1]
    assert unsent == (0,)
    with psycopg.connect(world.exchange.database_url) as conn:
        stored = conn.execute(
            "SELECT count(*) FROM resource_file f JOIN resource r ON r.id = f.resource_id WHERE r.code = %s", (code,)
        ).fetchone()
        downloads = conn.execute(
            "SELECT count(*) FROM audit_log WHERE resource = %s AND action = 'file_download'", (code,)
        ).fetchone()
        snapshot = conn.execute(
            "SELECT sum((entry::jsonb -> 'scope' ->> 'rows')::int) FROM audit_log "
            "WHERE resource = %s AND action = 'snapshot'",
            (code,),
        ).fetchone()
    assert snapshot == (len(files) - 1,)  # all but the record added later
    # The shared file once, and the replaced file of record 5 kept (older changes name it).
    assert stored == (len({sha(data) for data in files.values()}) + 1,)
    assert downloads is not None
    assert downloads[0] == stored[0]  # each file read once by the subscriber

    # The grant revoked with purge: the records go, and their files with them.
    with exchange_client(world.exchange, "zjg-wjw") as wjw:
        grant = next(g for g in wjw.get("/v1/grants").json() if g["resource"] == code)
    with exchange_client(world.exchange, "zjg-scjgj") as scjgj:
        revoked = scjgj.post(f"/v1/grants/{grant['id']}/revoke", json={"reason": "超出用途", "on_revoke": "purge"})
        assert revoked.status_code == 200, revoked.text

    def purged() -> bool:
        with psycopg.connect(consumer.front_end_db) as conn:
            files = conn.execute("SELECT count(*) FROM gdx.file WHERE resource = %s", (code,)).fetchone()
        return received(consumer.front_end_db, code) == {} and files == (0,)

    wait_for(purged, 30, "the records and files purged", on_timeout=world.logs)
