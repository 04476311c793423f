"""What `make up` needs of this machine, checked before anything is touched; each problem says what to do."""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterable
from pathlib import Path

GIB = 1024**3


def problems(
    ports: Iterable[tuple[int, str]],
    *,
    needed_gib: float,
    storage: Path = Path("/var/lib/containers"),
    ours: Iterable[int] = (),
) -> list[str]:
    """``ports``: (port, what uses it); ``ours``: ports a running local platform holds already."""
    found = []
    if os.geteuid() != 0:
        found.append("make up must run as root: podman runs the nodes' systemd containers as root (sudo make up)")
    if shutil.which("podman") is None:
        found.append("podman is not installed: run `make setup` (it installs podman, runc and debootstrap)")
    held = set(ours)
    for port, what in ports:
        if port not in held and _taken(port):
            found.append(
                f"port {port} ({what}) is taken by another program: see `ss -ltnp 'sport = :{port}'`, "
                "stop that program, or run `make down` if it is an earlier platform"
            )
    probe = storage if storage.exists() else storage.parent
    free = shutil.disk_usage(probe).free / GIB
    if free < needed_gib:
        found.append(f"only {free:.1f} GiB free on {probe}; make up needs about {needed_gib:g} GiB (images, volumes)")
    return found


def _taken(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))  # noqa: S104 - the test is whether anyone holds it on any address
        except OSError:
            return True
    return False
