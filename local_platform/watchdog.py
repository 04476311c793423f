"""Keeps what `make up` runs running, as systemd or a kubelet would: every two seconds, a central pod
that stopped is started again, and so is a front-end node or business database container.

Why it is needed: podman 4.3 gives the pods of `podman kube play` the exit policy "stop", so when
a pod's only container stops, even to restart (`podman restart gdx-db-pod-0-postgres`), the pod's
infra container stops with it and the container cannot start again: the pod stays down for good.
`podman pod start` brings it back; the exchange then reconnects within seconds.

    python -m local_platform.watchdog --state build/local

Started in the background by `make up` (pid in build/local/watchdog/watchdog.pid, a line in its log
for each restart), stopped first by `make down`, so that it never restarts what is being removed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from local_platform import processes
from local_platform.podman import podman, read_phases
from local_platform.state import LocalState
from local_platform.topology import DEPARTMENTS

INTERVAL_S = 2.0
# The phases whose pods serve for good (the migration pod runs once and exits).
SERVING = ("database", "services")


def pid_file(state: LocalState) -> Path:
    return state.root / "watchdog" / "watchdog.pid"


def start(state: LocalState) -> None:
    processes.stop(pid_file(state))
    processes.spawn(
        pid_file(state),
        state.root / "watchdog" / "watchdog.log",
        [sys.executable, "-m", "local_platform.watchdog", "--state", str(state.root)],
    )


def stop(state: LocalState) -> None:
    processes.stop(pid_file(state))


def watched(state: LocalState) -> tuple[list[str], list[str]]:
    """(pods, containers) that `make up` runs and that must keep running."""
    pods = []
    if state.podman.exists():
        for phase, _ in read_phases(state.podman):
            if phase.name in SERVING:
                pods += [f"{workload['metadata']['name']}-pod-0" for workload in phase.workloads]
    containers = [d.host for d in DEPARTMENTS] + [d.business_db.container for d in DEPARTMENTS if d.business_db]
    return pods, containers


def check_once(pods: list[str], containers: list[str], report: Callable[[str], None] = print) -> list[str]:
    """Start again whatever stopped, reporting each as it is started; the names started."""
    started = []
    for kind, names, running, command in (
        ("pod", pods, "Running", ["pod", "inspect", "--format", "{{.State}}"]),
        ("container", containers, "true", ["inspect", "--format", "{{.State.Running}}"]),
    ):
        for name in names:
            if _state([*command, name]) in {running, None}:
                continue
            if podman(*(["pod", "start"] if kind == "pod" else ["start"]), name, check=False).returncode == 0:
                started.append(name)
                report(f"{dt.datetime.now().astimezone():%Y-%m-%d %H:%M:%S} {name} had stopped: started again")
    return started


def _state(args: list[str]) -> str | None:
    """What podman says of the object, None when it does not exist (removed on purpose)."""
    done = podman(*args, check=False)
    return done.stdout.strip() if done.returncode == 0 else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Keep the local platform's pods and containers running.")
    parser.add_argument("--state", type=Path, default=LocalState().root, help="make up's state folder")
    args = parser.parse_args(argv)
    state = LocalState(args.state)
    running = True

    def halt(_signum: int, _frame: FrameType | None) -> None:
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, halt)
    signal.signal(signal.SIGINT, halt)
    pods, containers = watched(state)
    print(f"watching {len(pods)} pods and {len(containers)} containers", flush=True)
    while running:
        check_once(pods, containers, report=lambda line: print(line, flush=True))
        time.sleep(INTERVAL_S)
    return 0


if __name__ == "__main__":
    sys.exit(main())
