"""Sample catalog entries and rows for tests and benchmarks: a population register keyed by resident ID
number and a legal-entity register keyed by unified social credit code, with the keys made by the
local platform's sample data (valid check digits, one generator for the whole project)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from local_platform.sample_data import credit_code as uscc
from local_platform.sample_data import resident_id

__all__ = [
    "PURPOSE", "batch", "delete", "entity_spec", "person", "population_spec", "resident_id", "unique_code", "upsert",
    "uscc",
]  # fmt: skip

PURPOSE = "城乡居民医保参保登记核验"


def population_spec(
    code: str, share_type: str = "unconditional", *, leave_out: Sequence[str] = (), **extra: Any
) -> dict[str, Any]:
    """A population table keyed by resident ID number, ten columns like the benchmark's (less
    those in ``leave_out``)."""
    spec: dict[str, Any] = {
        "code": code,
        "name": "常住人口基本信息",
        "classification": "基础信息资源/人口信息",
        "fields": [
            {"name": "id_number", "type": "string", "nullable": False},
            {"name": "name", "type": "string", "nullable": False},
            {"name": "gender", "type": "string"},
            {"name": "birth_date", "type": "date"},
            {"name": "address", "type": "string"},
            {"name": "household_size", "type": "integer"},
            {"name": "income", "type": "number"},
            {"name": "is_resident", "type": "boolean"},
            {"name": "updated_at", "type": "timestamp"},
            {"name": "remark", "type": "string"},
        ],
        "primary_key": "id_number",
        "key_kind": "resident_id",
        "share_type": share_type,
        "share_methods": ["front_end", "api", "download"],
        "update_period": "daily",
        "release_date": "2026-01-01",
    }
    if share_type == "conditional":
        spec["share_conditions"] = "仅限社会保障、卫生健康业务使用"
    if share_type == "not_shared":
        spec["legal_basis"] = "《中华人民共和国居民身份证法》第十九条"
    spec["fields"] = [f for f in spec["fields"] if f["name"] not in leave_out]
    spec.update(extra)
    return spec


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


def entity_spec(code: str) -> dict[str, Any]:
    return {
        "code": code,
        "name": "法人基本信息",
        "classification": "基础信息资源/法人信息",
        "fields": [
            {"name": "uscc", "type": "string", "nullable": False},
            {"name": "name", "type": "string", "nullable": False},
            {"name": "legal_rep", "type": "string"},
            {"name": "reg_capital", "type": "number"},
            {"name": "established", "type": "date"},
            {"name": "status", "type": "string"},
            {"name": "updated", "type": "timestamp"},
        ],
        "primary_key": "uscc",
        "key_kind": "uscc",
        "share_type": "conditional",
        "share_conditions": "仅限市场监管与卫生健康联合执法使用",
        "share_methods": ["front_end", "api"],
        "update_period": "daily",
        "release_date": "2026-01-01",
    }
