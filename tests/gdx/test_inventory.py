"""The one inventory: validation names every bad entry."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from gdx.cli import app
from gdx.inventory import BUILTIN_JURISDICTIONS, InventoryError, load_inventory
from gdx.pki import init_ca, issue

GOOD = """\
all:
  vars:
    gdx_exchange_url: https://exchange.example.gov.cn:8443
    gdx_pki_dir: pki
    gdx_jurisdictions:
      hebei: {name: 河北省, reply_working_days: 10, explanation_days: 15, decision_days: 30}
  children:
    gdx_front_end_nodes:
      hosts:
        fe-gaj:
          ansible_host: 192.0.2.10
          gdx_department: {id: zjg-gaj, name: 张家港市公安局, jurisdiction: zhangjiagang}
          gdx_business_db:
            kind: postgresql
            host: 10.1.0.5
            port: 5432
            name: hukou
            user: gdx_reader
            password: !vault |
              $ANSIBLE_VAULT;1.1;AES256
              6162636465
          gdx_publishes:
            - {resource: zjg-gaj.population, table: public.population, change_column: updated_at, lookback_s: 30}
        fe-nx:
          ansible_host: 192.0.2.11
          gdx_department: {id: nx-gat, name: 宁夏回族自治区公安厅, jurisdiction: ningxia}
        fe-hb:
          ansible_host: 192.0.2.12
          gdx_department: {id: hb-gat, name: 河北省公安厅, jurisdiction: hebei}
"""

BAD = """\
all:
  children:
    gdx_front_end_nodes:
      hosts:
        fe-a:
          ansible_host: 192.0.2.10
          gdx_department: {id: zjg-gaj, name: A, jurisdiction: ningxai}
          gdx_business_db: {kind: postgresql, host: h, port: 5432, name: d, user: u, password: hunter2}
        fe-b:
          ansible_host: 192.0.2.10
          gdx_department: {id: zjg-gaj, name: B, jurisdiction: zhangjiagang}
          gdx_business_db: {kind: oracle, host: h, port: 5432, name: d, user: u}
        fe-c:
          ansible_host: 192.0.2.12
          gdx_department: {id: "Bad Id", name: C, jurisdiction: zhangjiagang, colour: red}
          gdx_publishes:
            - {resource: zjg-gaj.population, table: population, lookbak_s: 30}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "inventory.yml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def pki(tmp_path: Path) -> Path:
    """The CA and a certificate for each department of GOOD, beside the inventory."""
    directory = tmp_path / "pki"
    init_ca(directory)
    for dept in ("zjg-gaj", "nx-gat", "hb-gat"):
        issue(directory, dept)
    return directory


def test_a_good_inventory_loads_with_the_deadlines_of_each_jurisdiction(tmp_path: Path) -> None:
    inventory = load_inventory(write(tmp_path, GOOD))
    rules = {n.department_id: inventory.jurisdictions[n.jurisdiction] for n in inventory.nodes}
    # Built in, as the seeds say: ZJG Art. 20 and 12; Ningxia Art. 11 and 8.
    assert (rules["zjg-gaj"].reply_working_days, rules["zjg-gaj"].catalog_update_working_days) == (5, 3)
    assert (rules["nx-gat"].reply_working_days, rules["nx-gat"].catalog_update_working_days) == (10, 15)
    # The inventory's entry replaces the built-in one whole.
    hebei = rules["hb-gat"]
    assert (hebei.reply_working_days, hebei.explanation_days, hebei.decision_days) == (10, 15, 30)
    assert hebei.negotiation_working_days is None
    # A publication takes every setting the agent's config does: node.yml gets it as it is.
    assert inventory.nodes[0].publishes[0].lookback_s == 30


def test_every_bad_entry_is_named_at_once(tmp_path: Path) -> None:
    with pytest.raises(InventoryError) as caught:
        load_inventory(write(tmp_path, BAD))
    text = "\n".join(caught.value.problems)
    assert "fe-a.gdx_department.jurisdiction: unknown jurisdiction 'ningxai'" in text
    assert "fe-a.gdx_business_db.password: stored in plain text" in text
    assert "fe-b.gdx_business_db.kind" in text
    assert "fe-c.gdx_department.id: 'Bad Id' is not allowed" in text
    assert "fe-c.gdx_department.colour: unknown setting" in text
    assert "fe-c.gdx_publishes.0.lookbak_s: unknown setting" in text
    assert "address '192.0.2.10' is used by 2 hosts" in text


