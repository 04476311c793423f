"""Realistic rows for the departments' business databases: residents keyed by valid resident ID
numbers (GB 11643), legal entities keyed by valid unified social credit codes (GB 32100).

Deterministic for a seed, so a test and a rerun see the same people."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

from stdnum.cn import ric
from stdnum.cn import uscc as uscc_number

ZHANGJIAGANG = "320582"  # the county-level city the examples are set in
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华建国红梅志文晓东海燕玲婷雪琳浩宇欣怡子涵梓轩"
TOWNS = ["杨舍镇", "塘桥镇", "金港街道", "锦丰镇", "乐余镇", "凤凰镇", "南丰镇", "大新镇"]
TRADES = ["机械制造", "纺织", "冶金", "粮油", "物流", "建材", "化工", "电子"]
KINDS = ["有限公司", "股份有限公司", "有限责任公司"]


def resident_id(n: int, *, region: str = ZHANGJIAGANG) -> str:
    """A valid 18-digit resident ID number for serial ``n`` (distinct for n < 12,000,000).

    Born from 1989 on: a number is valid only if its region code existed in the birth year, and
    python-stdnum's table has Zhangjiagang's (320582) from 1989."""
    born = dt.date(1989, 1, 1) + dt.timedelta(days=n % 12000)
    body = f"{region}{born:%Y%m%d}{(n // 12000) % 1000:03d}"
    return body + ric.calc_check_digit(body + "0")


def credit_code(n: int, *, region: str = ZHANGJIAGANG) -> str:
    """A valid 18-character unified social credit code for serial ``n`` (enterprise, registered locally)."""
    body = f"91{region}{n:09d}"
    return body + uscc_number.calc_check_digit(body + "0")


def _name(rng: random.Random) -> str:
    return rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2))))


def resident(n: int, *, seed: int = 2026, updated: dt.datetime | None = None) -> dict[str, Any]:
    rng = random.Random(seed * 1_000_003 + n)  # noqa: S311 - sample data, reproducible by design
    number = resident_id(n)
    return {
        "id_number": number,
        "name": _name(rng),
        "gender": "男" if int(number[16]) % 2 else "女",
        "birth_date": dt.date(int(number[6:10]), int(number[10:12]), int(number[12:14])),
        "address": f"张家港市{rng.choice(TOWNS)}{rng.randint(1, 300)}号",
        "household_size": rng.randint(1, 6),
        "updated_at": updated or dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=n),
    }


def legal_entity(n: int, *, seed: int = 2026, updated: dt.datetime | None = None) -> dict[str, Any]:
    rng = random.Random(seed * 7_000_003 + n)  # noqa: S311 - sample data, reproducible by design
    return {
        "credit_code": credit_code(n),
        "name": f"张家港{rng.choice('恒华新德永鑫盛瑞嘉宏')}{rng.choice('达泰昌源丰通宇')}{rng.choice(TRADES)}"
        f"{rng.choice(KINDS)}",
        "legal_representative": _name(rng),
        "registered_capital": rng.randint(10, 5000) * 10_000,
        "established": dt.date(1995, 1, 1) + dt.timedelta(days=rng.randint(0, 11000)),
        "status": rng.choice(["存续", "存续", "存续", "在业", "迁出"]),
        "updated_at": updated or dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=n),
    }
