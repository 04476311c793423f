"""Every rendered manifest against the Kubernetes 1.29 API schemas (kubernetes-validate, offline).

Custom resources (CloudNativePG, the Prometheus Operator) have no schema in kubernetes-validate's
bundle; they are listed as unchecked, never passed silently."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import kubernetes_validate

KUBERNETES_VERSION = "1.29"


@dataclass
class Report:
    checked: int = 0
    problems: list[str] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)  # "apiVersion kind name": no schema


def validate(manifests: Iterable[dict[str, Any]], version: str = KUBERNETES_VERSION) -> Report:
    report = Report()
    for manifest in manifests:
        name = f"{manifest.get('kind')} {manifest.get('metadata', {}).get('name')}"
        try:
            kubernetes_validate.validate(manifest, version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            report.unchecked.append(f"{manifest.get('apiVersion')} {name}")
            continue
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path) or "(top)"
            report.problems.append(f"{name}: {path}: {exc.message}")
        report.checked += 1
    return report
