"""`gdx exchange migrate --wait`: a migration started before its database waits for it, and says
so, instead of failing for good (a Kubernetes Job beside a CloudNativePG cluster still booting)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.support.postgres import PostgresServer

pytestmark = pytest.mark.slow  # a database of its own, down for a few seconds


def migrate(url: str, wait: float) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "gdx.cli", "exchange", "migrate", "--wait", str(wait), "--database-url", url]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_migration_waits_for_its_database_then_applies_and_gives_up_with_a_reason() -> None:
    server = PostgresServer().start()
    try:
        url = server.url()
        server.halt()
        started = time.monotonic()
        late = migrate(url, 2)
        out, err = late.communicate(timeout=30)
        assert late.returncode == 1, out + err
        assert time.monotonic() - started >= 2
        assert "did not accept connections within 2 s" in err
        assert "--wait" in err
        assert "Traceback" not in err

        waiting = migrate(url, 60)
        time.sleep(3)
        assert waiting.poll() is None, "still waiting while the database is down"
        server.resume()
        out, err = waiting.communicate(timeout=60)
        assert waiting.returncode == 0, out + err
        assert "waiting for the database" in err
        assert out.startswith("applied: 0001_")
    finally:
        server.stop()
