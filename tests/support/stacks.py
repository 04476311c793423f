"""What rendering the Pulumi program's stacks needs in tests: a platform PKI with the central
identities, the example inventory, and secret settings with characters that need quoting."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from gdx.pki import Role, init_ca, issue

if TYPE_CHECKING:
    from infra.render import Rendering

ROOT = Path(__file__).resolve().parents[2]
INVENTORY = ROOT / "playbooks" / "inventory.example.yml"
STACKS = ("local", "dev", "prod")
SECRETS = {"databasePassword": "pa ss/wörd@:%", "databaseUrl": "postgresql://gdx:x@pg.rds.zjg.gov.cn:5432/gdx"}


def make_central_pki(directory: Path) -> Path:
    """The CA and the identities the central stack mounts: exchange (server), ingress, monitor, prometheus."""
    init_ca(directory)
    issue(directory, "exchange", server_names=["gdx-exchange.gdx.svc", "exchange.zjg.gov.cn", "localhost", "127.0.0.1"])
    issue(directory, "ingress", role=Role.INGRESS)
    issue(directory, "monitor", role=Role.OPERATOR)
    issue(directory, "prometheus", role=Role.OPERATOR)
    return directory


def render_stacks(pki: Path) -> dict[str, Rendering]:
    from infra.render import render

    return {stack: render(stack, pki_dir=pki, inventory=INVENTORY, secrets=SECRETS) for stack in STACKS}