def test_gdx_inventory_check_prints_the_problems_and_fails(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["inventory", "check", str(write(tmp_path, BAD))])
    assert result.exit_code == 1
    assert "unknown jurisdiction 'ningxai'" in result.output
    ok = CliRunner().invoke(app, ["inventory", "check", str(write(tmp_path, GOOD))])
    assert ok.exit_code == 0, ok.output
    assert "nx-gat" in ok.output


def test_duplicate_departments_are_named(tmp_path: Path) -> None:
    text = GOOD.replace("id: nx-gat", "id: zjg-gaj")
    with pytest.raises(InventoryError, match="department 'zjg-gaj' is listed on 2 hosts"):
        load_inventory(write(tmp_path, text))


def test_not_yaml_is_said_plainly(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match="not valid YAML"):
        load_inventory(write(tmp_path, "all: [unclosed"))


def test_missing_unreadable_or_foreign_certificates_are_named(tmp_path: Path, pki: Path) -> None:
    (pki / "nx-gat.crt").unlink()
    (pki / "hb-gat.crt").write_bytes((pki / "zjg-gaj.crt").read_bytes())
    (pki / "zjg-gaj.key").write_text("garbage", encoding="utf-8")
    with pytest.raises(InventoryError) as caught:
        load_inventory(write(tmp_path, GOOD))
    problems = caught.value.problems
    assert any("certificate of 'nx-gat': cannot read" in p and "gdx ca issue nx-gat" in p for p in problems)
    assert any("certificate of 'hb-gat'" in p and "names 'zjg-gaj'" in p for p in problems)
    assert any("key of 'zjg-gaj'" in p and "not an unencrypted PEM private key" in p for p in problems)
    assert len(problems) == 3


def test_a_key_of_another_certificate_or_another_ca_is_refused(tmp_path: Path, pki: Path) -> None:
    (pki / "nx-gat.key").write_bytes((pki / "hb-gat.key").read_bytes())
    other = tmp_path / "other-ca"
    init_ca(other)
    issue(other, "hb-gat")
    (pki / "hb-gat.crt").write_bytes((other / "hb-gat.crt").read_bytes())
    with pytest.raises(InventoryError) as caught:
        load_inventory(write(tmp_path, GOOD))
    text = "\n".join(caught.value.problems)
    assert "key of 'nx-gat'" in text
    assert "does not belong to" in text
    assert "certificate of 'hb-gat': not issued by the platform CA" in text


def test_a_vault_encrypted_key_is_accepted_unopened(tmp_path: Path, pki: Path) -> None:
    (pki / "zjg-gaj.key").write_text("$ANSIBLE_VAULT;1.1;AES256\n6162\n", encoding="utf-8")
    assert len(load_inventory(write(tmp_path, GOOD)).nodes) == 3


def test_no_pki_dir_or_no_ca_says_how_to_make_one(tmp_path: Path, pki: Path) -> None:
    with pytest.raises(InventoryError, match="gdx_pki_dir: missing"):
        load_inventory(write(tmp_path, GOOD.replace("    gdx_pki_dir: pki\n", "")))
    (pki / "ca.crt").unlink()
    with pytest.raises(InventoryError, match="gdx ca init --dir"):
        load_inventory(write(tmp_path, GOOD))
    # The exchange's registry needs neither secrets nor certificates.
    assert len(load_inventory(write(tmp_path, GOOD), require_secrets=False).nodes) == 3


def test_the_built_in_deadlines_are_those_of_the_seed_texts() -> None:
    # Wushen Art. 21 (5 working days to reply, 5 to negotiate) and Art. 7 (15 for the catalog);
    # Hebei Art. 13 (no reply deadline; 15 days to explain, 30 to decide); Suqian's text sets none.
    wushen, hebei, suqian = (BUILTIN_JURISDICTIONS[j] for j in ("wushen", "hebei", "suqian"))
    assert (wushen.reply_working_days, wushen.negotiation_working_days) == (5, 5)
    assert wushen.catalog_update_working_days == 15
    assert (hebei.reply_working_days, hebei.explanation_days, hebei.decision_days) == (None, 15, 30)
    assert suqian.model_dump(exclude={"name"}) == dict.fromkeys(suqian.model_dump(exclude={"name"}))
