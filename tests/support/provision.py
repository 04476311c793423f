"""What the provisioning tests share: the podman network's gateway (where the test's exchange and
business database listen for the containers), vault-encrypted inventory values, release bundles,
and running Ansible or molecule with their output kept in a log."""

from __future__ import annotations

import difflib
import json
import os
import subprocess
import sys
from pathlib import Path

from local_platform.ansible import PLAYBOOKS, ROOT, tool_env, vault_block

__all__ = ["PLAYBOOKS", "ROOT", "tool_env", "vault_block"]


def podman_gateway() -> str:
    """The host's address on podman's default network, as containers see it."""
    if os.environ.get("GDX_TEST_GATEWAY"):
        return os.environ["GDX_TEST_GATEWAY"]
    out = subprocess.run(["podman", "network", "inspect", "podman"], capture_output=True, text=True, check=True).stdout
    return str(json.loads(out)[0]["subnets"][0]["gateway"])


def build_bundle(out: Path, version: str | None = None, patch: Path | None = None) -> Path:
    cmd = [sys.executable, str(ROOT / "scripts" / "build_node_bundle.py"), "--out", str(out)]
    if version:
        cmd += ["--version", version]
    if patch:
        cmd += ["--patch", str(patch)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    bundles = sorted(out.glob(f"gdx-node-{version or ''}*.tar.gz"))
    return bundles[-1]


def broken_agent_patch(path: Path) -> Path:
    """A patch that makes `gdx node run` exit at once: a release that installs and passes the config
    check but never becomes healthy, which the upgrade must roll back."""
    # The process's entry point (front_end_node/main.py's run, which `gdx node run` calls).
    source = (ROOT / "front_end_node" / "main.py").read_text(encoding="utf-8").splitlines(keepends=True)
    broken = [
        *source,
        "\n",
        "\n",
        "async def run(cfg: NodeConfig) -> int:  # type: ignore[no-redef]\n",
        '    raise SystemExit("this release is broken on purpose (upgrade test)")\n',
    ]
    diff = difflib.unified_diff(source, broken, "a/front_end_node/main.py", "b/front_end_node/main.py")
    path.write_text("".join(diff), encoding="utf-8")
    return path


def run_logged(cmd: list[str], log: Path, *, cwd: Path, env: dict[str, str], timeout: float) -> str:
    """Run, keep the whole output in ``log``, and fail with its tail when the command fails."""
    with log.open("w", encoding="utf-8") as out:
        done = subprocess.run(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=timeout, check=False)
    text = log.read_text(encoding="utf-8", errors="replace")
    if done.returncode != 0:
        tail = "\n".join(text.splitlines()[-150:])
        raise AssertionError(f"{' '.join(cmd)} exited {done.returncode} (full log: {log}):\n{tail}")
    return text
