"""What the monitoring agent watches and how: the targets come from the inventory that
Ansible provisions the nodes with, so a department added there is watched on the next start."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from gdx.inventory import Inventory, load_inventory


class SettingsError(Exception):
    """The monitor cannot start; the message says what to fix."""


@dataclass(frozen=True)
class Target:
    """One department's front-end node."""

    department: str
    name: str
    jurisdiction: str
    host: str
    address: str
    port: int
    publishes: tuple[str, ...]
    subscribes: tuple[str, ...]


@dataclass(frozen=True)
class Settings:
    targets: tuple[Target, ...]
    exchange_url: str
    ca: Path
    cert: Path
    key: Path
    interval_s: float = 15.0
    probe_timeout_s: float = 5.0
    # A heartbeat arrives every heartbeat_interval_s when a hop works; one that has not
    # advanced for stall_after_s means the hop is stopped, not idle.
    heartbeat_interval_s: float = 5.0
    stall_after_s: float = 30.0
    max_concurrent_probes: int = 256
    reconcile_interval_s: float = 300.0
    reconcile_ranges: int = 64
    reconcile_rows_per_s: float = 20_000.0
    inventory: Path | None = None  # re-read on SIGHUP


def targets_of(inventory: Inventory) -> tuple[Target, ...]:
    return tuple(
        Target(
            department=node.department_id,
            name=node.department_name,
            jurisdiction=node.jurisdiction,
            host=node.host,
            address=node.address,
            port=node.agent_port,
            publishes=tuple(p.resource for p in node.publishes),
            subscribes=tuple(s.resource for s in node.subscribes),
        )
        for node in inventory.nodes
    )


def from_inventory(
    path: Path, *, identity: str, exchange_url: str | None = None, pki_dir: Path | None = None, **tuning: Any
) -> Settings:
    """Targets, exchange URL and certificates from the inventory; the monitor's own client
    certificate (an operator's) is IDENTITY.crt/.key in the inventory's gdx_pki_dir."""
    inventory = load_inventory(path, require_secrets=False)
    pki = pki_dir or inventory.pki_dir
    if pki is None:
        raise SettingsError(f"{path}: all.vars.gdx_pki_dir is not set and --pki-dir was not given")
    url = exchange_url or inventory.exchange_url
    if not url:
        raise SettingsError(f"{path}: all.vars.gdx_exchange_url is not set and --exchange-url was not given")
    ca, cert, key = pki / "ca.crt", pki / f"{identity}.crt", pki / f"{identity}.key"
    for needed, hint in ((ca, "gdx ca init"), (cert, f"gdx ca issue {identity} --role operator"), (key, None)):
        if not needed.is_file():
            raise SettingsError(f"{needed}: not found" + (f"; create it with `{hint} --dir {pki}`" if hint else ""))
    return Settings(
        targets=targets_of(inventory),
        exchange_url=url.rstrip("/"),
        ca=ca,
        cert=cert,
        key=key,
        inventory=path,
        **tuning,
    )


def reloaded(settings: Settings) -> Settings:
    """The same settings with the targets of the inventory as it is now."""
    if settings.inventory is None:
        return settings
    return replace(settings, targets=targets_of(load_inventory(settings.inventory, require_secrets=False)))
