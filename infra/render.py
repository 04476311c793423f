"""Run the Pulumi program under Pulumi's mocks and take down the manifests it declares.

No Pulumi engine or Kubernetes API server is needed: the mocks answer every registration and hand
us each resource's inputs, which for the Kubernetes provider are the manifests themselves. Used
by `gdx render`, the tests and the local platform (`podman kube play`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime.mocks import MockMonitor

from infra.settings import NAMESPACE, SettingsError

INFRA_DIR = Path(__file__).resolve().parent
PROJECT = "gdx"
SECRET_SIG = "4dabf18193072939515e22adb298388d"  # Pulumi's marker of a secret value on the wire
SECRET_CONFIG = ("databasePassword", "databaseUrl", "s3AccessKey", "s3SecretKey")
REDACTED = "<secret: render with --with-secrets>"
# Apply order: what others refer to first (kubectl apply and podman kube play take files in order).
# The namespace's guard rails come before any pod: a pod naming an unknown priority class, or one
# over the quota, is refused, not queued.
KIND_ORDER = [
    "PriorityClass", "Namespace", "ResourceQuota", "LimitRange", "Secret", "ConfigMap", "ServiceAccount",
    "PersistentVolumeClaim", "Service", "Cluster", "ScheduledBackup", "StatefulSet", "Job", "Deployment",
    "HorizontalPodAutoscaler", "PodDisruptionBudget", "Ingress", "NetworkPolicy", "PrometheusRule",
    "ServiceMonitor", "PodMonitor", "ScrapeConfig",
]  # fmt: skip


class RenderError(Exception):
    pass


@dataclass
class Registered:
    urn: str
    type: str
    name: str  # Pulumi's logical name
    inputs: dict[str, Any]
    parent: str
    dependencies: list[str]
    ignore_changes: list[str] = field(default_factory=list)

    @property
    def is_kubernetes(self) -> bool:
        return self.type.startswith("kubernetes:")

    @property
    def kind(self) -> str:
        return self.type.rsplit(":", 1)[-1]

    def has_secret_input(self) -> bool:
        """Whether some input reached the engine marked secret (encrypted in the state, masked in previews)."""
        return SECRET_SIG in json.dumps(self.inputs, default=str)


@dataclass
class Rendering:
    stack: str
    resources: list[Registered]
    outputs: dict[str, Any]
    manifests: list[dict[str, Any]] = field(default_factory=list)  # plain, in apply order

    def by_urn(self) -> dict[str, Registered]:
        return {r.urn: r for r in self.resources}

    def find(self, kind: str, name: str | None = None) -> list[dict[str, Any]]:
        return [m for m in self.manifests if m["kind"] == kind and (name is None or m["metadata"]["name"] == name)]

    def one(self, kind: str, name: str) -> dict[str, Any]:
        found = self.find(kind, name)
        if len(found) != 1:
            raise KeyError(f"{len(found)} {kind} named {name!r} in stack {self.stack}")
        return found[0]


class ManifestMocks(pulumi.runtime.Mocks):
    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        # The id Kubernetes would give: the object's name (namespaced objects: namespace/name).
        meta = args.inputs.get("metadata") or {}
        return f"{meta.get('name', args.name)}", dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, None


class RecordingMonitor(MockMonitor):
    """Pulumi's mock monitor, also keeping what the mocks are not told: parents and dependencies."""

    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.registered: list[Registered] = []

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
        if request.type != "pulumi:pulumi:Stack":
            inputs = self.resources[response.urn].state
            self.registered.append(
                Registered(
                    response.urn,
                    request.type,
                    request.name,
                    inputs,
                    request.parent,
                    list(request.dependencies),
                    list(request.ignoreChanges),
                )
            )
        return response


def stack_config(stack: str, project_dir: Path = INFRA_DIR) -> dict[str, Any]:
    path = project_dir / f"Pulumi.{stack}.yaml"
    if not path.exists():
        known = sorted(p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in project_dir.glob("Pulumi.*.yaml"))
        raise RenderError(f"no stack {stack!r}: {path} does not exist (stacks: {', '.join(known)})")
    config = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("config") or {}
    return {
        key.removeprefix(f"{NAMESPACE}:"): value for key, value in config.items() if key.startswith(f"{NAMESPACE}:")
    }


