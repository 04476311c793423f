"""`make bench-provision`: how long site.yml takes on a fresh front-end node, and a second run.

One Debian 12 systemd container from the project's base image, provisioned by the real site.yml
(base, front-end database, node_exporter, agent, firewall) over SSH with pipelining, as technicians
run it (the firewall lets SSH in from the admin network, which here is this machine). The node
subscribes to one resource and has no business database; its exchange address answers nothing, so
the agent runs "degraded", which is what a node provisioned before the exchange exists looks like.

The last line is JSON: site_first_run_s, site_rerun_s, site_rerun_changed.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gdx import __version__
from gdx.pki import init_ca, issue
from tests.support.provision import PLAYBOOKS, ROOT, podman_gateway, tool_env

NODE = "gdx-bench-node"
INVENTORY = """\
all:
  vars:
    gdx_exchange_url: https://{gateway}:9
    gdx_pki_dir: {pki}
    gdx_agent_bundle: {bundle}
    gdx_firewall_admin_networks: ["{gateway}/32"]
    gdx_firewall_monitoring_networks: ["{gateway}/32"]
    gdx_base_chrony_adjust_clock: false
  children:
    gdx_front_end_nodes:
      hosts:
        {node}:
          ansible_host: {address}
          ansible_user: root
          ansible_ssh_private_key_file: {key}
          ansible_ssh_common_args: -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
          gdx_department: {{id: zjg-wjw, name: 张家港市卫生健康委员会, jurisdiction: zhangjiagang}}
          gdx_subscribes:
            - {{resource: zjg-gaj.population, purpose: 城乡居民医保参保登记核验}}
"""


def run_site(inventory: Path, log: Path) -> tuple[float, int]:
    started = time.monotonic()
    with log.open("w") as out:
        done = subprocess.run(
            ["ansible-playbook", "-i", str(inventory), "site.yml"],
            cwd=PLAYBOOKS, env=tool_env(), stdout=out, stderr=subprocess.STDOUT, check=False,
        )  # fmt: skip
    elapsed = time.monotonic() - started
    text = log.read_text()
    if done.returncode != 0:
        sys.exit(f"bench-provision: site.yml failed (log: {log}):\n" + "\n".join(text.splitlines()[-40:]))
    changed = re.search(rf"^{NODE}\s+: ok=\d+\s+changed=(\d+)", text, re.M)
    return elapsed, int(changed.group(1)) if changed else -1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--keep",
        action="store_true",
        help=f"leave the node ({NODE}) running afterwards, to rerun site.yml on it by hand",
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gdx-bench-provision-"))
    bundle = ROOT / "dist" / f"gdx-node-{__version__}.tar.gz"
    if not bundle.exists():
        sys.exit(f"bench-provision: {bundle} is missing; run `make bundle`")
    init_ca(work / "pki")
    issue(work / "pki", "zjg-wjw")
    gateway = podman_gateway()
    key = work / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    subprocess.run(["podman", "rm", "-f", NODE], capture_output=True, check=False)
    subprocess.run(
        ["podman", "run", "-d", "--name", NODE, "--hostname", NODE, "--systemd=always", "--cap-add=NET_ADMIN",
         tool_env().get("GDX_BASE_IMAGE", "localhost/gdx-debian-systemd:bookworm"),
         "/sbin/init"],
        capture_output=True, check=True,
    )  # fmt: skip
    try:
        time.sleep(3)  # systemd reaches its default target
        subprocess.run(
            ["podman", "exec", "-i", NODE, "sh", "-c",
             "mkdir -p -m 700 /root/.ssh && cat > /root/.ssh/authorized_keys && chmod 600 /root/.ssh/authorized_keys"],
            input=key.with_suffix(".pub").read_bytes(), check=True,
        )  # fmt: skip
        address = subprocess.run(
            ["podman", "inspect", "-f", "{{.NetworkSettings.IPAddress}}", NODE],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        inventory = work / "inventory.yml"
        inventory.write_text(
            INVENTORY.format(gateway=gateway, pki=work / "pki", bundle=bundle, node=NODE, address=address, key=key)
        )
        print("bench-provision: first run of site.yml on a fresh node ...", flush=True)
        first_s, first_changed = run_site(inventory, work / "first.log")
        print(f"bench-provision: first run {first_s:.1f} s, {first_changed} changed; rerun ...", flush=True)
        rerun_s, rerun_changed = run_site(inventory, work / "rerun.log")
    finally:
        if not args.keep:
            subprocess.run(["podman", "rm", "-f", NODE], capture_output=True, check=False)
    print(f"bench-provision: machine {platform.machine()}, {platform.node()}; logs in {work}")
    if args.keep:
        print(f"bench-provision: {NODE} kept; rerun with: cd playbooks && ansible-playbook -i {inventory} site.yml")
    print(
        json.dumps(
            {
                "site_first_run_s": round(first_s, 1),
                "site_first_run_changed": first_changed,
                "site_rerun_s": round(rerun_s, 1),
                "site_rerun_changed": rerun_changed,
            }
        )
    )


if __name__ == "__main__":
    main()
