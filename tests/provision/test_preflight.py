"""Every playbook checks the inventory first and touches no host when it is bad."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from gdx.pki import init_ca, issue
from tests.support.provision import PLAYBOOKS, tool_env

BAD = """\
all:
  vars:
    gdx_exchange_url: https://exchange.example.gov.cn:8443
    gdx_pki_dir: pki
  children:
    gdx_front_end_nodes:
      hosts:
        fe-a:
          ansible_host: 192.0.2.10
          gdx_department: {id: zjg-gaj, name: 张家港市公安局, jurisdiction: zhangjiagang}
          gdx_business_db: {kind: postgresql, host: 10.1.0.5, port: 5432, name: hukou, user: r, password: hunter2}
        fe-b:
          ansible_host: 192.0.2.10
          gdx_department: {id: zjg-gaj, name: 张家港市公安局, jurisdiction: zhangjigang}
        fe-c:
          ansible_host: 192.0.2.12
          gdx_department: {id: zjg-wjw, name: 张家港市卫生健康委员会, jurisdiction: zhangjiagang}
"""


@pytest.mark.parametrize("playbook", ["site.yml", "upgrade.yml", "rotate-certs.yml", "decommission.yml"])
def test_a_bad_inventory_stops_every_playbook_before_any_host(tmp_path: Path, playbook: str) -> None:
    init_ca(tmp_path / "pki")
    issue(tmp_path / "pki", "zjg-gaj")  # zjg-wjw has no certificate
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(BAD, encoding="utf-8")
    done = subprocess.run(
        ["ansible-playbook", "-i", str(inventory), str(PLAYBOOKS / playbook)],
        cwd=PLAYBOOKS,
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0
    # What the technician needs: every bad entry, by its place in the file, with the fix.
    assert "fe-a.gdx_business_db.password: stored in plain text" in output
    assert "unknown jurisdiction 'zhangjigang'" in output
    assert "department 'zjg-gaj' is listed on 2 hosts (fe-a, fe-b)" in output
    assert "address '192.0.2.10' is used by 2 hosts" in output
    assert "certificate of 'zjg-wjw': cannot read" in output
    assert "gdx ca issue zjg-wjw" in output
    # No host was contacted: the plays after the check never started.
    assert "fe-a" not in done.stdout.split("PLAY RECAP")[-1]
    assert "UNREACHABLE" not in output
    assert "Gathering Facts" not in output
