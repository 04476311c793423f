"""make up's preflight names each problem and what to do about it."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from local_platform.preflight import problems


def test_a_taken_port_and_a_full_disk_are_named_with_what_to_do(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        found = problems([(port, "the exchange")], needed_gib=10**6, storage=tmp_path)
    assert any(f"port {port} (the exchange) is taken" in p and "make down" in p for p in found), found
    assert any("GiB free on" in p and "needs about" in p for p in found), found


def test_a_port_our_own_platform_holds_is_no_problem(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        found = problems([(port, "the exchange")], needed_gib=0, storage=tmp_path, ours=[port])
    assert not [p for p in found if "port" in p]


@pytest.mark.skipif(os.geteuid() != 0, reason="the machine's tests run as root")
def test_root_with_podman_and_room_has_no_problem(tmp_path: Path) -> None:
    free = [(port, "free") for port in (_free(), _free())]
    assert problems(free, needed_gib=0.001, storage=tmp_path) == []


def _free() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
