"""What a department's DBA does once so that a table can be published with `capture: log`.

One source for the statements: `gdx node slot setup` prints them for the node's publications, the
capture's own checks name them when something is missing, and the local platform runs them on its
registers (local_platform/business.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# The PostgreSQL server setting log capture needs (postgresql.conf, or ALTER SYSTEM; then a restart).
POSTGRES_SETTINGS = {"wal_level": "logical"}

# The MariaDB server settings log capture needs (under [mariadbd] in the server's configuration).
MARIADB_SETTINGS = {
    "log_bin": "mariadb-bin",  # the binlog's file name stem; any name will do
    "binlog_format": "ROW",
    "binlog_row_image": "FULL",
    "binlog_row_metadata": "FULL",  # column names in the log
}


def slot_name(resource: str) -> str:
    """The slot's and the publication's name: PostgreSQL takes [a-z0-9_], 63 characters at most."""
    return ("gdx_" + re.sub(r"[^a-z0-9_]", "_", resource.lower()))[:63]


@dataclass(frozen=True)
class Checklist:
    settings: list[str]  # server settings, then a restart
    statements: list[str]  # SQL, as an administrator (and the table's owner)

    def text(self) -> str:
        lines = []
        if self.settings:
            lines += ["# Server settings (then restart the database server):", *self.settings]
        lines += ["# SQL, as an administrator (the publication as the table's owner):", *self.statements]
        return "\n".join(lines)


def postgres_publication(resource: str, table: str) -> str:
    return f"CREATE PUBLICATION {slot_name(resource)} FOR TABLE {table};"


def postgres_replication(user: str) -> str:
    return f'ALTER ROLE "{user}" REPLICATION;'


def mariadb_grant(user: str, host: str = "<the node's address>") -> str:
    return f"GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO '{user}'@'{host}';"


def postgres(resource: str, table: str, user: str) -> Checklist:
    return Checklist(
        settings=[f"{name} = {value}" for name, value in POSTGRES_SETTINGS.items()],
        statements=[postgres_replication(user), postgres_publication(resource, table)],
    )


def mariadb(user: str, host: str = "<the node's address>") -> Checklist:
    return Checklist(
        settings=[f"{name} = {value}" for name, value in MARIADB_SETTINGS.items()],
        statements=[mariadb_grant(user, host)],
    )
