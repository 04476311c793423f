#!/usr/bin/env python3
"""Wait until the front-end agent answers /healthz with the expected version and status, or stop as
soon as it is plainly not starting: systemd has restarted it several times meanwhile (a release
that exits at start), instead of waiting out the whole timeout. Prints the last answer as JSON.

Run on the node by the gdx_agent role (ansible.builtin.script): it depends on nothing the release
brings, so a rollback to any release can wait with it too.
"""

from __future__ import annotations

import argparse
import json
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request


def restarts(unit: str) -> int:
    shown = subprocess.run(
        ["systemctl", "show", unit, "--property=NRestarts", "--value"], capture_output=True, text=True, check=False
    )
    return int(shown.stdout.strip() or 0)


def health(port: int) -> dict | None:
    # The agent serves its department's certificate, which names the department, not 127.0.0.1.
    context = ssl._create_unverified_context()  # noqa: S323 - a local health check of a known process
    try:
        with urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", context=context, timeout=5) as answer:
            return json.load(answer)
    except urllib.error.HTTPError as exc:  # 503: failing, with the same JSON body
        try:
            return json.load(exc)
        except ValueError:
            return None
    except (OSError, ValueError):
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--timeout", type=float, required=True)
    parser.add_argument("--require-ok", action="store_true", help="status ok, not only degraded")
    parser.add_argument("--unit", default="gdx-agent")
    parser.add_argument("--max-restarts", type=int, default=2)
    args = parser.parse_args()
    wanted = ("ok",) if args.require_ok else ("ok", "degraded")
    started, before = time.monotonic(), restarts(args.unit)
    last: dict | None = None
    while True:
        last = health(args.port)
        if last is not None and last.get("version") == args.version and last.get("status") in wanted:
            print(json.dumps(last))
            return 0
        restarted = restarts(args.unit) - before
        if restarted >= args.max_restarts:
            print(
                f"the agent exited and was restarted {restarted} times while starting: release {args.version} "
                f"does not run here (journalctl -u {args.unit} says why)",
                file=sys.stderr,
            )
            return 1
        if time.monotonic() - started > args.timeout:
            seen = "no answer" if last is None else f"version {last.get('version')}, status {last.get('status')}"
            print(
                f"the agent did not report version {args.version} {' or '.join(wanted)} within {args.timeout:g} s "
                f"(last: {seen})",
                file=sys.stderr,
            )
            return 1
        time.sleep(2)


if __name__ == "__main__":
    sys.exit(main())
