"""A published table the node reaches and cannot read (a catalog field without its column, a
table renamed) is named with what the table needs, on PostgreSQL and MariaDB alike, not with
the advice for an unreachable database."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from front_end_node.sources import MariaDbSource, PostgresSource, SourceError
from gdx.sharing import BusinessDb
from tests.support.mariadb import MariaDbServer
from tests.support.postgres import PostgresServer


def test_a_table_without_a_fields_column_says_what_the_table_needs(pg: PostgresServer, mariadb: MariaDbServer) -> None:
    name = f"src_{uuid.uuid4().hex[:8]}"
    pg.create_database(name)
    with psycopg.connect(pg.url(name), autocommit=True) as conn:
        conn.execute("CREATE TABLE people (id text PRIMARY KEY, name text)")
        conn.execute("INSERT INTO people VALUES ('1', '张三')")
    mariadb.create_database(name, f"r_{name}", "pw")
    with mariadb.admin(name) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE people (id varchar(40) PRIMARY KEY, name text) DEFAULT CHARSET = utf8mb4")
        cur.execute("INSERT INTO people VALUES ('1', '张三')")

    sources = [
        PostgresSource(BusinessDb(kind="postgresql", host="127.0.0.1", port=pg.port, name=name, user="postgres"), ""),
        MariaDbSource(
            BusinessDb(kind="mariadb", host="127.0.0.1", port=mariadb.port, name=name, user=f"r_{name}"), "pw"
        ),
    ]
    try:
        for source in sources:
            reads: list[Callable[[], Any]] = [
                lambda s=source: s.read_by_key("people", ["id", "nickname"], "id", None, 10),  # a field more
                lambda s=source: s.read_by_key("persons", ["id", "name"], "id", None, 10),  # renamed
                lambda s=source: next(s.iter_rows("people", ["id", "nickname"], 10)),  # the keyed comparison
            ]
            for read in reads:
                with pytest.raises(SourceError) as caught:
                    read()
                message = str(caught.value)
                assert "needs a column named as each field of the catalog entry" in message, message
                assert "nickname" in message or "persons" in message, message
                assert "firewall" not in message
            assert source.read_by_key("people", ["id", "name"], "id", None, 10) == [("1", "张三")]
            # What the drift check compares: the columns, unqualified or in the current schema by name.
            assert set(source.columns("people")) == {"id", "name"}
            assert source.columns("persons") == {}
        assert set(sources[0].columns("public.people")) == {"id", "name"}
        assert set(sources[1].columns(f"{name}.people")) == {"id", "name"}
    finally:
        for source in sources:
            source.close()
