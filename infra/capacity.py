"""What the namespace may hold: the ResourceQuota computed from the stack's own settings (every
workload at its most, during a rollout, plus a quarter), and the LimitRange's defaults for pods
that state nothing (the database operator's helper pods)."""

from __future__ import annotations

import math
import re

from infra.settings import Resources, StackSettings

MONITOR = Resources(memory_request="128Mi", memory_limit="512Mi")  # the monitoring agent's container
HEADROOM = 1.25
_UNITS = {"": 1, "m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m|Ki|Mi|Gi|Ti)?$")
# For a container that states no resources.
CONTAINER_DEFAULTS = {
    "default_request": {"cpu": "100m", "memory": "128Mi"},
    "default": {"cpu": "500m", "memory": "256Mi"},
}


def quantity(text: str) -> float:
    """A Kubernetes quantity (the forms the settings accept) as cores or bytes."""
    match = _QUANTITY.match(text)
    if match is None:
        raise ValueError(f"not a quantity: {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2) or ""]


def namespace_quota(settings: StackSettings) -> dict[str, str]:
    """The ResourceQuota's hard limits for the stack's namespace."""
    counted: list[tuple[int, Resources]] = []
    x = settings.exchange
    counted.append((x.max_replicas + 1, x.resources))  # the autoscaler's most, and one more in a rollout
    counted.append((1, x.resources))  # the migration Job
    if settings.monitoring.enabled:
        counted.append((1, MONITOR))
    db = settings.database
    instances = {"statefulset": 1, "cloudnative-pg": db.instances + 1, "external": 0}[db.kind]  # +1: a join Job
    counted.append((instances, db.resources))
    pods = sum(n for n, _ in counted) + 2
    claims = {"statefulset": 1, "cloudnative-pg": db.instances * (2 if db.wal_storage else 1), "external": 0}[db.kind]
    storage = {
        "statefulset": quantity(db.storage),
        "cloudnative-pg": db.instances * (quantity(db.storage) + quantity(db.wal_storage or "0")),
        "external": 0.0,
    }[db.kind]

    def total(field: str) -> float:
        return HEADROOM * sum(n * quantity(getattr(r, field)) for n, r in counted)

    hard = {
        "requests.cpu": _cores(total("cpu_request")),
        "limits.cpu": _cores(total("cpu_limit")),
        "requests.memory": _mebibytes(total("memory_request")),
        "limits.memory": _mebibytes(total("memory_limit")),
        "pods": str(math.ceil(pods * HEADROOM)),
    }
    if claims:
        hard["persistentvolumeclaims"] = str(claims)
        hard["requests.storage"] = _gibibytes(storage)
    return hard


def _cores(value: float) -> str:
    return f"{math.ceil(value * 1000)}m"


def _mebibytes(value: float) -> str:
    return f"{math.ceil(value / 2**20)}Mi"


def _gibibytes(value: float) -> str:
    return f"{math.ceil(value / 2**30)}Gi"
