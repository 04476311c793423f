"""A World: two or three departments and a central exchange, on real databases.

Each test gets its own resource codes, business tables and front-end databases, so tests
share the servers (one PostgreSQL, one MariaDB, one exchange per module) but no data.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from tests.support.exchange import RunningExchange
from tests.support.nodes import (
    POPULATION_COLUMNS,
    POPULATION_TABLE,
    Agent,
    checksum,
    exchange_client,
    pg_rows,
    pg_table_exists,
    wait_for,
    write_agent,
)
from tests.support.postgres import PostgresServer
from tests.support.samples import PURPOSE, person, population_entry


@dataclass
class PopulationSource:
    """A public security bureau's population table in its PostgreSQL business database."""

    url: str
    table: str = "population"

    def create(self) -> PopulationSource:
        with psycopg.connect(self.url) as conn:
            conn.execute(POPULATION_TABLE.format(table=self.table).encode())
            conn.execute(
                "CREATE TABLE gdx_heartbeat (resource text PRIMARY KEY, seq bigint NOT NULL, source_time timestamptz)"
            )
        return self

    def insert(self, numbers: range | list[int]) -> None:
        cols = [c for c in POPULATION_COLUMNS if c != "updated_at"]
        with (
            psycopg.connect(self.url) as conn,
            conn.cursor() as cur,
            cur.copy(f"COPY {self.table} ({', '.join(cols)}) FROM STDIN") as copy,
        ):
            for n in numbers:
                row = person(n)
                copy.write_row([row[c] for c in cols])

    def execute(self, sql: str, params: Any = None) -> None:
        with psycopg.connect(self.url) as conn:
            conn.execute(sql, params)

    def rows(self, columns: list[str] | None = None) -> list[tuple[Any, ...]]:
        return pg_rows(self.url, self.table, columns or POPULATION_COLUMNS)


@dataclass
class World:
    """Databases, agents and clients of one test; stopped at its end."""

    pg: PostgresServer
    exchange: RunningExchange
    workdir: Path
    agents: list[Agent] = field(default_factory=list)
    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    def database(self, stem: str, server: PostgresServer | None = None) -> str:
        return (server or self.pg).create_database(f"{stem}_{self.suffix}")

    def code(self, provider: str, stem: str) -> str:
        return f"{provider}.{stem}-{self.suffix}"

    def register(self, provider: str, spec: dict[str, Any]) -> None:
        with exchange_client(self.exchange, provider) as client:
            response = client.post("/v1/resources", json=spec)
            assert response.status_code == 201, response.text

    def update(self, provider: str, spec: dict[str, Any]) -> None:
        """A new version of a catalog entry."""
        with exchange_client(self.exchange, provider) as client:
            response = client.put(f"/v1/resources/{spec['code']}", json=spec)
            assert response.status_code == 200, response.text

    def subscribe(self, consumer: str, code: str, purpose: str = PURPOSE) -> None:
        with exchange_client(self.exchange, consumer) as client:
            response = client.post(f"/v1/resources/{code}/subscriptions", json={"purpose": purpose})
            assert response.status_code == 201, response.text

    def population(
        self,
        *,
        heartbeat_table: bool = True,
        front_end_db: str | None = None,
        leave_out: tuple[str, ...] = (),
        **publication: Any,
    ) -> tuple[str, PopulationSource, Agent]:
        """zjg-gaj publishing a population table from PostgreSQL, with its agent (not started);
        the catalog entry lacks the fields in ``leave_out`` (the table has them all)."""
        code = self.code("zjg-gaj", "population")
        self.register("zjg-gaj", population_entry(code, leave_out=leave_out))
        source = PopulationSource(self.database("gaj_business")).create()
        agent = self.agent(
            "zjg-gaj",
            front_end_db,
            business_db={
                "kind": "postgresql",
                "host": "127.0.0.1",
                "port": self.pg.port,
                "name": source.url.rsplit("/", 1)[1],
                "user": "postgres",
                "password": "",
                "heartbeat_table": "gdx_heartbeat" if heartbeat_table else None,
            },
            publishes=[{"resource": code, "table": "population", "change_column": "updated_at", **publication}],
        )
        return code, source, agent

    def subscriber(self, code: str, department: str = "zjg-wjw", table: str = "gaj_population") -> Agent:
        """``department`` subscribing to ``code`` into ``table``, with its agent (not started)."""
        self.subscribe(department, code)
        return self.agent(department, subscribes=[{"resource": code, "purpose": PURPOSE, "table": table}])

    def agent(self, department: str, front_end_db: str | None = None, **kwargs: Any) -> Agent:
        front_end_db = front_end_db or self.database(f"fe_{department.replace('-', '_')}")
        agent = write_agent(self.workdir, department, self.exchange, front_end_db, **kwargs)
        self.agents.append(agent)
        return agent

    def current_rows(self, code: str) -> int:
        """The rows the exchange holds of ``code`` (its current keys, deletions left out)."""
        with psycopg.connect(self.exchange.database_url) as conn:
            found = conn.execute(
                "SELECT count(*) FROM current_key k JOIN resource r ON r.id = k.resource_id "
                "WHERE r.code = %s AND NOT k.deleted",
                (code,),
            ).fetchone()
        return found[0] if found else 0

    def logs(self) -> str:
        return "\n".join(agent.log() for agent in self.agents)

    def converge(self, provider_rows: Any, consumer_db: str, table: str, columns: list[str], timeout: float) -> None:
        """Wait until the subscriber's table equals the provider's rows (by checksum)."""
        expected = checksum(provider_rows())
        state = {"seen": (0, "")}

        def equal() -> bool:
            if not pg_table_exists(consumer_db, table):
                return False
            try:
                state["seen"] = checksum(pg_rows(consumer_db, table, columns))
            except psycopg.errors.UndefinedColumn:
                return False  # a field the subscriber's table has yet to gain
            return state["seen"] == expected

        wait_for(
            equal,
            timeout,
            f"{table} to equal the provider's {expected[0]} rows",
            on_timeout=lambda: f"subscriber holds {state['seen'][0]} rows\n{self.logs()}",
        )

    def stop(self) -> None:
        for agent in self.agents:
            if agent.running():
                agent.kill()
