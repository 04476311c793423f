"""Versioned schema migrations: numbered SQL files applied once each, in order, in one
transaction per file, under an advisory lock so that two pods starting together cannot
both migrate."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources

import psycopg

_LOCK_ID = 0x6764_7801  # "gdx" + 1: the advisory lock all migrators take
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def available() -> list[Migration]:
    found = []
    for entry in resources.files("exchange.migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(versions) + 1)):
        raise RuntimeError(f"migration numbers must run 1, 2, 3 ... without gaps; found {versions}")
    return found


def applied_versions(conn: psycopg.Connection) -> set[int]:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migration ("
        " version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
    )
    return {row[0] for row in conn.execute("SELECT version FROM schema_migration")}


class DatabaseNotReady(Exception):
    """The database did not accept connections within the time allowed."""


def wait_for_database(conninfo: str, wait_s: float, progress: Callable[[str], None] = print) -> None:
    """Return once the database accepts a connection: a migration Job may start before its
    database (a CloudNativePG cluster still bootstrapping), and should wait rather than fail."""
    deadline = time.monotonic() + wait_s
    said = ""
    while True:
        try:
            psycopg.connect(conninfo, connect_timeout=5).close()
            return
        except psycopg.OperationalError as exc:
            left = deadline - time.monotonic()
            problem = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if left <= 0:
                raise DatabaseNotReady(
                    f"the database did not accept connections within {wait_s:g} s ({problem}); "
                    "check that it runs and the URL, or wait longer (--wait)"
                ) from None
            if problem != said:
                progress(f"waiting for the database ({problem}); {left:.0f} s left")
                said = problem
            time.sleep(min(2.0, max(left, 0.1)))


def migrate(conninfo: str) -> list[str]:
    """Apply pending migrations; return the names of those applied (empty when up to date)."""
    done: list[str] = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_ID,))
        try:
            have = applied_versions(conn)
            for migration in available():
                if migration.version in have:
                    continue
                with conn.transaction():
                    conn.execute(migration.sql.encode())
                    conn.execute(
                        "INSERT INTO schema_migration (version, name) VALUES (%s, %s)",
                        (migration.version, migration.name),
                    )
                done.append(migration.name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))
    return done


def pending(conn: psycopg.Connection) -> list[str]:
    have = applied_versions(conn)
    return [m.name for m in available() if m.version not in have]
