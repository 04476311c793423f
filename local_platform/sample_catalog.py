"""The sample catalog (资源目录): the population register of a public security bureau and the
legal-entity register of a market regulation bureau, as catalog entries.

One catalog for every place that needs one: `make up` registers these entries (less the fields
its sample tables lack), the tests and the benchmarks register them under codes of their own.
The rows that fill them come from sample_data.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# (name, type, nullable, description: the field's Chinese name)
POPULATION_FIELDS = (
    ("id_number", "string", False, "公民身份号码"),
    ("name", "string", False, "姓名"),
    ("gender", "string", True, "性别"),
    ("birth_date", "date", True, "出生日期"),
    ("address", "string", True, "住址"),
    ("household_size", "integer", True, "户内人数"),
    ("income", "number", True, "月收入（元）"),
    ("is_resident", "boolean", True, "是否常住"),
    ("updated_at", "timestamp", True, "更新时间"),
    ("remark", "string", True, "备注"),
)
LEGAL_ENTITY_FIELDS = (
    ("credit_code", "string", False, "统一社会信用代码"),
    ("name", "string", False, "名称"),
    ("legal_representative", "string", True, "法定代表人"),
    ("registered_capital", "integer", True, "注册资本（元）"),
    ("established", "date", True, "成立日期"),
    ("status", "string", True, "登记状态"),
    ("updated_at", "timestamp", True, "更新时间"),
)
CONDITIONS = {
    "population": "仅限社会保障、卫生健康业务使用",
    "legal-entity": "仅限市场监管、卫生健康、税务业务核验使用，不得向第三方提供",
}
NOT_SHARED_BASIS = "《中华人民共和国居民身份证法》第十九条"


def population_entry(
    code: str, share_type: str = "unconditional", *, leave_out: Sequence[str] = (), **extra: Any
) -> dict[str, Any]:
    """Residents keyed by resident ID number, ten fields of every type (less those in ``leave_out``)."""
    return _entry(
        code, "常住人口基本信息", "基础信息资源/人口信息", POPULATION_FIELDS, "id_number", "resident_id",
        share_type, CONDITIONS["population"], ["front_end", "api", "download"], leave_out, extra,
    )  # fmt: skip


def legal_entity_entry(
    code: str, share_type: str = "conditional", *, leave_out: Sequence[str] = (), **extra: Any
) -> dict[str, Any]:
    """Companies keyed by unified social credit code."""
    return _entry(
        code, "市场主体登记信息", "基础信息资源/法人单位信息", LEGAL_ENTITY_FIELDS, "credit_code", "uscc",
        share_type, CONDITIONS["legal-entity"], ["front_end", "api"], leave_out, extra,
    )  # fmt: skip


def _entry(
    code: str,
    name: str,
    classification: str,
    fields: Sequence[tuple[str, str, bool, str]],
    key: str,
    key_kind: str,
    share_type: str,
    conditions: str,
    methods: list[str],
    leave_out: Sequence[str],
    extra: dict[str, Any],
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "code": code,
        "name": name,
        "classification": classification,
        "fields": [
            {"name": field, "type": kind, "nullable": nullable, "description": description}
            for field, kind, nullable, description in fields
            if field not in leave_out
        ],
        "primary_key": key,
        "key_kind": key_kind,
        "share_type": share_type,
        "share_methods": methods,
        "update_period": "daily",
        "usage_requirements": "仅用于本部门法定职责范围内的业务办理，并记录使用情况",
        "release_date": "2026-01-01",
    }
    if share_type == "conditional":
        entry["share_conditions"] = conditions
    if share_type == "not_shared":
        entry["legal_basis"] = NOT_SHARED_BASIS
    entry.update(extra)
    return entry
