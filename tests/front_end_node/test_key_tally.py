"""Deletions of a table with a change column are found per key bucket: PostgreSQL and MariaDB
must compute the same bucket figures for the same keys, or every comparison would read keys.
Each side walks its keys in ranges of its own order (key_ranges): the ranges' figures must add
up to the whole table's, with no key counted twice or left out, whatever the collation."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg

from front_end_node import store
from front_end_node.key_ranges import Pacer
from front_end_node.sources import KeyTally, MariaDbSource, PostgresSource, Source, add_tally
from gdx.sharing import BusinessDb
from tests.support.aio import run
from tests.support.mariadb import MariaDbServer
from tests.support.postgres import PostgresServer
from tests.support.samples import resident_id


def expected_tally(keys: list[str]) -> dict[str, tuple[int, int]]:
    tally: dict[str, tuple[int, int]] = {}
    for key in keys:
        h = hashlib.md5(key.encode()).hexdigest()  # noqa: S324 - a bucket, not a secret
        count, xor = tally.get(h[:2], (0, 0))
        tally[h[:2]] = (count + 1, xor ^ int(h[2:17], 16))
    return tally


async def walk(
    next_bound: Callable[[Any, int], Awaitable[Any]], visit: Callable[[Any, Any], Awaitable[Any]]
) -> list[Any]:
    """Every range's result, walking in ranges of 97 keys (never resized) without pauses."""
    pacer = Pacer(seconds=0, first=97, smallest=97, pause_ratio=0)
    return [await visit(lower, upper) async for lower, upper in pacer.ranges(next_bound)]


def ranged_tally(source: Source, table: str) -> tuple[KeyTally, int]:
    async def bound(lower: Any, skip: int) -> Any:
        return source.key_after(table, "id", lower, skip)

    async def visit(lower: Any, upper: Any) -> KeyTally:
        return source.key_tally(table, "id", lower, upper)

    parts = run(walk(bound, visit))
    total: KeyTally = {}
    for part in parts:
        add_tally(total, part)
    return total, len(parts)


def ranged_keys_in(source: Source, table: str, buckets: list[str]) -> list[str]:
    async def bound(lower: Any, skip: int) -> Any:
        return source.key_after(table, "id", lower, skip)

    async def visit(lower: Any, upper: Any) -> list[str]:
        return source.keys_in(table, "id", buckets, lower, upper)

    return sorted(str(key) for part in run(walk(bound, visit)) for key in part)


def test_postgres_and_mariadb_give_the_same_key_buckets(pg: PostgresServer, mariadb: MariaDbServer) -> None:
    # Mixed case and punctuation: MariaDB's default collation orders (and compares) them unlike PostgreSQL.
    text_keys = [resident_id(n) for n in range(3000)] + ["张家港-1", "key with space", "Abc", "abd", "ABE", "a_b"]
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
            for source in (postgres, maria):
                total, ranges = ranged_tally(source, table)
                assert ranges == len(keys) // 97 + 1
                assert total == expected
            buckets = ["00", "a7"]
            wanted = sorted(k for k in keys if hashlib.md5(k.encode()).hexdigest()[:2] in buckets)  # noqa: S324
            assert wanted
            assert sorted(str(k) for k in postgres.keys_in(table, "id", buckets)) == wanted
            assert sorted(str(k) for k in maria.keys_in(table, "id", buckets)) == wanted
            assert ranged_keys_in(postgres, table, buckets) == wanted
            assert ranged_keys_in(maria, table, buckets) == wanted
        assert postgres.keys_in("people", "id", []) == []
    finally:
        postgres.close()
        maria.close()


def test_the_mirror_walks_its_live_keys_in_ranges(pg: PostgresServer) -> None:
    url = pg.create_database(f"mirror_{uuid.uuid4().hex[:8]}")
    code = "zjg-gaj.population"
    keys = [resident_id(n) for n in range(1000)] + ["Abc", "abd", "ABE", "a_b"]
    deleted = keys[::10]
    live = sorted(set(keys) - set(deleted))

    async def scenario() -> tuple[list[KeyTally], list[list[str]]]:
        async with await store.connect(url) as conn:
            await store.migrate(conn)
            await conn.execute(
                "INSERT INTO gdx.mirror (resource, key, version, deleted) "
                "SELECT %s, k, 1, k = ANY(%s) FROM unnest(%s::text[]) k",
                (code, deleted, keys),
            )
            # Another resource's keys never count.
            await conn.execute("INSERT INTO gdx.mirror (resource, key, version) VALUES ('other.one', 'Abc', 1)")

            async def bound(lower: Any, skip: int) -> Any:
                return await store.mirror_key_after(conn, code, lower, skip)

            async def tally(lower: Any, upper: Any) -> KeyTally:
                return await store.mirror_key_tally(conn, code, lower, upper)

            async def snapshot(lower: Any, upper: Any) -> list[str]:
                return list(await store.mirror_keys(conn, code, sorted(buckets), lower, upper))

            return await walk(bound, tally), await walk(bound, snapshot)

    buckets = {"00", "a7", "4c"}
    tallies, snapshots = run(scenario())
    assert len(tallies) == len(live) // 97 + 1
    total: KeyTally = {}
    for part in tallies:
        add_tally(total, part)
    assert total == expected_tally(live)
    wanted = sorted(k for k in live if hashlib.md5(k.encode()).hexdigest()[:2] in buckets)  # noqa: S324
    assert wanted
    assert sorted(k for part in snapshots for k in part) == wanted
