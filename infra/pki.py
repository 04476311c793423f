"""The certificates the cluster needs, read from the platform's PKI folder (`gdx ca`).

Keys enter the program as Pulumi secrets only, so they are encrypted in the state and masked in
every preview."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pulumi

# name -> how to make it; the exchange's server certificate names the Service and the ingress host.
IDENTITIES = {
    "exchange": "gdx ca issue exchange --server gdx-exchange.NAMESPACE.svc --server INGRESS_HOST --server localhost "
    "--server 127.0.0.1",
    "ingress": "gdx ca issue ingress --role ingress",
    "monitor": "gdx ca issue monitor --role operator",
    "prometheus": "gdx ca issue prometheus --role operator",
}


class PkiError(Exception):
    pass


@dataclass(frozen=True)
class Pair:
    cert: str
    key: pulumi.Output[str]


@dataclass(frozen=True)
class Pki:
    ca: str
    pairs: dict[str, Pair]

    def __getitem__(self, name: str) -> Pair:
        return self.pairs[name]


def load(directory: Path) -> Pki:
    missing = []
    if not (directory / "ca.crt").exists():
        missing.append(f"{directory / 'ca.crt'} (run `gdx ca init --dir {directory}`)")
    for name, command in IDENTITIES.items():
        for suffix in ("crt", "key"):
            if not (directory / f"{name}.{suffix}").exists():
                missing.append(f"{directory / name}.{suffix} (run `{command} --dir {directory}`)")
                break
    if missing:
        raise PkiError("the PKI folder lacks: " + "; ".join(missing))
    return Pki(
        ca=(directory / "ca.crt").read_text(encoding="ascii"),
        pairs={
            name: Pair(
                cert=(directory / f"{name}.crt").read_text(encoding="ascii"),
                key=pulumi.Output.secret((directory / f"{name}.key").read_text(encoding="ascii")),
            )
            for name in IDENTITIES
        },
    )
