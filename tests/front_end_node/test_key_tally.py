"""Deletions of a table with a change column are found per key bucket: PostgreSQL and MariaDB
must compute the same bucket figures for the same keys, or every comparison would read keys."""

from __future__ import annotations

import hashlib
import uuid

import psycopg

from front_end_node.config import BusinessDb
from front_end_node.sources import MariaDbSource, PostgresSource
from tests.exchange.conftest import resident_id
from tests.support.mariadb import MariaDbServer
from tests.support.postgres import PostgresServer


def expected_tally(keys: list[str]) -> dict[str, tuple[int, int]]:
    tally: dict[str, tuple[int, int]] = {}
    for key in keys:
        h = hashlib.md5(key.encode()).hexdigest()  # noqa: S324 - a bucket, not a secret
        count, xor = tally.get(h[:2], (0, 0))
        tally[h[:2]] = (count + 1, xor ^ int(h[2:17], 16))
    return tally


def test_postgres_and_mariadb_give_the_same_key_buckets(pg: PostgresServer, mariadb: MariaDbServer) -> None:
    text_keys = [resident_id(n) for n in range(3000)] + ["张家港-1", "key with space"]
    int_keys = list(range(1, 2001))
    name = f"tally_{uuid.uuid4().hex[:8]}"

    pg.create_database(name)
    with psycopg.connect(pg.url(name), autocommit=True) as conn:
        conn.execute("CREATE TABLE people (id varchar(40) PRIMARY KEY, updated_at timestamptz)")
        conn.execute("CREATE TABLE firms (id bigint PRIMARY KEY)")
        conn.cursor().executemany("INSERT INTO people (id) VALUES (%s)", [(k,) for k in text_keys])
        conn.cursor().executemany("INSERT INTO firms (id) VALUES (%s)", [(k,) for k in int_keys])
    mariadb.create_database(name, f"r_{name}", "pw")
    with mariadb.admin(name) as conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE people (id varchar(40) PRIMARY KEY, updated_at datetime(6)) DEFAULT CHARSET = utf8mb4"
        )
        cur.execute("CREATE TABLE firms (id bigint PRIMARY KEY)")
        cur.executemany("INSERT INTO people (id) VALUES (%s)", [(k,) for k in text_keys])
        cur.executemany("INSERT INTO firms (id) VALUES (%s)", [(k,) for k in int_keys])

    postgres = PostgresSource(
        BusinessDb(kind="postgresql", host="127.0.0.1", port=pg.port, name=name, user="postgres"), ""
    )
    maria = MariaDbSource(
        BusinessDb(kind="mariadb", host="127.0.0.1", port=mariadb.port, name=name, user=f"r_{name}"), "pw"
    )
    try:
        for table, keys in (("people", text_keys), ("firms", [str(k) for k in int_keys])):
            expected = expected_tally(keys)
            assert len(expected) > 200  # nearly every bucket holds keys
            assert postgres.key_tally(table, "id") == expected
            assert maria.key_tally(table, "id") == expected
            buckets = ["00", "a7"]
            wanted = sorted(k for k in keys if hashlib.md5(k.encode()).hexdigest()[:2] in buckets)  # noqa: S324
            assert wanted
            assert sorted(postgres.keys_in(table, "id", buckets)) == wanted
            assert sorted(maria.keys_in(table, "id", buckets)) == wanted
        assert postgres.keys_in("people", "id", []) == []
    finally:
        postgres.close()
        maria.close()
