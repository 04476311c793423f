"""The mandatory rules for what GDX puts on a cluster, as plain functions over manifests.

The Pulumi policy pack (infra/policy) applies them in `pulumi preview --policy-pack`, and the tests
apply the very same functions to every rendered manifest of every stack.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from infra.settings import pinned_image

Manifest = dict[str, Any]
LOAD_BALANCER_REASON = "gdx.gov.cn/load-balancer-reason"
REQUIRE_DIGESTS = "gdx.io/require-image-digests"  # a Namespace label (the prod stack sets it)
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod"}
LONG_RUNNING = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"}


def pod_spec(manifest: Manifest) -> dict[str, Any] | None:
    kind, spec = manifest.get("kind"), manifest.get("spec") or {}
    if kind == "CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    if kind != "Pod" and kind in WORKLOADS:
        spec = (spec.get("template") or {}).get("spec")
    elif kind != "Pod":
        return None
    return dict(spec) if isinstance(spec, dict) else None


def containers(manifest: Manifest) -> list[tuple[str, dict[str, Any]]]:
    spec = pod_spec(manifest) or {}
    return [(c.get("name", "?"), c) for key in ("initContainers", "containers") for c in spec.get(key) or []]


def _where(manifest: Manifest, container: str | None = None) -> str:
    meta = manifest.get("metadata") or {}
    place = f"{manifest.get('kind')} {meta.get('namespace', '')}/{meta.get('name', '?')}".replace(" /", " ")
    return f"{place} container {container}" if container else place


def limits_and_probes(manifest: Manifest) -> list[str]:
    problems = []
    init = {c.get("name") for c in (pod_spec(manifest) or {}).get("initContainers") or []}
    for name, c in containers(manifest):
        limits = (c.get("resources") or {}).get("limits") or {}
        requests = (c.get("resources") or {}).get("requests") or {}
        missing = [f"limits.{r}" for r in ("cpu", "memory") if r not in limits]
        missing += [f"requests.{r}" for r in ("cpu", "memory") if r not in requests]
        if manifest.get("kind") in LONG_RUNNING and name not in init:
            missing += [p for p in ("readinessProbe", "livenessProbe") if p not in c]
        if missing:
            problems.append(f"{_where(manifest, name)}: no {', '.join(missing)}")
    return problems


def non_root(manifest: Manifest) -> list[str]:
    spec = pod_spec(manifest)
    if spec is None:
        return []
    pod = spec.get("securityContext") or {}
    problems = []
    for name, c in containers(manifest):
        ctx = {**pod, **(c.get("securityContext") or {})}
        if not ctx.get("runAsNonRoot") or ctx.get("runAsUser") == 0:
            problems.append(
                f"{_where(manifest, name)}: may run as root (set runAsNonRoot: true and a non-zero runAsUser)"
            )
        if ctx.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{_where(manifest, name)}: allowPrivilegeEscalation is not false")
    return problems


def read_only_root(manifest: Manifest) -> list[str]:
    return [
        f"{_where(manifest, name)}: root filesystem is writable (readOnlyRootFilesystem: true; an emptyDir for scratch)"
        for name, c in containers(manifest)
        if (c.get("securityContext") or {}).get("readOnlyRootFilesystem") is not True
    ]


def pinned_images(manifest: Manifest) -> list[str]:
    problems = []
    for name, c in containers(manifest):
        try:
            pinned_image(str(c.get("image", "")))
        except ValueError as exc:
            problems.append(f"{_where(manifest, name)}: image {exc}")
    return problems


def load_balancer_reason(manifest: Manifest) -> list[str]:
    if manifest.get("kind") != "Service" or (manifest.get("spec") or {}).get("type") != "LoadBalancer":
        return []
    annotations = (manifest.get("metadata") or {}).get("annotations") or {}
    if str(annotations.get(LOAD_BALANCER_REASON, "")).strip():
        return []
    return [f"{_where(manifest)}: type LoadBalancer without the annotation {LOAD_BALANCER_REASON} saying why"]


def network_policy_per_namespace(manifests: list[Manifest]) -> list[str]:
    namespaces = {m["metadata"]["name"] for m in manifests if m.get("kind") == "Namespace"}
    namespaces |= _workload_namespaces(manifests)
    covered = {m["metadata"].get("namespace") for m in manifests if m.get("kind") == "NetworkPolicy"}
    return [f"namespace {ns}: no NetworkPolicy (deny by default, then allow)" for ns in sorted(namespaces - covered)]


def pdb_for_replicated(manifests: list[Manifest]) -> list[str]:
    budgets = [
        (m["metadata"].get("namespace"), ((m.get("spec") or {}).get("selector") or {}).get("matchLabels") or {})
        for m in manifests
        if m.get("kind") == "PodDisruptionBudget"
    ]
    problems = []
    for m in manifests:
        if m.get("kind") != "Deployment" or int((m.get("spec") or {}).get("replicas", 1)) <= 1:
            continue
        labels = ((m["spec"].get("template") or {}).get("metadata") or {}).get("labels") or {}
        namespace = m["metadata"].get("namespace")
        if not any(ns == namespace and sel and sel.items() <= labels.items() for ns, sel in budgets):
            problems.append(f"{_where(m)}: {m['spec']['replicas']} replicas and no PodDisruptionBudget selecting them")
    return problems


def _workload_namespaces(manifests: list[Manifest]) -> set[str]:
    return {m["metadata"].get("namespace") for m in manifests if m.get("kind") in WORKLOADS} - {None}


def namespace_guard_rails(manifests: list[Manifest]) -> list[str]:
    """A quota and container defaults in every namespace with workloads; a priority on every pod."""
    problems = []
    for kind, why in (("ResourceQuota", "what it may take in all"), ("LimitRange", "defaults for a bare pod")):
        covered = {m["metadata"].get("namespace") for m in manifests if m.get("kind") == kind}
        problems += [f"namespace {ns}: no {kind} ({why})" for ns in sorted(_workload_namespaces(manifests) - covered)]
    for m in manifests:
        spec = pod_spec(m)
        if spec is not None and not spec.get("priorityClassName"):
            problems.append(f"{_where(m)}: no priorityClassName (the platform's pods are evicted last)")
    return problems


def digests_where_required(manifests: list[Manifest]) -> list[str]:
    """In a namespace labelled REQUIRE_DIGESTS (production), every image is pinned by digest: a tag
    can be pushed again; a digest names one image for good."""
    strict = {
        m["metadata"]["name"]
        for m in manifests
        if m.get("kind") == "Namespace" and (m["metadata"].get("labels") or {}).get(REQUIRE_DIGESTS) == "true"
    }
    problems = []
    for m in manifests:
        if m["metadata"].get("namespace") not in strict:
            continue
        images = [(name, str(c.get("image", ""))) for name, c in containers(m)]
        if m.get("kind") == "Cluster":  # CloudNativePG's instances
            images.append(("postgres", str((m.get("spec") or {}).get("imageName", "@sha256:operator-default"))))
        problems += [
            f"{_where(m, name)}: image {image} is not pinned by digest (@sha256:...), as {REQUIRE_DIGESTS} requires"
            for name, image in images
            if "@sha256:" not in image
        ]
    return problems


RESOURCE_RULES: dict[str, tuple[str, Callable[[Manifest], list[str]]]] = {
    "gdx-limits-and-probes": (
        "Every container has CPU and memory requests and limits; services have probes",
        limits_and_probes,
    ),
    "gdx-non-root": ("No container runs as root or can escalate privileges", non_root),
    "gdx-read-only-root": ("Every container's root filesystem is read-only", read_only_root),
    "gdx-pinned-images": ("Every image is pinned to a version tag or digest, never latest", pinned_images),
    "gdx-load-balancer-reason": ("A Service of type LoadBalancer says why in an annotation", load_balancer_reason),
}
STACK_RULES: dict[str, tuple[str, Callable[[list[Manifest]], list[str]]]] = {
    "gdx-network-policy-per-namespace": (
        "Every namespace with workloads has a NetworkPolicy",
        network_policy_per_namespace,
    ),
    "gdx-pdb-for-replicated": (
        "Every Deployment with more than one replica has a PodDisruptionBudget",
        pdb_for_replicated,
    ),
    "gdx-namespace-guard-rails": (
        "Every namespace with workloads has a ResourceQuota and a LimitRange; every pod a priority class",
        namespace_guard_rails,
    ),
    "gdx-digests-where-required": (
        "In a namespace labelled gdx.io/require-image-digests, every image is pinned by digest",
        digests_where_required,
    ),
}


def check(manifests: Iterable[Manifest]) -> list[str]:
    """Every violation of every rule, each prefixed by the rule's name."""
    manifests = list(manifests)
    found = [f"{rule}: {p}" for m in manifests for rule, (_, fn) in RESOURCE_RULES.items() for p in fn(m)]
    found += [f"{rule}: {p}" for rule, (_, fn) in STACK_RULES.items() for p in fn(manifests)]
    return found
