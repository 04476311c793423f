"""The node config file: every bad setting named, and the CLI's exit without a traceback."""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from front_end_node.config import ConfigError, load_config
from front_end_node.wire import RowMaker, digest
from gdx.fields import FieldType
from gdx.protocol import ResourceSpec
from tests.support.samples import credit_code, licence_scan_entry

GOOD = """
department: zjg-gaj
exchange: {url: "https://exchange.example:8443", ca: /etc/gdx/ca.crt, cert: /etc/gdx/node.crt, key: /etc/gdx/node.key}
front_end_db: postgresql://gdx@/gdx_frontend
business_db: {kind: mariadb, host: 10.0.0.5, port: 3306, name: hukou, user: reader, password_file: /etc/gdx/pw}
publishes: [{resource: zjg-gaj.population, table: hukou.population, change_column: updated_at}]
subscribes: [{resource: zjg-scjgj.legal-entity, purpose: 企业登记信息核验}]
"""


def test_a_good_config_loads_with_defaults(tmp_path: Path) -> None:
    path = tmp_path / "node.yml"
    path.write_text(GOOD, encoding="utf-8")
    config = load_config(path)
    assert config.listen.port == 9470
    assert config.publishes[0].compare_every() == 60.0
    assert config.subscribes[0].table_name() == "sub_zjg_scjgj_legal_entity"
    assert config.business_db is not None
    assert config.business_db.timezone == "Asia/Shanghai"


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (("https://exchange.example:8443", "http://exchange.example"), "exchange.url"),
        (("table: hukou.population", "table: 'population; DROP TABLE x'"), "publishes.0.table"),
        (("port: 3306", "port: 70000"), "business_db.port"),
        (("kind: mariadb", "kind: oracle"), "business_db.kind"),
        (("department: zjg-gaj", "department: ZJG GAJ"), "department"),
        (("name: hukou,", "name: hukou, timezone: Mars/Olympus,"), "business_db.timezone"),
        (
            ("front_end_db: postgresql://gdx@/gdx_frontend", "front_end_db: postgresql://gdx@/x\nbatch_sise: 10"),
            "batch_sise",
        ),
    ],
)
def test_each_bad_setting_is_named(tmp_path: Path, change: tuple[str, str], named: str) -> None:
    path = tmp_path / "node.yml"
    path.write_text(GOOD.replace(*change), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert f"- {named}:" in str(caught.value)


def test_publishing_needs_a_business_database(tmp_path: Path) -> None:
    path = tmp_path / "node.yml"
    path.write_text(
        "\n".join(line for line in GOOD.splitlines() if not line.startswith("business_db")), encoding="utf-8"
    )
    with pytest.raises(ConfigError, match="publishes needs business_db"):
        load_config(path)


def test_the_cli_names_the_problem_and_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "node.yml"
    path.write_text(GOOD.replace("port: 3306", "port: nope"), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "gdx.cli", "node", "run", "--config", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "business_db.port" in result.stderr
    assert "Traceback" not in result.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "gdx.cli", "node", "run", "--config", str(tmp_path / "nope.yml")],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2
    assert "cannot read the config file" in missing.stderr


def test_source_values_become_the_catalog_types() -> None:
    maker = RowMaker(
        [("n", FieldType.INTEGER), ("x", FieldType.NUMBER), ("b", FieldType.BOOLEAN), ("d", FieldType.DATE),
         ("t", FieldType.TIMESTAMP), ("s", FieldType.STRING)],
        ZoneInfo("Asia/Shanghai"),
    )  # fmt: skip
    row = maker.row(
        [
            decimal.Decimal("42"),
            decimal.Decimal("1.5"),
            1,
            dt.date(2026, 10, 1),
            dt.datetime(2026, 10, 1, 8, 0),
            b"\xe5\xbc\xa0",
        ]
    )
    assert row == {"n": 42, "x": 1.5, "b": True, "d": "2026-10-01", "t": "2026-10-01T08:00:00+08:00", "s": "张"}
    assert maker.row([decimal.Decimal("4.2"), None, 7, None, None, None])["n"] == decimal.Decimal("4.2"), (
        "a value that does not fit is left for the schema check to name"
    )
    assert digest({"a": 1, "b": 2}) == digest({"b": 2, "a": 1})
    assert digest({"a": 1}) != digest({"a": 2})


def test_a_files_bytes_become_its_digest_and_wait_to_be_taken_with_the_row() -> None:
    spec = ResourceSpec.model_validate(licence_scan_entry("zjg-scjgj.licence-scan"))
    maker = RowMaker.for_spec(spec, ZoneInfo("Asia/Shanghai"))
    pdf = b"%PDF-1.7\n" + bytes(range(256)) * 10
    row = maker.row([credit_code(1), "320582000000001", None, memoryview(pdf)])  # as a driver may hand a BLOB
    assert row["scan"] == hashlib.sha256(pdf).hexdigest()
    assert maker.take_files() == ({row["scan"]: pdf}, {})
    assert maker.take_files() == ({}, {}), "taken once"
    text = "营业执照".encode() * 10
    refused = maker.row([credit_code(2), "320582000000002", None, text])
    files, reasons = maker.take_files()
    assert files == {}
    assert list(reasons) == [credit_code(2)]
    assert "application/pdf, image/jpeg, image/png" in reasons[credit_code(2)]
    assert refused["scan"] == hashlib.sha256(text).hexdigest()
    counting = RowMaker.for_spec(spec, ZoneInfo("Asia/Shanghai"), keep_files=False)  # the reconciliation's maker
    assert counting.row([credit_code(1), "320582000000001", None, pdf])["scan"] == row["scan"]
    assert counting.take_files() == ({}, {})
