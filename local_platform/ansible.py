"""Running the project's playbooks from this virtualenv: the environment Ansible needs, values
encrypted as `ansible-vault encrypt_string` prints them, and a run with its log kept."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from ansible.constants import DEFAULT_VAULT_ID_MATCH  # type: ignore[import-untyped]
from ansible.parsing.vault import VaultLib, VaultSecret  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parent.parent
PLAYBOOKS = ROOT / "playbooks"
BIN = Path(sys.executable).parent


def tool_env(**extra: str) -> dict[str, str]:
    """The environment for ansible-playbook and molecule: this virtualenv's tools first."""
    env = dict(os.environ)
    env["PATH"] = f"{BIN}:{env.get('PATH', '')}"
    env["GDX_CLI"] = str(BIN / "gdx")
    env["ANSIBLE_FORCE_COLOR"] = "false"
    env["PY_COLORS"] = "0"
    env.update(extra)
    return env


def vault_block(secret: str, password: str, indent: int) -> str:
    """An inventory value as `ansible-vault encrypt_string` prints it, for a key ``indent`` spaces deep."""
    vault = VaultLib([(DEFAULT_VAULT_ID_MATCH, VaultSecret(password.encode()))])
    ciphertext = vault.encrypt(secret).decode()
    pad = " " * (indent + 2)
    return "!vault |\n" + "".join(f"{pad}{line}\n" for line in ciphertext.splitlines())


def run_playbook(playbook: str, inventory: Path, log: Path, *, env: dict[str, str],
                 progress: Callable[[str], None] = print, timeout: float = 1800) -> str:  # fmt: skip
    """ansible-playbook with the whole output in ``log``; progress names each role as the play reaches it.
    Raises PlaybookError with the output's tail when the run fails."""
    log.parent.mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()
    with log.open("w", encoding="utf-8") as out:
        process = subprocess.Popen(
            [str(BIN / "ansible-playbook"), "-i", str(inventory), playbook],
            cwd=PLAYBOOKS, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        assert process.stdout is not None
        for line in process.stdout:
            out.write(line)
            role = re.match(r"TASK \[(\w+) : ", line)
            if role and role.group(1) not in seen:
                seen.add(role.group(1))
                progress(f"{playbook}: {role.group(1)}")
        process.wait(timeout=timeout)
    text = log.read_text(encoding="utf-8", errors="replace")
    if process.returncode != 0:
        tail = "\n".join(text.splitlines()[-60:])
        raise PlaybookError(f"{playbook} failed (exit {process.returncode}; full log: {log}):\n{tail}")
    return text


class PlaybookError(Exception):
    pass
