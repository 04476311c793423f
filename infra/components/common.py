"""What every component's workloads share: labels, the hardened security context, resources, probes."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra.pki import Pair
from infra.settings import Resources

PART_OF = "gdx"
NON_ROOT_UID = 10001  # the USER of infra/images/gdx/Containerfile


def labels(component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": f"gdx-{component}",
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": "pulumi",
    }


def selector(component: str) -> dict[str, str]:
    """The labels a Service, PDB or NetworkPolicy selects the component's pods by (a stable subset)."""
    return {"app.kubernetes.io/name": f"gdx-{component}", "app.kubernetes.io/part-of": PART_OF}


def metadata(name: str, namespace: pulumi.Input[str], component: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "labels": labels(component), **extra}


PRIORITY_CLASS = "gdx-platform"  # made by the Foundation component


def pod_security(uid: int = NON_ROOT_UID) -> dict[str, Any]:
    return {
        "run_as_non_root": True,
        "run_as_user": uid,
        "run_as_group": uid,
        "fs_group": uid,
        "seccomp_profile": {"type": "RuntimeDefault"},
    }


def container_security() -> dict[str, Any]:
    return {
        "allow_privilege_escalation": False,
        "read_only_root_filesystem": True,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
    }


def resources(spec: Resources) -> dict[str, Any]:
    return {
        "requests": {"cpu": spec.cpu_request, "memory": spec.memory_request},
        "limits": {"cpu": spec.cpu_limit, "memory": spec.memory_limit},
    }


def http_probe(path: str, port: int, *, scheme: str = "HTTP", period: int = 10, failures: int = 3) -> dict[str, Any]:
    return {
        "http_get": {"path": path, "port": port, "scheme": scheme},
        "period_seconds": period,
        "timeout_seconds": 3,
        "failure_threshold": failures,
    }


def probes(port: int, *, scheme: str, ready: str = "/readyz", alive: str = "/healthz") -> dict[str, Any]:
    """Startup (up to a minute to boot), readiness (may take the pod out of the Service) and liveness."""
    return {
        "startup_probe": http_probe(alive, port, scheme=scheme, period=2, failures=30),
        "readiness_probe": http_probe(ready, port, scheme=scheme, period=5),
        "liveness_probe": http_probe(alive, port, scheme=scheme, period=10, failures=3),
    }


def scratch_volume(name: str = "tmp", size: str = "64Mi") -> dict[str, Any]:
    """A writable emptyDir: the root filesystem is read-only."""
    return {"name": name, "empty_dir": {"size_limit": size}}


def secret_volume(name: str, secret: pulumi.Input[str]) -> dict[str, Any]:
    # `optional` spelt out: podman 4.3's kube play crashes on a secret volume without it.
    return {"name": name, "secret": {"secret_name": secret, "default_mode": 0o440, "optional": False}}


def child(parent: pulumi.Resource, *, depends_on: list[pulumi.Resource] | None = None) -> pulumi.ResourceOptions:
    return pulumi.ResourceOptions(parent=parent, depends_on=depends_on or [])


def identity_secret(
    parent: pulumi.Resource,
    resource_name: str,
    name: str,
    namespace: pulumi.Input[str],
    component: str,
    identity: Pair,
    ca_certificate: str,
    *,
    files: tuple[str, str] = ("tls.crt", "tls.key"),
    kind: str = "Opaque",
) -> k8s.core.v1.Secret:
    """An identity of the platform's CA as a Secret: its certificate and key under ``files``, and
    the CA's certificate as ca.crt (what a TLS client or server of the platform mounts)."""
    cert_file, key_file = files
    return k8s.core.v1.Secret(
        resource_name,
        metadata=metadata(name, namespace, component),
        type=kind,
        string_data={cert_file: identity.cert, key_file: identity.key, "ca.crt": ca_certificate},
        opts=child(parent),
    )
