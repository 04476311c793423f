"""The sample catalog (资源目录): the population register of a public security bureau, the
legal-entity register of a market regulation bureau and its scans of business licences (a
resource of format file), as catalog entries (sample_catalog.yml).

One catalog for every place that needs one: `make up` registers these entries (less the fields
its sample tables lack), the tests and the benchmarks register them under codes of their own.
The rows that fill them come from sample_data.py.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

CATALOG_FILE = Path(__file__).with_name("sample_catalog.yml")
NOT_SHARED_BASIS = "《中华人民共和国居民身份证法》第十九条"
COMMON = {
    "update_period": "daily",
    "usage_requirements": "仅用于本部门法定职责范围内的业务办理，并记录使用情况",
    "release_date": "2026-01-01",
}


@functools.cache
def _registers() -> dict[str, dict[str, Any]]:
    registers: dict[str, dict[str, Any]] = yaml.safe_load(CATALOG_FILE.read_text(encoding="utf-8"))
    return registers


def population_entry(
    code: str, share_type: str = "unconditional", *, leave_out: Sequence[str] = (), **extra: Any
) -> dict[str, Any]:
    """Residents keyed by resident ID number, ten fields of every type (less those in ``leave_out``)."""
    return entry("population", code, share_type, leave_out=leave_out, **extra)


def legal_entity_entry(
    code: str, share_type: str = "conditional", *, leave_out: Sequence[str] = (), **extra: Any
) -> dict[str, Any]:
    """Companies keyed by unified social credit code."""
    return entry("legal-entity", code, share_type, leave_out=leave_out, **extra)


def licence_scan_entry(
    code: str, share_type: str = "conditional", *, leave_out: Sequence[str] = (), **extra: Any
) -> dict[str, Any]:
    """Scans of business licences (format file): each record names its scan by the scan's SHA-256."""
    return entry("licence-scan", code, share_type, leave_out=leave_out, **extra)


def entry(register: str, code: str, share_type: str, *, leave_out: Sequence[str] = (), **extra: Any) -> dict[str, Any]:
    """The register's catalog entry under ``code``: share conditions only when conditional, a legal
    basis when not shared; ``extra`` settings override any of it."""
    spec = copy.deepcopy(_registers()[register])
    conditions = spec.pop("share_conditions")
    spec["fields"] = [field for field in spec["fields"] if field["name"] not in leave_out]
    made: dict[str, Any] = {"code": code, **spec, "share_type": share_type, **COMMON}
    if share_type == "conditional":
        made["share_conditions"] = conditions
    if share_type == "not_shared":
        made["legal_basis"] = NOT_SHARED_BASIS
    return made | extra
