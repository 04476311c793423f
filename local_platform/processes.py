"""The local platform's background processes (Prometheus, Alertmanager, the load generator): each
started in its own session with its pid in a file and its output in a log, so that `make down`
finds and stops exactly what `make up` started."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path


def spawn(pid_file: Path, log: Path, command: list[str], *, env: dict[str, str] | None = None) -> None:
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    pid_file.write_text(str(process.pid), encoding="ascii")


def stop(pid_file: Path, timeout: float = 5) -> None:
    """SIGTERM, then SIGKILL after ``timeout`` seconds; nothing when it is not running."""
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text(encoding="ascii"))
    try:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            os.kill(pid, 0)
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    pid_file.unlink()


def running(pid_file: Path) -> bool:
    if not pid_file.exists():
        return False
    try:
        os.kill(int(pid_file.read_text(encoding="ascii")), 0)
    except ProcessLookupError:
        return False
    return True
