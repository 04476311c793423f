"""Two front-end nodes provisioned by site.yml, upgraded, and survived a broken release: services,
sockets, file modes, firewall, backups, and data flowing from one node's business database through
the central exchange into the other node's front-end database."""

from __future__ import annotations

import json
import os
import ssl
import time
import urllib.error
import urllib.request

import psycopg
import pytest
import testinfra

BUSINESS_DB = os.environ["GDX_TEST_BUSINESS_DSN"]
NEXT_VERSION = os.environ["GDX_TEST_NEXT_VERSION"]
BROKEN_VERSION = os.environ["GDX_TEST_BROKEN_VERSION"]
SUBSCRIBER_TABLE = "public.gaj_population"

provider = testinfra.get_host("podman://gdx-site-gaj")
subscriber = testinfra.get_host("podman://gdx-site-wjw")
nodes = pytest.mark.parametrize("node", [provider, subscriber], ids=["gaj", "wjw"])


def health(node) -> dict:
    """Over TLS, as the monitoring agent asks: the platform CA vouches for the node's certificate,
    and the monitoring's own certificate for the caller (without one, only the node itself may ask)."""
    address = node.interface("eth0").addresses[0]
    context = ssl.create_default_context(cafile=os.environ["GDX_TEST_CA"])
    context.check_hostname = False  # the certificate names the department, not the address
    context.load_cert_chain(os.environ["GDX_TEST_MONITOR_CERT"], os.environ["GDX_TEST_MONITOR_KEY"])
    with urllib.request.urlopen(f"https://{address}:9470/healthz", timeout=5, context=context) as response:
        return json.loads(response.read())


def front_end_sql(node, query: str) -> str:
    return node.check_output(f'runuser -u postgres -- psql -d gdx_frontend -XAtc "{query}"')


@nodes
def test_services_run_and_start_at_boot(node):
    for unit in ("gdx-agent", "postgresql@15-main", "prometheus-node-exporter", "chrony", "ssh"):
        service = node.service(unit)
        assert service.is_running, unit
        assert service.is_enabled, unit
    assert node.service("nftables").is_enabled
    assert node.service("gdx-frontend-backup.timer").is_running


@nodes
def test_sockets_listen_only_where_intended(node):
    assert node.socket("tcp://0.0.0.0:9470").is_listening
    assert node.socket("tcp://0.0.0.0:9100").is_listening
    assert node.socket("tcp://127.0.0.1:5432").is_listening
    assert not node.socket("tcp://0.0.0.0:5432").is_listening


@nodes
def test_the_agent_runs_hardened_as_the_service_user(node):
    props = dict(
        line.split("=", 1)
        for line in node.check_output(
            "systemctl show gdx-agent -p User -p NoNewPrivileges -p ProtectSystem -p ReadWritePaths -p PrivateTmp"
        ).splitlines()
    )
    assert props == {
        "User": "gdx",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ReadWritePaths": "/var/lib/gdx",
        "PrivateTmp": "yes",
    }
    main_pid = node.check_output("systemctl show -p MainPID --value gdx-agent")
    assert node.check_output(f"ps -o user= -p {main_pid}") == "gdx"


@nodes
def test_keys_and_config_have_their_modes(node):
    key = node.file("/etc/gdx/node.key")
    assert (key.user, key.group, key.mode) == ("gdx", "gdx", 0o600)
    config = node.file("/etc/gdx/node.yml")
    assert (config.user, config.group, config.mode) == ("root", "gdx", 0o640)
    assert "password:" not in config.content_string
    assert node.file("/etc/gdx").mode == 0o750


def test_the_business_db_password_is_only_in_its_own_file():
    secret = provider.file("/etc/gdx/business-db.password")
    assert (secret.user, secret.mode) == ("gdx", 0o600)
    assert "password_file: /etc/gdx/business-db.password" in provider.file("/etc/gdx/node.yml").content_string
    assert not subscriber.file("/etc/gdx/business-db.password").exists


@nodes
def test_the_firewall_is_loaded(node):
    ruleset = node.check_output("nft list table inet gdx")
    assert "policy drop" in ruleset
    assert 'comment "central exchange"' in ruleset


def test_the_upgrade_landed_and_the_broken_release_was_rolled_back():
    for node in (provider, subscriber):
        assert node.file("/opt/gdx/current").linked_to == f"/opt/gdx/releases/{NEXT_VERSION}"
        assert health(node)["version"] == NEXT_VERSION
    # The broken release reached the first node only (then rolled back); the rollout stopped there.
    assert provider.file(f"/opt/gdx/releases/{BROKEN_VERSION}").exists
    assert not subscriber.file(f"/opt/gdx/releases/{BROKEN_VERSION}").exists


@nodes
def test_agents_are_healthy_and_connected(node):
    deadline = time.monotonic() + 60
    while (body := health(node))["status"] != "ok":
        assert time.monotonic() < deadline, body
        time.sleep(1)
    assert body["front_end_db"] == "up"
    assert body["certificate_days_left"] > 300


def _business(query: str, params: tuple = ()) -> None:
    with psycopg.connect(BUSINESS_DB, autocommit=True) as conn:
        conn.execute(query, params)


def _digest_business() -> str:
    with psycopg.connect(BUSINESS_DB) as conn:
        row = conn.execute(
            "SELECT count(*) || ':' || coalesce(md5(string_agg(id_number || '|' || name, ',' ORDER BY id_number)), '') "
            "FROM public.population"
        ).fetchone()
    return str(row[0])


def _digest_subscriber() -> str:
    return front_end_sql(
        subscriber,
        "SELECT count(*) || ':' || coalesce(md5(string_agg(id_number || '|' || name, ',' ORDER BY id_number)), '') "
        f"FROM {SUBSCRIBER_TABLE}",
    )


def _converge(timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        expected = _digest_business()
        try:
            if _digest_subscriber() == expected:
                return
        except AssertionError:
            pass  # the subscription table is created with the first pull
        assert time.monotonic() < deadline, f"subscriber never matched the business table ({expected})"
        time.sleep(1)


def test_data_flows_from_the_business_db_to_the_other_node():
    _converge()
    first = "(SELECT min(id_number) FROM public.population)"
    _business(f"UPDATE public.population SET name = '改名' || id_number WHERE id_number = {first}")
    _business("DELETE FROM public.population WHERE id_number = (SELECT max(id_number) FROM public.population)")
    _converge()
    count = int(_digest_subscriber().split(":")[0])
    assert count >= 2


@nodes
def test_the_health_port_answers_a_caller_from_afar_only_with_a_certificate(node):
    address = node.interface("eth0").addresses[0]
    context = ssl.create_default_context(cafile=os.environ["GDX_TEST_CA"])
    context.check_hostname = False
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"https://{address}:9470/healthz", timeout=5, context=context)
    assert refused.value.code == 401
