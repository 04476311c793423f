"""The local stack on one machine: the rendered manifests, adapted to `podman kube play`, in phases.

podman 4.3 plays Pods, Deployments and ConfigMaps; of the rest:
- a StatefulSet becomes a one-replica Deployment on named volumes for its claim templates;
- the migration Job becomes a Pod that runs once (played after the database, waited for);
- Secrets become ConfigMaps: podman 4.3 mounts a Secret's values base64-encoded and crashes on a
  secret volume without `optional`; on one machine both live on the same local disk anyway;
- container ports go when pods share the host's network (podman refuses port mappings there);
- probes go (podman would turn them into healthchecks that call curl, which the images lack), and
  so does the pre-stop pause (it lets an ingress see the pod leave; there is no ingress here);
  the local platform waits for /readyz itself;
- Services, NetworkPolicies, the PodDisruptionBudget, ServiceAccounts and the Namespace have no
  podman counterpart: the pods share the host's network (gdx:hostNetwork) and reach 127.0.0.1.
"""

from __future__ import annotations

import copy
import functools
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from infra.rules import pod_spec

Manifest = dict[str, Any]
PROBES = ("livenessProbe", "readinessProbe", "startupProbe")


class LocalError(Exception):
    pass


@dataclass
class Phase:
    name: str
    workloads: list[Manifest]
    volumes: list[str] = field(default_factory=list)  # named volumes for the claims, made before playing


def podman_manifests(manifests: Iterable[Manifest]) -> tuple[list[Manifest], list[Phase], list[str]]:
    """(ConfigMaps, the phases to play in order, what podman has no use for)."""
    config_maps: list[Manifest] = []
    database: list[Manifest] = []
    migrate: list[Manifest] = []
    services: list[Manifest] = []
    skipped: list[str] = []
    for original in manifests:
        m = copy.deepcopy(original)
        kind = m["kind"]
        if kind == "Secret":
            config_maps.append(_secret_as_config_map(m))
        elif kind == "ConfigMap":
            config_maps.append(m)
        elif kind == "StatefulSet":
            database.append(_statefulset_as_deployment(m))
        elif kind == "Job":
            migrate.append(_job_as_pod(m))
        elif kind == "Deployment":
            services.append(m)
        else:
            skipped.append(f"{kind} {m['metadata']['name']}")
    for m in database + migrate + services:
        _adapt_pod(m)
    claims = [
        v["persistentVolumeClaim"]["claimName"] for m in database for v in _volumes(m) if "persistentVolumeClaim" in v
    ]
    phases = [Phase("database", database, claims), Phase("migrate", migrate), Phase("services", services)]
    return config_maps, [p for p in phases if p.workloads], skipped


def _secret_as_config_map(secret: Manifest) -> Manifest:
    if "data" in secret:
        raise LocalError(f"Secret {secret['metadata']['name']}: base64 data; the program writes stringData only")
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": secret["metadata"]["name"], "labels": secret["metadata"].get("labels", {})},
        "data": secret.get("stringData", {}),
    }


def _statefulset_as_deployment(sts: Manifest) -> Manifest:
    """One replica, its claim templates turned into named volumes (podman 4.3 refuses a claim whose
    volume exists, so the volumes are made apart from the play, and kept across `down`)."""
    spec = sts["spec"]
    volumes = spec["template"]["spec"].setdefault("volumes", [])
    for template in spec.get("volumeClaimTemplates", []):
        claim = f"{template['metadata']['name']}-{sts['metadata']['name']}"
        volumes.append({"name": template["metadata"]["name"], "persistentVolumeClaim": {"claimName": claim}})
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": sts["metadata"]["name"], "labels": sts["metadata"].get("labels", {})},
        "spec": {"replicas": 1, "selector": spec["selector"], "template": spec["template"]},
    }


def _volumes(m: Manifest) -> list[dict[str, Any]]:
    return list((pod_spec(m) or {}).get("volumes") or [])


def _job_as_pod(job: Manifest) -> Manifest:
    template = job["spec"]["template"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": job["metadata"]["name"], "labels": template["metadata"].get("labels", {})},
        "spec": template["spec"],
    }


def _adapt_pod(m: Manifest) -> None:
    live = m["spec"] if m["kind"] == "Pod" else m["spec"]["template"]["spec"]
    live.pop("priorityClassName", None)  # one machine: no scheduler to rank pods
    for key in ("initContainers", "containers"):
        for container in live.get(key) or []:
            for probe in PROBES:
                container.pop(probe, None)
            container.pop("lifecycle", None)  # the pre-stop pause waits for an ingress; there is none here
            if live.get("hostNetwork"):
                container.pop("ports", None)  # podman maps ports only on a bridge; on the host's they are just there
            for env in container.get("env") or []:
                ref = (env.get("valueFrom") or {}).pop("secretKeyRef", None)
                if ref is not None:
                    env["valueFrom"]["configMapKeyRef"] = ref
    for volume in live.get("volumes") or []:
        secret = volume.pop("secret", None)
        if secret is not None:
            volume["configMap"] = {"name": secret["secretName"]}
    m["metadata"].pop("namespace", None)


