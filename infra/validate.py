"""Every rendered manifest against the Kubernetes 1.29 API schemas (kubernetes-validate, offline).

Custom resources (CloudNativePG, the Prometheus Operator) have no schema in kubernetes-validate's
bundle; they are checked against their CRDs' schemas as kubernetes-models compiles them
(infra/crd, installed by `make setup` with npm). Without those, they are listed as unchecked,
never passed silently."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes_validate

KUBERNETES_VERSION = "1.29"
CRD_DIR = Path(__file__).resolve().parent / "crd"


@dataclass
class Report:
    checked: int = 0
    problems: list[str] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)  # "apiVersion kind name": no schema


def validate(manifests: Iterable[dict[str, Any]], version: str = KUBERNETES_VERSION) -> Report:
    report = Report()
    custom: list[dict[str, Any]] = []
    for manifest in manifests:
        try:
            kubernetes_validate.validate(manifest, version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            custom.append(manifest)
            continue
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path) or "(top)"
            report.problems.append(f"{_name(manifest)}: {path}: {exc.message}")
        report.checked += 1
    for manifest, result in zip(custom, _validate_custom(custom), strict=True):
        if not result.get("known"):
            report.unchecked.append(f"{manifest.get('apiVersion')} {_name(manifest)}")
            continue
        report.checked += 1
        if result.get("error"):
            report.problems.append(f"{_name(manifest)}: {result['error']}")
    return report


def crd_schemas_installed() -> bool:
    return shutil.which("node") is not None and (CRD_DIR / "node_modules" / "@kubernetes-models").is_dir()


def _validate_custom(manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if not manifests or not crd_schemas_installed():
        return [{"known": False} for _ in manifests]
    done = subprocess.run(
        ["node", str(CRD_DIR / "validate.mjs")],
        input=json.dumps(manifests),
        capture_output=True,
        text=True,
        cwd=CRD_DIR,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"infra/crd/validate.mjs failed: {done.stderr.strip()[-1000:]}")
    results: list[dict[str, Any]] = json.loads(done.stdout)
    return results


def _name(manifest: dict[str, Any]) -> str:
    return f"{manifest.get('kind')} {manifest.get('metadata', {}).get('name')}"
