"""site.yml, upgrade.yml and a rollback on two real systemd hosts (podman), against a central exchange
and a business database that this test runs on the podman gateway. The checks on the hosts are the
molecule scenario's testinfra verifier (playbooks/molecule/site/tests)."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import yaml

from gdx import __version__
from gdx.pki import issue
from tests.support.exchange import RunningExchange, start_exchange
from tests.support.nodes import POPULATION_TABLE
from tests.support.postgres import PostgresServer
from tests.support.provision import (
    PLAYBOOKS,
    broken_agent_patch,
    build_bundle,
    podman_gateway,
    run_logged,
    tool_env,
    vault_block,
)
from tests.support.samples import person, population_entry

pytestmark = pytest.mark.slow

NEXT_VERSION = f"{__version__}.post1"
BROKEN_VERSION = f"{__version__}.post2"
READER_PASSWORD = "读取-Zjg-2026"  # non-ASCII on purpose: it travels through vault, a file and libpq
RESOURCE = "zjg-gaj.population"

INVENTORY = """\
all:
  vars:
    gdx_exchange_url: https://{gateway}:{port}
    gdx_pki_dir: {pki}
    gdx_agent_bundle: "{bundles}/gdx-node-{{{{ gdx_agent_version }}}}.tar.gz"
    gdx_agent_settings: {{poll_interval_s: 0.5, heartbeat_interval_s: 2}}
    gdx_agent_health_timeout_s: 90
    gdx_firewall_admin_networks: ["{gateway}/32"]
    gdx_firewall_monitoring_networks: ["{gateway}/32"]
    gdx_base_chrony_adjust_clock: false
    gdx_frontend_db_shared_buffers_mb: 64
    gdx_frontend_db_effective_cache_size_mb: 256
  children:
    gdx_front_end_nodes:
      hosts:
        gdx-site-gaj:
          ansible_connection: containers.podman.podman
          gdx_department: {{id: zjg-gaj, name: 张家港市公安局, jurisdiction: zhangjiagang}}
          gdx_business_db:
            kind: postgresql
            host: {gateway}
            port: {db_port}
            name: hukou
            user: gdx_reader
            password: {password}
          gdx_publishes:
            # Deletions are found by a keyed comparison: every 2 s, so the check of one waits seconds, not a minute.
            - {{resource: {resource}, table: public.population, change_column: updated_at, compare_interval_s: 2}}
        gdx-site-wjw:
          ansible_connection: containers.podman.podman
          gdx_department: {{id: zjg-wjw, name: 张家港市卫生健康委员会, jurisdiction: zhangjiagang}}
          gdx_subscribes:
            - {{resource: {resource}, purpose: 城乡居民医保参保登记核验, table: public.gaj_population}}
"""


@pytest.fixture(scope="module")
def gateway() -> str:
    return podman_gateway()


@pytest.fixture(scope="module")
def business_db(gateway: str) -> Iterator[str]:
    """The public security bureau's business database, reachable from the containers with a password."""
    # '*': podman's bridge (the gateway address) exists only while a container runs.
    server = PostgresServer(listen="*").start()
    server.create_database("hukou")
    with psycopg.connect(server.url("hukou"), autocommit=True) as conn:
        conn.execute(POPULATION_TABLE.format(table="population").encode())
        conn.execute(f"CREATE ROLE gdx_reader LOGIN PASSWORD '{READER_PASSWORD}'".encode())
        conn.execute("GRANT SELECT ON public.population TO gdx_reader")
        with conn.cursor() as cur:
            rows = [person(n) for n in range(1, 201)]
            cols = [c for c in rows[0] if c != "updated_at"]
            cur.executemany(
                f"INSERT INTO public.population ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))})",
                [[row[c] for c in cols] for row in rows],
            )
    server.allow(f"host hukou gdx_reader {gateway}/16 scram-sha-256")
    yield server.url("hukou")
    server.stop()


@pytest.fixture(scope="module")
def exchange(pg: PostgresServer, gateway: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningExchange]:
    running = start_exchange(
        pg,
        tmp_path_factory.mktemp("exchange"),
        dbname="exchange_site",
        listen="0.0.0.0",  # noqa: S104 - the containers must reach it
        server_names=[gateway],
    )
    provider = running.client("zjg-gaj")
    response = provider.post("/v1/resources", json=population_entry(RESOURCE))
    assert response.status_code == 201, response.text
    response = running.client("zjg-wjw").post(
        f"/v1/resources/{RESOURCE}/subscriptions", json={"purpose": "城乡居民医保参保登记核验"}
    )
    assert response.status_code in (200, 201), response.text
    yield running
    running.stop()


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bundles")
    build_bundle(out)
    build_bundle(out, NEXT_VERSION)
    build_bundle(out, BROKEN_VERSION, patch=broken_agent_patch(out / "broken.patch"))
    return out