def render(
    stack: str,
    *,
    pki_dir: Path | None = None,
    inventory: Path | None = None,
    secrets: dict[str, str] | None = None,
    overrides: dict[str, Any] | None = None,
    project_dir: Path = INFRA_DIR,
) -> Rendering:
    """Declare ``stack`` under the mocks. ``secrets`` stands in for `pulumi config set --secret`
    (the stack files hold them encrypted, which only the Pulumi CLI can read)."""
    from infra.program import declare
    from infra.settings import parse

    config = stack_config(stack, project_dir)
    config.update(overrides or {})
    if pki_dir is not None:
        config["pkiDir"] = str(pki_dir.resolve())
    if inventory is not None:
        config["inventory"] = str(inventory.resolve())
    given = dict(secrets or {})
    for key in SECRET_CONFIG:
        if isinstance(config.get(key), dict) and key not in given:
            raise RenderError(f"gdx:{key} is encrypted in Pulumi.{stack}.yaml; give it with --secret {key}=VALUE")
        config.pop(key, None)
    settings = parse(stack, config, project_dir)
    needed = {"statefulset": "databasePassword", "external": "databaseUrl"}.get(settings.database.kind)
    if needed and needed not in given:
        raise RenderError(
            f"stack {stack}: a {settings.database.kind} database needs gdx:{needed}; "
            f"give it with --secret {needed}=VALUE"
        )
    keys = [key for key in ("s3AccessKey", "s3SecretKey") if key not in given]
    if settings.exchange.file_store and keys:
        raise RenderError(
            f"stack {stack}: gdx:exchange.fileStore needs the object store's keys; give them with "
            + " ".join(f"--secret {key}=VALUE" for key in keys)
        )

    pulumi.runtime.reset_options(project=PROJECT, stack=stack, preview=False)
    mocks = ManifestMocks()
    monitor = RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=False, monitor=monitor)
    wire = {f"{NAMESPACE}:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}
    wire.update({f"{NAMESPACE}:{k}": v for k, v in given.items()})
    pulumi.runtime.set_all_config(wire, [f"{NAMESPACE}:{k}" for k in given])

    outputs: dict[str, Any] = {}

    @pulumi.runtime.test  # type: ignore[untyped-decorator]
    def run() -> pulumi.Output[Any]:
        exported = declare(settings)
        return pulumi.Output.all(**exported).apply(outputs.update)

    try:
        run()
    except SettingsError:
        raise
    except Exception as exc:
        raise RenderError(f"stack {stack}: the program failed: {exc}") from exc
    rendering = Rendering(stack, monitor.registered, _plain(outputs))
    rendering.manifests = manifests(monitor.registered)
    return rendering


def manifests(registered: list[Registered]) -> list[dict[str, Any]]:
    """The Kubernetes objects among ``registered``, as plain manifests in apply order."""
    return sorted(
        (_conventional(_plain(r.inputs)) for r in registered if r.is_kubernetes),
        key=lambda m: (_rank(m["kind"]), m["metadata"].get("namespace", ""), m["metadata"]["name"]),
    )


def write(rendering: Rendering, out: Path, *, with_secrets: bool = False) -> list[Path]:
    """One file per object, numbered in apply order, and outputs.yaml."""
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("[0-9][0-9][0-9]-*.yaml"):
        old.unlink()
    written = []
    for index, manifest in enumerate(rendering.manifests):
        body = manifest if with_secrets else redact(manifest)
        path = out / f"{index:03d}-{manifest['kind'].lower()}-{manifest['metadata']['name']}.yaml"
        path.write_text(dump(body), encoding="utf-8")
        if with_secrets and manifest["kind"] == "Secret":
            path.chmod(0o600)
        written.append(path)
    outputs = out / "outputs.yaml"
    outputs.write_text(dump(rendering.outputs), encoding="utf-8")
    return [*written, outputs]


def redact(manifest: dict[str, Any]) -> dict[str, Any]:
    if manifest["kind"] != "Secret":
        return manifest
    hidden = dict(manifest)
    for key in ("stringData", "data"):
        if key in hidden:
            hidden[key] = dict.fromkeys(hidden[key], REDACTED)
    return hidden


def dump(document: Any) -> str:
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=120)


def _conventional(manifest: dict[str, Any]) -> dict[str, Any]:
    """apiVersion, kind, metadata first, as people write them."""
    head = ("apiVersion", "kind", "metadata")
    return {**{k: manifest[k] for k in head if k in manifest}, **{k: v for k, v in manifest.items() if k not in head}}


def _rank(kind: str) -> int:
    return KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER)


def _plain(value: Any) -> Any:
    """Secrets unwrapped, numbers back to integers (the wire carries every number as a float)."""
    if isinstance(value, dict):
        if value.get(SECRET_SIG) is not None and "value" in value:
            return _plain(value["value"])
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value
