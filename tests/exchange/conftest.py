from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.support.exchange import RunningExchange, start_exchange
from tests.support.postgres import PostgresServer


@pytest.fixture(scope="session")
def exchange(pg: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningExchange]:
    running = start_exchange(pg, tmp_path_factory.mktemp("exchange"))
    yield running
    running.stop()


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


def resident_id(n: int) -> str:
    """A valid 18-digit resident ID number (GB 11643 check digit) for serial ``n``."""
    from stdnum.cn import ric

    body = f"320582{dt.date(1990, 1, 1) + dt.timedelta(days=n % 10000):%Y%m%d}{(n // 10000) % 1000:03d}"
    return body + ric.calc_check_digit(body + "0")


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


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    return tmp_path
