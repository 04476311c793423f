"""Each role's own molecule scenario (roles/*/molecule/default): create a systemd Debian host,
converge, converge again with changed=0, run the testinfra checks, destroy."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.provision import PLAYBOOKS, podman_gateway, run_logged, tool_env

ROLES = sorted(p.parent.parent.parent.name for p in PLAYBOOKS.glob("roles/*/molecule/default/molecule.yml"))


@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.parametrize("role", ROLES)
def test_role_scenario(role: str, tmp_path: Path) -> None:
    role_dir = PLAYBOOKS / "roles" / role
    env = tool_env(GDX_TEST_GATEWAY=podman_gateway())
    run_logged(["molecule", "reset"], tmp_path / "reset.log", cwd=role_dir, env=env, timeout=120)
    output = run_logged(["molecule", "test"], tmp_path / "molecule.log", cwd=role_dir, env=env, timeout=1100)
    assert "idempotence: Executed: Successful" in output
    assert "verify: Executed: Successful" in output


def test_every_role_has_a_scenario() -> None:
    roles = sorted(p.name for p in (PLAYBOOKS / "roles").iterdir() if p.is_dir())
    missing = [r for r in roles if r not in ROLES and r != "gdx_agent"]
    # gdx_agent needs a central exchange and a business database: the multi-node scenario
    # (playbooks/molecule/site, tests/provision/test_site.py) is its scenario.
    assert not missing, f"roles without a molecule scenario: {missing}"
