"""bench-infra: run the Pulumi program under Pulumi's mocks and render a stack's manifests.

Measured in a fresh interpreter, as `gdx render` runs: importing Pulumi and the program, declaring
every resource under the mocks, taking the manifests down, writing them; then, apart, the schema
validation and the policy rules that `gdx render` runs afterwards. Several rounds; the median counts.

    python -m benchmarks.infra_render --stack prod --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROUND = """
import time, json, sys
from pathlib import Path
started = time.perf_counter()
from infra.render import render, write
imported = time.perf_counter()
r = render(sys.argv[1], pki_dir=Path(sys.argv[2]), inventory=Path(sys.argv[3]),
           secrets={"databasePassword": "bench", "databaseUrl": "postgresql://bench@db/gdx"})
write(r, Path(sys.argv[4]))
rendered = time.perf_counter()
from infra.validate import validate
from infra.rules import check
report = validate(r.manifests)
problems = check(r.manifests)
checked = time.perf_counter()
print(json.dumps({"import_s": imported - started, "render_s": rendered - started,
                  "declare_and_write_s": rendered - imported, "check_s": checked - rendered,
                  "manifests": len(r.manifests), "invalid": len(report.problems), "violations": len(problems)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", default="prod")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    from gdx.pki import Role, init_ca, issue

    with tempfile.TemporaryDirectory(prefix="gdx-bench-infra-") as tmp:
        pki = Path(tmp) / "pki"
        init_ca(pki)
        issue(pki, "exchange", server_names=["gdx-exchange.gdx.svc"])
        issue(pki, "ingress", role=Role.INGRESS)
        issue(pki, "monitor", role=Role.OPERATOR)
        issue(pki, "prometheus", role=Role.OPERATOR)
        inventory = ROOT / "playbooks" / "inventory.example.yml"
        rounds = []
        for n in range(args.rounds):
            out = Path(tmp) / f"out{n}"
            done = subprocess.run(
                [sys.executable, "-c", ROUND, args.stack, str(pki), str(inventory), str(out)],
                capture_output=True, text=True, check=True, cwd=ROOT,
            )  # fmt: skip
            figures = json.loads(done.stdout.strip().splitlines()[-1])
            rounds.append(figures)
            print(
                f"round {n + 1}: render {figures['render_s']:.2f} s (imports {figures['import_s']:.2f} s, "
                f"declare+write {figures['declare_and_write_s']:.2f} s), schemas+rules {figures['check_s']:.2f} s, "
                f"{figures['manifests']} manifests",
                flush=True,
            )
    summary = {
        "stack": args.stack,
        "rounds": args.rounds,
        "manifests": rounds[0]["manifests"],
        "render_s": round(statistics.median(r["render_s"] for r in rounds), 3),
        "import_s": round(statistics.median(r["import_s"] for r in rounds), 3),
        "declare_and_write_s": round(statistics.median(r["declare_and_write_s"] for r in rounds), 3),
        "check_s": round(statistics.median(r["check_s"] for r in rounds), 3),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
