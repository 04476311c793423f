"""The firewall role, tested with real packets: the test host is in the admin network (SSH allowed)
but not in the monitoring network (agent port dropped); outbound only to the exchange and the
business database."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

GATEWAY = os.environ.get("GDX_TEST_GATEWAY", "10.88.0.1")


def node_address(host) -> str:
    return host.interface("eth0").addresses[0]


def reachable(address: str, port: int, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


@pytest.fixture
def listeners() -> Iterator[dict[int, socket.socket]]:
    """The 'exchange' (18443), the 'business database' (18432) and a port nobody allowed (18444)."""
    opened = {}
    for port in (18443, 18432, 18444):
        sock = socket.create_server(("0.0.0.0", port))  # noqa: S104 - the containers must reach it
        opened[port] = sock
    yield opened
    for sock in opened.values():
        sock.close()


def test_the_ruleset_is_loaded_with_drop_policies(host):
    ruleset = host.check_output("nft list table inet gdx")
    assert "hook input priority filter; policy drop;" in ruleset
    assert "hook output priority filter; policy drop;" in ruleset
    assert "hook forward priority filter; policy drop;" in ruleset
    assert host.service("nftables").is_enabled
    conf = host.file("/etc/nftables.conf")
    assert (conf.user, conf.mode) == ("root", 0o600)


def test_ssh_from_the_admin_network_is_allowed(host):
    assert reachable(node_address(host), 22)


def test_the_agent_port_is_dropped_for_anyone_outside_monitoring(host):
    assert host.socket("tcp://0.0.0.0:9470").is_listening
    assert not reachable(node_address(host), 9470)
    assert host.run("timeout 3 bash -c '</dev/tcp/127.0.0.1/9470'").rc == 0, "loopback must stay open"


def test_outbound_only_to_the_exchange_and_the_business_database(host, listeners):
    def connects(port: int) -> bool:
        return host.run(f"timeout 3 bash -c '</dev/tcp/{GATEWAY}/{port}'").rc == 0

    assert connects(18443), "the central exchange must be reachable"
    assert connects(18432), "the business database must be reachable"
    assert not connects(18444), "anything else must be dropped"


def test_a_rerun_with_an_unchanged_ruleset_keeps_the_counters(host):
    # The table is replaced atomically on reload; reloading twice must leave exactly one gdx table.
    host.check_output("systemctl reload nftables")
    tables = host.check_output("nft list tables")
    assert tables.count("table inet gdx") == 1