@pytest.mark.timeout(2400)
def test_site_upgrade_and_rollback_on_two_systemd_hosts(
    tmp_path: Path, gateway: str, business_db: str, exchange: RunningExchange, bundles: Path
) -> None:
    vault_password = secrets.token_urlsafe(24)
    password_file = tmp_path / "vault-password"
    password_file.write_text(vault_password)
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(
        INVENTORY.format(
            gateway=gateway,
            port=exchange.port,
            pki=exchange.pki,
            bundles=bundles,
            db_port=business_db.rsplit(":", 1)[1].split("/")[0],
            password=vault_block(READER_PASSWORD, vault_password, indent=12),
            resource=RESOURCE,
        ),
        encoding="utf-8",
    )
    env = tool_env(
        GDX_TEST_INVENTORY=str(inventory),
        GDX_TEST_CA=str(exchange.pki / "ca.crt"),
        # The monitoring's identity (role operator): the nodes show their health to it from afar.
        GDX_TEST_MONITOR_CERT=str(exchange.pki / "carol.crt"),
        GDX_TEST_MONITOR_KEY=str(exchange.pki / "carol.key"),
        GDX_TEST_VAULT_PASSWORD_FILE=str(password_file),
        ANSIBLE_VAULT_PASSWORD_FILE=str(password_file),
        GDX_TEST_BUSINESS_DSN=business_db,
        GDX_TEST_NEXT_VERSION=NEXT_VERSION,
        GDX_TEST_BROKEN_VERSION=BROKEN_VERSION,
    )
    # A run that was cut off leaves its hosts running and molecule's state behind: `--destroy never`
    # skips the destroy before create, so both are cleared here.
    hosts = [p["name"] for p in yaml.safe_load((PLAYBOOKS / "molecule/site/molecule.yml").read_text())["platforms"]]
    subprocess.run(["podman", "rm", "-f", "-t", "0", *hosts], capture_output=True, check=False)
    run_logged(
        ["molecule", "reset", "--scenario-name", "site"],
        tmp_path / "molecule-reset.log",
        cwd=PLAYBOOKS,
        env=env,
        timeout=120,
    )
    keep = bool(os.environ.get("GDX_KEEP_HOSTS"))  # leave the containers up to look inside
    try:
        output = run_logged(
            ["molecule", "test", "--scenario-name", "site", "--destroy", "never"],
            tmp_path / "molecule.log",
            cwd=PLAYBOOKS,
            env=env,
            timeout=1800,
        )
        for step in ("create", "converge", "idempotence", "side_effect", "verify"):
            assert f"site > {step}: Executed: Successful" in output, step
        rotate_certificates(tmp_path, inventory, exchange, env)
        decommission(tmp_path, inventory, env)
    finally:
        if not keep:
            run_logged(["molecule", "destroy", "--scenario-name", "site"], tmp_path / "destroy.log",
                       cwd=PLAYBOOKS, env=env, timeout=300)  # fmt: skip


def playbook(name: str, inventory: Path, env: dict[str, str], log: Path, *args: str) -> str:
    return run_logged(["ansible-playbook", "-i", str(inventory), name, *args], log, cwd=PLAYBOOKS, env=env, timeout=900)


def in_node(node: str, command: str) -> str:
    done = subprocess.run(["podman", "exec", node, "sh", "-c", command], capture_output=True, text=True, check=False)
    return done.stdout


def rotate_certificates(tmp_path: Path, inventory: Path, exchange: RunningExchange, env: dict[str, str]) -> None:
    """A renewed certificate for one department: placed, its agent restarted and healthy; the other untouched."""
    issue(exchange.pki, "zjg-gaj")
    output = playbook("rotate-certs.yml", inventory, env, tmp_path / "rotate.log")
    assert in_node("gdx-site-gaj", "cat /etc/gdx/node.crt") == (exchange.pki / "zjg-gaj.crt").read_text()
    assert re.search(r"gdx-site-gaj\s+: ok=\d+\s+changed=[1-9]", output), output[-2000:]
    assert re.search(r"gdx-site-wjw\s+: ok=\d+\s+changed=0 ", output), output[-2000:]
    # The node's own certificate names the department, not 127.0.0.1: read it unverified, on the node.
    fetch = (
        "import ssl, urllib.request as u; c = ssl._create_unverified_context(); "
        "print(u.urlopen('https://127.0.0.1:9470/healthz', context=c).read().decode())"
    )
    status = json.loads(in_node("gdx-site-gaj", f'python3 -c "{fetch}"'))
    assert status["status"] in ("ok", "degraded")
    assert status["front_end_db"] == "up"


def decommission(tmp_path: Path, inventory: Path, env: dict[str, str]) -> None:
    """The subscriber is taken out: agent, config and keys gone, the final backup kept and fetched."""
    fetched = tmp_path / "decommissioned"
    playbook(
        "decommission.yml", inventory, env, tmp_path / "decommission.log",
        "--limit", "gdx-site-wjw", "-e", f"gdx_decommission_fetch_dir={fetched}",
    )  # fmt: skip
    assert in_node("gdx-site-wjw", "systemctl is-active gdx-agent").strip() != "active"
    assert (
        in_node(
            "gdx-site-wjw", "ls /etc/gdx /opt/gdx /etc/systemd/system/gdx-agent.service 2>&1 | grep -c 'No such'"
        ).strip()
        == "3"
    )
    final = in_node("gdx-site-wjw", "ls /var/backups/gdx/final").split()
    assert len(final) == 1
    assert final[0].endswith(".dump")
    assert (fetched / "gdx-site-wjw" / final[0]).stat().st_size > 0
    # The other node goes on.
    assert in_node("gdx-site-gaj", "systemctl is-active gdx-agent").strip() == "active"