def write_phases(manifests: Iterable[Manifest], out: Path) -> tuple[list[tuple[Phase, Path]], list[str]]:
    """One YAML file per phase, each carrying the ConfigMaps its pods read (podman reads them from the file)."""
    config_maps, phases, skipped = podman_manifests(manifests)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for index, phase in enumerate(phases):
        path = out / f"{index}-{phase.name}.yaml"
        path.write_text(yaml.safe_dump_all([*config_maps, *phase.workloads], sort_keys=False), encoding="utf-8")
        path.chmod(0o600)  # it holds the keys
        files.append((phase, path))
    return files, skipped


def read_phases(directory: Path) -> list[tuple[Phase, Path]]:
    """The phases ``write_phases`` wrote into ``directory``, in order (for `down` without rendering again)."""
    found = []
    for path in sorted(directory.glob("[0-9]-*.yaml")):
        workloads = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d and d["kind"] != "ConfigMap"]
        claims = [
            v["persistentVolumeClaim"]["claimName"]
            for m in workloads
            for v in _volumes(m)
            if "persistentVolumeClaim" in v
        ]
        found.append((Phase(path.stem.split("-", 1)[1], workloads, claims), path))
    return found


def podman(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise LocalError(f"podman {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return done


def play(files: list[tuple[Phase, Path]], *, database_port: int, exchange_url: str, ca_file: Path,
         monitor_url: str | None = None, progress: Callable[[str], None] = print,
         timeout: float = 180) -> None:  # fmt: skip
    """Play the phases in order, waiting for each to be done: database accepting connections, the
    migration pod exited 0, the exchange ready and, given its address, the monitoring agent answering
    (it starts beside the exchange and may be seconds behind it on a busy machine)."""
    for phase, path in files:
        for volume in phase.volumes:
            if podman("volume", "exists", volume, check=False).returncode != 0:
                podman("volume", "create", volume)
        progress(f"podman kube play {path.name}")
        podman("kube", "play", str(path))
        if phase.name == "database":
            container = f"{phase.workloads[0]['metadata']['name']}-pod-0-postgres"
            wait_for(functools.partial(_pg_ready, container, database_port), timeout, "the database", progress)
        elif phase.name == "migrate":
            for pod in phase.workloads:
                _wait_for_pod_exit(pod, timeout)
                progress(f"migration pod {pod['metadata']['name']} done")
        else:
            wait_for(lambda: answers(exchange_url + "readyz", ca_file), timeout, f"{exchange_url}readyz", progress)
            if monitor_url:
                wait_for(lambda: answers(monitor_url + "healthz"), timeout, f"{monitor_url}healthz", progress)


def down(files: list[tuple[Phase, Path]], *, volumes: bool = False) -> None:
    """Remove the pods and the volumes podman made of their ConfigMaps (they hold keys, and podman
    would mount a stale copy on the next play); with ``volumes``, the database's data too."""
    for phase, path in reversed(files):
        podman("kube", "down", str(path), check=False)
        made = {v["configMap"]["name"] for m in phase.workloads for v in _volumes(m) if "configMap" in v}
        for volume in sorted(made) + (phase.volumes if volumes else []):
            podman("volume", "rm", "-f", volume, check=False)


def answers(url: str, ca_file: Path | None = None) -> bool:
    """The endpoint answers 200 (over HTTPS against ``ca_file`` when given)."""
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
    if ca_file is not None:
        handlers.append(urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=str(ca_file))))
    try:
        with urllib.request.build_opener(*handlers).open(url, timeout=3) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def wait_for(condition: Callable[[], bool], timeout: float, what: str, progress: Callable[[str], None]) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise LocalError(f"gave up after {timeout:.0f} s waiting for {what}; see `podman pod ps` and `podman logs`")
        time.sleep(0.5)
    progress(f"{what}: ok")


def _pg_ready(container: str, port: int) -> bool:
    """pg_isready inside the pod: a server that listens and then dies (bad data directory) is not ready."""
    return (
        podman("exec", container, "pg_isready", "-q", "-h", "127.0.0.1", "-p", str(port), check=False).returncode == 0
    )


def _wait_for_pod_exit(pod: Manifest, timeout: float) -> None:
    name = pod["metadata"]["name"]
    for container in pod["spec"]["containers"]:
        full = f"{name}-{container['name']}"
        done = podman("wait", full, timeout=timeout)
        code = done.stdout.strip()
        if code != "0":
            logs = podman("logs", full, check=False)
            init = [
                podman("logs", f"{name}-{c['name']}", check=False).stderr for c in pod["spec"].get("initContainers", [])
            ]
            raise LocalError(f"{full} exited {code}:\n{''.join(init)}{logs.stdout[-3000:]}{logs.stderr[-3000:]}")
