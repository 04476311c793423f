"""The local stack under `podman kube play`: the adaptation of the manifests, then the real thing."""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from gdx import __version__
from infra.render import Rendering, render, stack_config
from local_platform.podman import down, play, podman_manifests, read_phases, write_phases
from tests.support.stacks import INVENTORY, SECRETS


def test_the_local_manifests_become_what_podman_4_3_can_play(rendered: dict[str, Rendering]) -> None:
    config_maps, phases, skipped = podman_manifests(rendered["local"].manifests)
    assert [p.name for p in phases] == ["database", "migrate", "services"]
    database, migrate, services = phases
    assert database.volumes == ["data-gdx-db"]
    (db,) = database.workloads
    assert db["kind"] == "Deployment"
    claims = [v for v in db["spec"]["template"]["spec"]["volumes"] if "persistentVolumeClaim" in v]
    assert claims == [{"name": "data", "persistentVolumeClaim": {"claimName": "data-gdx-db"}}]
    (job,) = migrate.workloads
    assert job["kind"] == "Pod"
    assert job["spec"]["restartPolicy"] == "Never"
    assert job["spec"]["initContainers"][0]["command"][:3] == ["gdx", "exchange", "migrate"]
    assert sorted(d["metadata"]["name"] for d in services.workloads) == ["gdx-exchange", "gdx-monitor"]
    # Secrets as ConfigMaps (podman 4.3 mounts Secret values base64-encoded), references following them.
    names = {c["metadata"]["name"] for c in config_maps}
    assert {"gdx-db-credentials", "gdx-exchange-tls", "gdx-inventory"} <= names
    text = json.dumps([w for p in phases for w in p.workloads])
    assert "secretKeyRef" not in text
    assert "lifecycle" not in text, "no pre-stop pause without an ingress"
    assert '"secret":' not in text
    assert "Probe" not in text  # podman would make curl healthchecks of them
    assert '"containerPort"' not in text  # no port mappings on the host's network
    assert "Service gdx-exchange" in skipped
    assert "NetworkPolicy gdx-default-deny" in skipped
    # The hardening stays: podman honours these.
    exchange = next(d for d in services.workloads if d["metadata"]["name"] == "gdx-exchange")
    pod = exchange["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True


def test_written_phases_read_back_as_they_were(rendered: dict[str, Rendering], tmp_path: Path) -> None:
    written, _ = write_phases(rendered["local"].manifests, tmp_path)
    assert [p.name for _, p in written] == ["0-database.yaml", "1-migrate.yaml", "2-services.yaml"]
    assert read_phases(tmp_path) == written
    assert all(path.stat().st_mode & 0o077 == 0 for _, path in written)  # they hold the keys


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _https_json(url: str, ca: Path, cert: tuple[Path, Path] | None = None) -> Any:
    context = ssl.create_default_context(cafile=str(ca))
    if cert:
        context.load_cert_chain(str(cert[0]), str(cert[1]))
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context), urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=5) as answer:
        return json.loads(answer.read())


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("podman") is None, reason="needs podman (make setup)")
def test_the_local_stack_runs_under_podman_kube_play(pki: Path, tmp_path: Path) -> None:
    images = subprocess.run(["podman", "image", "exists", f"localhost/gdx:{__version__}"], check=False)
    assert images.returncode == 0, "build the images first: make images"
    running = subprocess.run(["podman", "pod", "ps", "--format", "{{.Name}}"], capture_output=True, text=True)
    assert not [p for p in running.stdout.split() if p.startswith("gdx-")], "a local platform runs here: make down"
    subprocess.run(["podman", "volume", "rm", "-f", "data-gdx-db"], capture_output=True, check=False)  # a leftover
    config = stack_config("local")
    exchange_port, db_port, monitor_port = _free_port(), _free_port(), _free_port()
    overrides = {
        "exchange": {**config["exchange"], "port": exchange_port},
        "database": {**config["database"], "port": db_port},
        "monitoring": {**config["monitoring"], "port": monitor_port},
    }
    rendering = render("local", pki_dir=pki, inventory=INVENTORY, secrets=SECRETS, overrides=overrides)
    files, _ = write_phases(rendering.manifests, tmp_path / "podman")
    url = f"https://127.0.0.1:{exchange_port}/"
    steps: list[str] = []
    try:
        monitor = f"http://127.0.0.1:{monitor_port}/"
        play(files, database_port=db_port, exchange_url=url, ca_file=pki / "ca.crt", monitor_url=monitor,
             progress=steps.append)  # fmt: skip
        ready = _https_json(url + "readyz", pki / "ca.crt")
        assert ready["status"] == "ready"
        assert ready["schema_version"] >= 2
        # The migration Job also loaded the department registry from the inventory's ConfigMap.
        departments = _https_json(url + "v1/departments", pki / "ca.crt", (pki / "monitor.crt", pki / "monitor.key"))
        assert sorted(d["id"] for d in departments) == ["zjg-gaj", "zjg-scjgj", "zjg-wjw"]
        health = json.loads(urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
            monitor + "healthz", timeout=5).read())  # fmt: skip
        assert health["status"] == "ok"
        # The hardening of the manifests holds in the running containers.
        who = subprocess.run(
            ["podman", "exec", "gdx-exchange-pod-0-exchange", "id", "-u"], capture_output=True, text=True
        )
        assert who.stdout.strip() == "10001"
        write = subprocess.run(
            ["podman", "exec", "gdx-exchange-pod-0-exchange", "touch", "/opt/gdx/x"], capture_output=True, text=True
        )
        assert "Read-only file system" in write.stderr
    except Exception:
        for name in ("gdx-db-pod-0-postgres", "gdx-exchange-pod-0-exchange", "gdx-monitor-pod-0-monitor"):
            logs = subprocess.run(["podman", "logs", "--tail", "30", name], capture_output=True, text=True)
            print(f"--- podman logs {name}\n{logs.stdout}{logs.stderr}")
        print("\n".join(steps))
        raise
    finally:
        down(files, volumes=True)
    left = subprocess.run(
        ["podman", "pod", "ps", "--format", "{{.Name}}"], capture_output=True, text=True
    ).stdout.split()
    assert not [p for p in left if p.startswith(("gdx-db", "gdx-exchange", "gdx-monitor", "gdx-migrate"))]
    kept = subprocess.run(["podman", "volume", "ls", "--format", "{{.Name}}"], capture_output=True, text=True)
    assert not [v for v in kept.stdout.split() if v.startswith("gdx-") or v == "data-gdx-db"], kept.stdout  # keys too
