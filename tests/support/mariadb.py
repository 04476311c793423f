"""A real MariaDB server for tests and benchmarks, from Debian's mariadb-server package.

Started from a fresh data directory owned by the `mysql` user; the tests administer it as
root over its socket (unix_socket authentication) and create password users for the agent.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pymysql

from tests.support.postgres import free_port


class MariaDbServer:
    def __init__(self) -> None:
        if not shutil.which("mariadbd", path="/usr/sbin:/usr/bin"):
            raise RuntimeError("no MariaDB server binaries; run `make setup` (installs Debian's mariadb-server)")
        self.port = free_port()
        self.base = Path(tempfile.mkdtemp(prefix="gdx-mariadb-"))
        self.socket = self.base / "mysqld.sock"
        self.process: subprocess.Popen[bytes] | None = None
        user = pwd.getpwnam("mysql")
        os.chown(self.base, user.pw_uid, user.pw_gid)

    def start(self) -> MariaDbServer:
        subprocess.run(
            [
                "mariadb-install-db",
                "--user=mysql",
                f"--datadir={self.base / 'data'}",
                "--auth-root-authentication-method=socket",
                "--skip-test-db",
            ],
            check=True,
            capture_output=True,
        )
        log = (self.base / "server.log").open("wb")
        self.process = subprocess.Popen(
            [
                "/usr/sbin/mariadbd",
                "--no-defaults",
                "--user=mysql",
                f"--datadir={self.base / 'data'}",
                f"--socket={self.socket}",
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                f"--pid-file={self.base / 'mysqld.pid'}",
                "--innodb-flush-log-at-trx-commit=2",
                # The binlog as log capture needs it (docs/front-end-node.md, the DBA's checklist).
                "--log-bin=mariadb-bin",
                "--server-id=1",
                "--binlog-format=ROW",
                "--binlog-row-image=FULL",
                "--binlog-row-metadata=FULL",
                "--character-set-server=utf8mb4",
                "--collation-server=utf8mb4_bin",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                self.admin().close()
                return self
            except pymysql.Error:
                if self.process.poll() is not None:
                    break
                time.sleep(0.1)
        raise RuntimeError("MariaDB did not start:\n" + (self.base / "server.log").read_text(errors="replace"))

    def admin(self, database: str | None = None) -> pymysql.connections.Connection[Any]:
        return pymysql.connect(unix_socket=str(self.socket), user="root", database=database, autocommit=True)

    def create_database(self, name: str, user: str, password: str) -> None:
        with self.admin() as conn, conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}`")
            cur.execute("CREATE USER IF NOT EXISTS %s@'%%' IDENTIFIED BY %s", (user, password))
            cur.execute(f"GRANT SELECT ON `{name}`.* TO %s@'%%'", (user,))

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        shutil.rmtree(self.base, ignore_errors=True)
