"""Everything `make up` makes lives under build/local (kept out of the repository): the demo PKI,
the generated inventory, the passwords, the rendered manifests, Prometheus' data. Made once and
reused, so a second `make up` is fast and the database's password still matches its volume."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from gdx.pki import Role, init_ca, issue
from local_platform.topology import DEPARTMENTS, GATEWAY

ROOT = Path(__file__).resolve().parent.parent
STATE = ROOT / "build" / "local"
# The exchange's names: in the cluster, on this machine, and as the nodes reach it (the network's gateway).
SERVER_NAMES = ["gdx-exchange.gdx.svc", "localhost", "127.0.0.1", GATEWAY]


@dataclass(frozen=True)
class LocalState:
    root: Path = STATE

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def inventory(self) -> Path:
        return self.root / "inventory.yml"

    @property
    def manifests(self) -> Path:
        return self.root / "manifests"

    @property
    def podman(self) -> Path:
        return self.root / "podman"

    @property
    def prometheus(self) -> Path:
        return self.root / "prometheus"

    @property
    def ssh_key(self) -> Path:
        return self.root / "ssh" / "id_ed25519"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def secret_file(self, name: str) -> Path:
        self.secret(name)
        return self.root / "secrets" / name

    def secret(self, name: str) -> str:
        """A generated secret (database password, vault password), made on first use, mode 0600."""
        path = self.root / "secrets" / name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            path.write_text(secrets.token_urlsafe(24), encoding="ascii")
            path.chmod(0o600)
        return path.read_text(encoding="ascii").strip()

    def ensure_pki(self) -> list[str]:
        """The platform CA and every identity the local platform uses; returns what was made."""
        made = []
        if not (self.pki / "ca.crt").exists():
            init_ca(self.pki, common_name="GDX Local Platform CA")
            made.append("ca")
        wanted: dict[str, tuple[Role, list[str] | None]] = {
            "exchange": (Role.DEPARTMENT, SERVER_NAMES),
            "ingress": (Role.INGRESS, None),
            "monitor": (Role.OPERATOR, None),
            "prometheus": (Role.OPERATOR, None),
            **{d.id: (Role.DEPARTMENT, None) for d in DEPARTMENTS},
        }
        for name, (role, servers) in wanted.items():
            if not (self.pki / f"{name}.crt").exists():
                issue(self.pki, name, role=role, server_names=servers)
                made.append(name)
        return made
