"""A platform PKI and the example inventory for rendering the stacks, made once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from gdx.pki import Role, init_ca, issue
from infra.render import Rendering, render

ROOT = Path(__file__).resolve().parents[2]
INVENTORY = ROOT / "playbooks" / "inventory.example.yml"
STACKS = ("local", "dev", "prod")
SECRETS = {"databasePassword": "pa ss/wörd@:%", "databaseUrl": "postgresql://gdx:x@pg.rds.zjg.gov.cn:5432/gdx"}


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("pki")
    init_ca(directory)
    issue(directory, "exchange", server_names=["gdx-exchange.gdx.svc", "exchange.zjg.gov.cn", "localhost", "127.0.0.1"])
    issue(directory, "ingress", role=Role.INGRESS)
    issue(directory, "monitor", role=Role.OPERATOR)
    issue(directory, "prometheus", role=Role.OPERATOR)
    return directory


@pytest.fixture(scope="session")
def rendered(pki: Path) -> dict[str, Rendering]:
    return {stack: render(stack, pki_dir=pki, inventory=INVENTORY, secrets=SECRETS) for stack in STACKS}
