"""Catalog entries, rows and change batches for tests and benchmarks: the project's one sample
catalog (local_platform/sample_catalog.py) and its keys (local_platform/sample_data.py, valid
check digits), with the change-log wire format around them."""

from __future__ import annotations

import uuid
from typing import Any

from local_platform.sample_catalog import legal_entity_entry, licence_scan_entry, population_entry
from local_platform.sample_data import credit_code, resident_id

__all__ = [
    "PURPOSE", "batch", "credit_code", "delete", "legal_entity_entry", "licence_scan_entry", "person",
    "population_entry", "resident_id", "unique_code", "upsert",
]  # fmt: skip

PURPOSE = "城乡居民医保参保登记核验"


def unique_code(provider: str, stem: str = "population") -> str:
    return f"{provider}.{stem}-{uuid.uuid4().hex[:8]}"


def person(n: int, *, name: str | None = None) -> dict[str, Any]:
    return {
        "id_number": resident_id(n),
        "name": name or f"居民{n}",
        "gender": "女" if n % 2 else "男",
        "birth_date": "1980-05-17",
        "address": f"张家港市杨舍镇{n}号",
        "household_size": n % 6 + 1,
        "income": 5000.5 + n,
        "is_resident": True,
        "updated_at": "2026-11-01T08:00:00+08:00",
        "remark": None,
    }


def upsert(n: int, version: int, **row: Any) -> dict[str, Any]:
    data = {**person(n), **row}
    return {
        "op": "upsert",
        "key": data["id_number"],
        "row": data,
        "source_version": version,
        "source_commit_time": "2026-11-01T08:00:00+08:00",
    }


def delete(n: int, version: int) -> dict[str, Any]:
    return {
        "op": "delete",
        "key": resident_id(n),
        "source_version": version,
        "source_commit_time": "2026-11-01T08:00:00+08:00",
    }


def batch(*changes: dict[str, Any]) -> dict[str, Any]:
    return {"batch_id": str(uuid.uuid4()), "changes": list(changes)}
