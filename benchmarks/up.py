"""`make bench-up`: how long `make up` takes on a machine with nothing built, and again after `make down`.

Cold: the local platform down, the nodes' package caches dropped and every image `make up` builds
removed (the Debian base, the exchange+monitor image, PostgreSQL, MariaDB), then `make up` — which
builds them all, renders and plays the local stack, boots and provisions three nodes (packages from
Debian's mirror), seeds the registers and waits for the consumer. Warm: `make down`, then `make up`
again (images and package caches kept, as `make down` keeps them). Each `make up` output goes to a log.

The last line is JSON: up_cold_s, up_warm_s, down_s.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gdx import __version__

ROOT = Path(__file__).resolve().parent.parent
IMAGES = [
    "localhost/gdx-debian-systemd:bookworm",
    f"localhost/gdx:{__version__}",
    "localhost/gdx-postgres:15",
    "localhost/gdx-mariadb:10.11",
]


def make(target: str, log: Path, *extra: str) -> float:
    started = time.monotonic()
    with log.open("w") as out:
        done = subprocess.run(["make", target, *extra], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, check=False)
    elapsed = time.monotonic() - started
    if done.returncode != 0:
        sys.exit(f"bench-up: make {target} failed (log: {log}):\n" + "\n".join(log.read_text().splitlines()[-30:]))
    return elapsed


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="gdx-bench-up-"))
    print("bench-up: make down PURGE=1, removing the images ...", flush=True)
    make("down", work / "down-0.log", "PURGE=1")
    subprocess.run(["podman", "rmi", "-f", *IMAGES], capture_output=True, check=False)
    print("bench-up: cold make up (builds every image, packages from the mirror) ...", flush=True)
    cold = make("up", work / "up-cold.log")
    print(f"bench-up: cold {cold:.0f} s; make down ...", flush=True)
    down = make("down", work / "down-1.log")
    print(f"bench-up: down {down:.0f} s; warm make up ...", flush=True)
    warm = make("up", work / "up-warm.log")
    print(f"bench-up: warm {warm:.0f} s (the platform stays up: make down removes it)", flush=True)
    print(f"bench-up: machine {platform.machine()}, {os.cpu_count()} cores, {platform.node()}; logs in {work}")
    print(json.dumps({"up_cold_s": round(cold, 1), "up_warm_s": round(warm, 1), "down_s": round(down, 1)}))


if __name__ == "__main__":
    main()
