"""The departments' business databases: a PostgreSQL server for the public security bureau's
population register and a MariaDB server for the market regulation bureau's legal-entity register,
each a container on the nodes' network with its table, realistic rows and a read-only login for the
front-end agent (the only access a department grants it).

The owner logins (for seeding and the load generator) and the agents' reader logins have generated
passwords kept under build/local/secrets.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pymysql

from front_end_node import dba_checklist
from local_platform.podman import podman
from local_platform.sample_data import legal_entity, resident
from local_platform.state import LocalState
from local_platform.topology import LABEL, NETWORK, READER, BusinessDatabase

Progress = Callable[[str], None]
IMAGES = {"postgresql": "localhost/gdx-postgres:15", "mariadb": "localhost/gdx-mariadb:10.11"}

POPULATION_DDL = """
CREATE TABLE population (
    id_number char(18) PRIMARY KEY, name text NOT NULL, gender text, birth_date date, address text,
    household_size integer, updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX population_changes ON population (updated_at, id_number);
-- The change-tracking column the agent reads: set by the database on every write, whatever the client.
CREATE FUNCTION population_touch() RETURNS trigger LANGUAGE plpgsql AS
    $$ BEGIN NEW.updated_at := clock_timestamp(); RETURN NEW; END $$;
CREATE TRIGGER population_touch BEFORE INSERT OR UPDATE ON population
    FOR EACH ROW EXECUTE FUNCTION population_touch();
"""
LEGAL_ENTITY_DDL = """
CREATE TABLE legal_entity (
    credit_code char(18) PRIMARY KEY, name varchar(200) NOT NULL, legal_representative varchar(50),
    registered_capital bigint, established date, status varchar(20),
    updated_at datetime(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    KEY legal_entity_changes (updated_at, credit_code)
) DEFAULT CHARSET = utf8mb4
"""
POPULATION_COLUMNS = ("id_number", "name", "gender", "birth_date", "address", "household_size")
LEGAL_ENTITY_COLUMNS = ("credit_code", "name", "legal_representative", "registered_capital", "established", "status")
INSERT_ENTITY = """
INSERT INTO legal_entity (credit_code, name, legal_representative, registered_capital, established, status)
VALUES (%s, %s, %s, %s, %s, %s)
"""


def owner(db: BusinessDatabase) -> str:
    return f"{db.database}_owner"


def start(db: BusinessDatabase, state: LocalState) -> None:
    """The database's container (kept when it runs already: its rows are the department's)."""
    if podman("container", "exists", db.container, check=False).returncode == 0:
        podman("start", db.container)
        return
    password = state.secret(f"{db.container}-owner")
    # The server settings of the DBA's checklist for log capture (front_end_node/dba_checklist.py).
    if db.kind == "postgresql":
        env = {"POSTGRES_USER": owner(db), "POSTGRES_PASSWORD": password, "POSTGRES_DB": db.database}
        command = ["postgres"]
        for name, value in dba_checklist.POSTGRES_SETTINGS.items():
            command += ["-c", f"{name}={value}"]
    else:
        env = {"MARIADB_USER": owner(db), "MARIADB_PASSWORD": password, "MARIADB_DATABASE": db.database}
        # Local time in the register, as departments keep it; the agent reads it as Asia/Shanghai.
        settings = {**dba_checklist.MARIADB_SETTINGS, "server_id": "1"}
        command = ["mariadbd", "--default-time-zone=+08:00"]
        command += [f"--{name.replace('_', '-')}={value}" for name, value in settings.items()]
    podman(
        "run", "-d", "--name", db.container, "--hostname", db.container, "--label", LABEL,
        "--network", NETWORK, "--ip", db.address,
        *[arg for key, value in env.items() for arg in ("-e", f"{key}={value}")],
        IMAGES[db.kind], *command,
    )  # fmt: skip


def wait_ready(db: BusinessDatabase, state: LocalState, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with connect(db, state):
                return
        except (psycopg.Error, pymysql.MySQLError) as exc:
            if time.monotonic() > deadline:
                logs = podman("logs", "--tail", "20", db.container, check=False).stderr
                raise BusinessDbError(
                    f"{db.container} did not accept connections in {timeout:.0f} s: {exc}\n{logs}"
                ) from None
            time.sleep(0.5)


@contextmanager
def connect(db: BusinessDatabase, state: LocalState) -> Iterator[Any]:
    """A connection as the table's owner (autocommit)."""
    password = state.secret(f"{db.container}-owner")
    if db.kind == "postgresql":
        with psycopg.connect(
            host=db.address, port=db.port, dbname=db.database, user=owner(db), password=password,
            autocommit=True, connect_timeout=5,
        ) as conn:  # fmt: skip
            yield conn
    else:
        my = pymysql.connect(
            host=db.address, port=db.port, database=db.database, user=owner(db), password=password,
            charset="utf8mb4", autocommit=True, connect_timeout=5,
        )  # fmt: skip
        try:
            yield my
        finally:
            my.close()


def seed(db: BusinessDatabase, state: LocalState, rows: int, progress: Progress = print) -> int:
    """The table and ``rows`` sample rows, unless it has rows already; the reader login. Returns the row count."""
    _check_log_settings(db, state)
    with connect(db, state) as conn:
        if db.kind == "postgresql":
            exists = conn.execute("SELECT to_regclass('public.population') IS NOT NULL").fetchone()[0]
            if not exists:
                conn.execute(POPULATION_DDL)
                columns = ", ".join(POPULATION_COLUMNS)
                with conn.cursor() as cur, cur.copy(f"COPY population ({columns}) FROM STDIN") as copy:
                    for n in range(rows):
                        person = resident(n)
                        copy.write_row([person[c] for c in POPULATION_COLUMNS])
            _pg_reader(conn, db, state.secret(f"{db.container}-reader"))
            count = int(conn.execute("SELECT count(*) FROM population").fetchone()[0])
        else:
            with conn.cursor() as cur:
                cur.execute("SHOW TABLES LIKE 'legal_entity'")
                if cur.fetchone() is None:
                    cur.execute(LEGAL_ENTITY_DDL)
                    for start_at in range(0, rows, 1000):
                        batch = [legal_entity(n) for n in range(start_at, min(rows, start_at + 1000))]
                        cur.executemany(INSERT_ENTITY, [[e[c] for c in LEGAL_ENTITY_COLUMNS] for e in batch])
                cur.execute("SELECT count(*) FROM legal_entity")
                count = int(cur.fetchone()[0])
            _mariadb_reader(db, state.secret(f"{db.container}-reader"))
    progress(f"{db.container}: {db.table} holds {count:,} rows ({db.kind} at {db.address}:{db.port})")
    return count


def _pg_reader(conn: psycopg.Connection[Any], db: BusinessDatabase, password: str) -> None:
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (READER,)).fetchone()
    verb = "ALTER" if exists else "CREATE"
    conn.execute(f"{verb} ROLE {READER} LOGIN PASSWORD '{password}'".encode())
    conn.execute(f"GRANT SELECT ON {db.table} TO {READER}".encode())
    # Log capture: the statements of the DBA's checklist (front_end_node/dba_checklist.py).
    conn.execute(dba_checklist.postgres_replication(READER).encode())
    name = dba_checklist.slot_name(db.resource)
    if conn.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (name,)).fetchone() is None:
        conn.execute(dba_checklist.postgres_publication(db.resource, db.table).encode())


