"""A real PostgreSQL server for tests and benchmarks, started from Debian's binaries.

PostgreSQL refuses to run as root, and CI runs as root, so the cluster is created and run
as the `postgres` system user (from Debian's package) in a directory that user owns.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import psycopg


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not found:
        raise RuntimeError("no PostgreSQL server binaries; run `make setup` (installs Debian's postgresql)")
    return Path(found[-1]).parent


class PostgresServer:
    def __init__(
        self, *, durable: bool = False, listen: str = "127.0.0.1", settings: dict[str, str] | None = None
    ) -> None:
        self.port = free_port()
        self.settings = settings or {}
        self.listen = listen
        self.bindir = _bindir()
        self.base = Path(tempfile.mkdtemp(prefix="gdx-pg-"))
        self.durable = durable
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.base, user.pw_uid, user.pw_gid)
            self._as_user = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as_user, *args], check=True, capture_output=True, text=True)

    def start(self) -> PostgresServer:
        data = self.base / "data"
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        )
        options = [
            f"-p {self.port}",
            f"-k {self.base}",
            f"-c listen_addresses={self.listen}",
            "-c max_connections=200",
            "-c shared_buffers=256MB",
            *(f"-c {name}={value}" for name, value in self.settings.items()),
        ]
        if not self.durable:
            # Tests need no crash safety; benchmarks keep PostgreSQL's defaults.
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        self._options = " ".join(options)
        try:
            self._run(
                str(self.bindir / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(self.base / "server.log"),
                "-o",
                self._options,
                "-w",
                "start",
            )
        except subprocess.CalledProcessError:
            log = (self.base / "server.log").read_text(errors="replace")
            raise RuntimeError(f"PostgreSQL did not start:\n{log}") from None
        return self

    def halt(self) -> None:
        """Stop the server (fast), keeping its data: an outage, until resume()."""
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.base / "data"), "-m", "fast", "-w", "stop")

    def resume(self) -> None:
        """Start a halted server again, with the options it ran with."""
        self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.base / "data"), "-l", str(self.base / "server.log"),
            "-o", self._options, "-w", "start",
        )  # fmt: skip

    def restart(self) -> None:
        """Stop (fast: open transactions are cut off) and start again with the same settings."""
        self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.base / "data"), "-l", str(self.base / "server.log"),
            "-m", "fast", "-w", "restart",
        )  # fmt: skip

    def stop(self) -> None:
        data = self.base / "data"
        if data.exists():
            subprocess.run(
                [*self._as_user, str(self.bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                capture_output=True,
                check=False,
            )
        shutil.rmtree(self.base, ignore_errors=True)

    def allow(self, line: str) -> None:
        """Add a pg_hba.conf line (e.g. password logins from a test network) and reload."""
        hba = self.base / "data" / "pg_hba.conf"
        hba.write_text(hba.read_text() + line + "\n")
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.base / "data"), "reload")

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)
