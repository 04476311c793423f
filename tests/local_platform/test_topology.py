"""The local platform's parts that need no containers: who shares what, the generated inventory
(the one file Ansible, the exchange and the monitor read), the catalog entries as the exchange's own
model takes them, and the row form the consumer's tables are compared in."""

from __future__ import annotations

import datetime as dt
import ipaddress

import pytest
from ansible.constants import DEFAULT_VAULT_ID_MATCH
from ansible.parsing.vault import VaultLib, VaultSecret

from gdx.inventory import central_view, load_inventory
from gdx.protocol import ResourceSpec
from local_platform import inventory
from local_platform.catalog import RESOURCES
from local_platform.checks import canonical, digest
from local_platform.state import SERVER_NAMES, LocalState
from local_platform.topology import DEPARTMENTS, GATEWAY, SUBNET, provider_of


def test_every_shared_resource_has_a_provider_a_catalog_entry_and_grantable_fields() -> None:
    for dept in DEPARTMENTS:
        for sub in dept.subscribes:
            spec = ResourceSpec.model_validate(RESOURCES[sub.resource])
            names = [f.name for f in spec.fields]
            assert provider_of(sub.resource).id != dept.id
            assert set(sub.approved) <= set(sub.requested) <= set(names)
            if sub.requested:
                assert spec.share_type.value == "conditional"
                assert spec.primary_key in sub.approved  # a grant without the key could not be applied
                assert set(sub.approved) < set(sub.requested)  # approved for some fields, as the issue asks
            else:
                assert spec.share_type.value == "unconditional"


def test_addresses_are_distinct_on_the_nodes_network_and_the_exchange_certificate_names_its_gateway() -> None:
    network = ipaddress.ip_network(SUBNET)
    addresses = [d.address for d in DEPARTMENTS] + [d.business_db.address for d in DEPARTMENTS if d.business_db]
    assert len(set(addresses)) == len(addresses)
    assert all(ipaddress.ip_address(a) in network for a in [*addresses, GATEWAY])
    assert GATEWAY not in addresses
    assert not network.overlaps(ipaddress.ip_network("10.88.0.0/15"))  # podman's own ranges
    assert GATEWAY in SERVER_NAMES


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> LocalState:
    state = LocalState(tmp_path_factory.mktemp("local"))
    state.ensure_pki()
    return state


def test_the_inventory_passes_gdx_checks_with_every_password_in_the_vault(state: LocalState) -> None:
    path = inventory.write(state, exchange_port=8443)
    loaded = load_inventory(path)  # require_secrets: what provisioning needs
    assert [n.department_id for n in loaded.nodes] == [d.id for d in DEPARTMENTS]
    assert loaded.exchange_url == f"https://{GATEWAY}:8443"
    vault = VaultLib([(DEFAULT_VAULT_ID_MATCH, VaultSecret(state.secret(inventory.VAULT_PASSWORD).encode()))])
    for node in loaded.nodes:
        dept = next(d for d in DEPARTMENTS if d.id == node.department_id)
        assert node.address == dept.address
        if dept.business_db is None:
            assert node.business_db is None
            continue
        assert node.business_db is not None
        plain = vault.decrypt(node.business_db.password.ciphertext).decode()
        assert plain == state.secret(f"{dept.business_db.container}-reader")
        assert plain not in path.read_text(encoding="utf-8")
    central = central_view(path)
    assert "gdx_business_db" not in central
    assert "ANSIBLE_VAULT" not in central


def test_rows_compare_alike_whichever_database_they_come_from() -> None:
    # MariaDB gives the register's local time without a zone; the front-end database gives UTC.
    naive = dt.datetime(2026, 11, 22, 21, 30, 0, 123456)
    aware = dt.datetime(2026, 11, 22, 13, 30, 0, 123456, tzinfo=dt.UTC)
    assert canonical(naive) == canonical(aware) == "2026-11-22T13:30:00.123456"
    assert canonical(dt.date(1990, 1, 2)) == "1990-01-02"
    assert canonical(None) is None
    assert canonical(5) == "5"
    rows = [("b", "2"), ("a", None)]
    assert digest(rows) == digest(list(reversed(rows)))
    assert digest(rows) != digest([("b", "2"), ("a", "")])
    assert digest(rows).rows == 2