def _mariadb_reader(db: BusinessDatabase, password: str) -> None:
    # The owner may not create logins; root may, over the server's socket inside the container.
    sql = (
        f"CREATE USER IF NOT EXISTS '{READER}'@'%' IDENTIFIED BY '{password}'; "
        f"ALTER USER '{READER}'@'%' IDENTIFIED BY '{password}'; "
        f"GRANT SELECT ON `{db.database}`.`{db.table}` TO '{READER}'@'%'; " + dba_checklist.mariadb_grant(READER, "%")
        # Log capture: the grant of the DBA's checklist (front_end_node/dba_checklist.py).
    )
    podman("exec", db.container, "mariadb", "--socket=/run/mysqld/mysqld.sock", "-e", sql)


def _check_log_settings(db: BusinessDatabase, state: LocalState) -> None:
    """A container made before the registers were published by log capture lacks its server settings."""
    with connect(db, state) as conn:
        if db.kind == "postgresql":
            ready = conn.execute("SELECT current_setting('wal_level') = 'logical'").fetchone()[0]
        else:
            with conn.cursor() as cur:
                cur.execute("SELECT @@log_bin = 1 AND @@binlog_format = 'ROW'")
                ready = bool(cur.fetchone()[0])
    if not ready:
        raise BusinessDbError(
            f"{db.container} runs without the settings log capture needs (it was made by an earlier version): "
            f"remove it (podman rm -f {db.container}; its rows are sample data) and run make up again"
        )


class BusinessDbError(Exception):
    pass
