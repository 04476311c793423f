"""The departments' front-end nodes (前置机): Debian 12 containers booting systemd on the platform's
own podman network, reachable over SSH with a key made for the demo, and provisioned by the real
site.yml from the generated inventory, as a technician provisions a server.

Every container and the network carry the label LABEL; `make down` removes what has it and
nothing else. Each node keeps its apt package cache in /var/cache/gdx-local (kept by `make down`,
removed by `gdx platform down --purge`), so a second `make up` downloads nothing.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from local_platform.podman import podman
from local_platform.state import LocalState
from local_platform.topology import GATEWAY, LABEL, NETWORK, SUBNET, Department

Progress = Callable[[str], None]
BASE_IMAGE = "localhost/gdx-debian-systemd:bookworm"
APT_CACHE = Path("/var/cache/gdx-local/apt")


class NodeError(Exception):
    pass


def conflicts(containers: Iterable[str]) -> list[str]:
    """What podman holds already that make up would make (for the preflight): the network's range
    or name, a container's name — when make up did not make them."""
    found = []
    for line in podman("network", "ls", "--format", "{{.Name}} {{.Subnets}}", check=False).stdout.splitlines():
        name, _, subnets = line.partition(" ")
        if name != NETWORK and SUBNET in subnets:
            found.append(f"podman network {name!r} uses {SUBNET} already: remove it (podman network rm {name})")
    if podman("network", "exists", NETWORK, check=False).returncode == 0 and LABEL not in _network_labels():
        found.append(f"a podman network named {NETWORK!r} exists and make up did not make it: remove or rename it")
    for name in containers:
        labels = podman("container", "inspect", "--format", "{{.Config.Labels}}", name, check=False)
        if labels.returncode == 0 and LABEL not in labels.stdout:
            found.append(
                f"a container named {name!r} exists and make up did not make it: remove it (podman rm -f {name})"
            )
    return found


def ensure_network() -> None:
    if podman("network", "exists", NETWORK, check=False).returncode != 0:
        podman("network", "create", "--subnet", SUBNET, "--gateway", GATEWAY, "--label", LABEL, NETWORK)


def _network_labels() -> str:
    return podman("network", "inspect", "--format", "{{.Labels}}", NETWORK, check=False).stdout


def ensure_ssh_key(state: LocalState) -> Path:
    key = state.ssh_key
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "gdx-local-platform", "-f", str(key)],
                       check=True, capture_output=True)  # fmt: skip
    return key


def start(departments: Iterable[Department], state: LocalState, progress: Progress = print) -> list[Department]:
    """Boot each department's node (those not running yet) and let the demo key in over SSH.
    Returns the nodes that were started fresh (they need provisioning)."""
    key = ensure_ssh_key(state).with_suffix(".pub").read_bytes()
    fresh = []
    for dept in departments:
        if podman("container", "exists", dept.host, check=False).returncode == 0:
            podman("start", dept.host)
            continue
        cache = APT_CACHE / dept.host
        cache.mkdir(parents=True, exist_ok=True)
        podman(
            "run", "-d", "--name", dept.host, "--hostname", dept.host, "--label", LABEL,
            "--network", NETWORK, "--ip", dept.address,
            "--systemd=always", "--cap-add=NET_ADMIN",  # NET_ADMIN: the firewall role loads nftables rules
            "-v", f"{cache}:/var/cache/apt/archives",  # one cache per node: apt's lock does not work across
            BASE_IMAGE, "/sbin/init",
        )  # fmt: skip
        fresh.append(dept)
    for dept in fresh:
        _authorise(dept, key)
        _wait_ssh(dept)
        progress(f"node {dept.host} booted at {dept.address} (systemd, SSH)")
    return fresh


def _authorise(dept: Department, public_key: bytes) -> None:
    deadline = time.monotonic() + 60
    while True:
        done = subprocess.run(
            ["podman", "exec", "-i", dept.host, "sh", "-c",
             "mkdir -p -m 700 /root/.ssh && cat > /root/.ssh/authorized_keys && chmod 600 /root/.ssh/authorized_keys"],
            input=public_key, capture_output=True, check=False,
        )  # fmt: skip
        if done.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise NodeError(f"could not place the SSH key in {dept.host}: {done.stderr.decode(errors='replace')}")
        time.sleep(0.5)


def _wait_ssh(dept: Department, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((dept.address, 22), timeout=2) as conn:
                if conn.recv(4).startswith(b"SSH-"):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise NodeError(f"{dept.host} does not answer SSH at {dept.address}:22 after {timeout:.0f} s; "
                            f"see `podman exec {dept.host} systemctl status ssh`")  # fmt: skip
        time.sleep(0.5)


def exec_in(host: str, *command: str, check: bool = True) -> str:
    done = podman("exec", host, *command, check=check)
    return done.stdout


def set_link(dept: Department, up: bool) -> None:
    """Cut a node off its network or put it back (the e2e test's outage): the link inside the container."""
    exec_in(dept.host, "ip", "link", "set", "eth0", "up" if up else "down")
    if up:
        exec_in(dept.host, "ip", "route", "replace", "default", "via", GATEWAY)


def remove_all(*, purge: bool = False) -> list[str]:
    """Every container and the network make up labelled; with ``purge``, the nodes' package caches too."""
    names = podman("ps", "-a", "--filter", f"label={LABEL}", "--format", "{{.Names}}").stdout.split()
    if names and podman("rm", "-f", "-t", "5", *names, check=False).returncode != 0:
        # podman 4.3 can lose the race with a container that stops by itself while it sends SIGKILL
        # ("container state improper: stopped"); the container is stopped then, and goes the second time.
        left = podman("ps", "-a", "--filter", f"label={LABEL}", "--format", "{{.Names}}").stdout.split()
        if left:
            podman("rm", "-f", "-t", "5", *left)
    if podman("network", "exists", NETWORK, check=False).returncode == 0 and LABEL in _network_labels():
        podman("network", "rm", NETWORK)
    if purge and APT_CACHE.exists():
        shutil.rmtree(APT_CACHE)
    return names
