"""Templates, file uploads and file downloads (模板导入, 文件上传): the fallback channel of a
department without a front-end node, on a real exchange and PostgreSQL."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import zipfile
from typing import Any

import pytest
import python_calamine
import xlsxwriter
from typer.testing import CliRunner

from exchange.spreadsheets.read import Spool
from exchange.spreadsheets.write import XLSX_MEDIA_TYPE
from gdx.cli import app
from tests.support.exchange import RunningExchange
from tests.support.samples import PURPOSE, batch, population_entry, resident_id, unique_code, upsert

HEADER = ["id_number", "name", "gender", "birth_date", "address", "household_size", "income", "is_resident",
          "updated_at", "remark"]  # fmt: skip


@pytest.fixture
def resource(exchange: RunningExchange) -> str:
    code = unique_code("zjg-gaj")
    entry = population_entry(code, share_methods=["front_end", "api", "download", "file"])
    assert exchange.client("zjg-gaj").post("/v1/resources", json=entry).status_code == 201
    return code


def _csv(rows: list[list[Any]], header: list[str] = HEADER, encoding: str = "utf-8") -> bytes:
    text = io.StringIO()
    csv.writer(text).writerows([header, *rows])
    return text.getvalue().encode(encoding)


def _person(n: int, **changed: Any) -> list[Any]:
    row = {"id_number": resident_id(n), "name": f"居民{n}", "gender": "女", "birth_date": "1980/5/17",
           "address": f"张家港市杨舍镇{n}号", "household_size": "3", "income": "5000.50", "is_resident": "是",
           "updated_at": "2026-11-01 08:00:00", "remark": ""}  # fmt: skip
    row.update(changed)
    return [row[name] for name in HEADER] + ([changed["_delete"]] if "_delete" in changed else [])


def _upload(exchange: RunningExchange, code: str, body: bytes, who: str = "zjg-gaj", **params: str) -> Any:
    return exchange.client(who).post(f"/v1/resources/{code}/uploads", content=body, params=params,
                                     headers={"content-type": "text/csv"})  # fmt: skip


def _current(exchange: RunningExchange, code: str) -> dict[str, dict[str, Any]]:
    lines = exchange.client("zjg-gaj").get(f"/v1/resources/{code}/records", params={"purpose": PURPOSE})
    assert lines.status_code == 200, lines.text
    return {row["id_number"]: row for row in map(json.loads, lines.text.splitlines())}


def _last_seq(exchange: RunningExchange, code: str) -> int:
    changes = (
        exchange.client("zjg-gaj")
        .get(f"/v1/resources/{code}/changes", params={"purpose": PURPOSE, "limit": 5000})
        .json()
    )
    return int(changes["next_after"])


def test_the_template_names_each_field_its_type_and_the_key(exchange: RunningExchange, resource: str) -> None:
    answer = exchange.client("zjg-wjw").get(f"/v1/resources/{resource}/template.csv")
    assert answer.status_code == 200
    assert answer.content.startswith(b"\xef\xbb\xbf")  # Excel reads it as UTF-8
    header, types, example = list(csv.reader(io.StringIO(answer.content.decode("utf-8-sig"))))
    assert header[0] == "*id_number（公民身份号码）"
    assert header[1] == "*name（姓名）"
    assert header[2] == "gender（性别）"
    assert header[-1] == "_delete（删除标记）"
    assert types[0].startswith("# ")
    assert "公民身份号码" in types[0]
    assert "必填" in types[0]
    assert "日期" in types[3]
    assert "可空" in types[3]
    assert example[0] == "# 示例 example: 11010519491231002X"

    workbook = exchange.client("zjg-wjw").get(f"/v1/resources/{resource}/template.xlsx", params={"mode": "replace"})
    assert workbook.status_code == 200
    assert workbook.headers["content-type"] == XLSX_MEDIA_TYPE
    book = python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(workbook.content))
    assert book.sheet_names == ["数据", "说明"]
    rows = book.get_sheet_by_name("数据").to_python()
    assert rows[0] == header[:-1]  # no deletion column in a template for a full replacement
    with zipfile.ZipFile(io.BytesIO(workbook.content)) as parts:
        sheet = parts.read("xl/worksheets/sheet1.xml").decode()
    assert sheet.count("<dataValidation ") == len(HEADER)
    assert 'type="textLength"' in sheet
    assert 'type="date"' in sheet
    assert 'type="whole"' in sheet

    # The template as downloaded is a valid, empty upload: its two note rows are skipped.
    empty = _upload(exchange, resource, answer.content)
    assert empty.status_code == 201, empty.text
    assert empty.json()["counts"] == {"rows": 0, "upserted": 0, "unchanged": 0, "deleted": 0, "absent": 0,
                                      "notes": 2, "blank": 0}  # fmt: skip


def test_a_csv_file_of_changes_lands_whole_and_again_changes_nothing(exchange: RunningExchange, resource: str) -> None:
    body = _csv([_person(n) for n in range(1, 6)])
    first = _upload(exchange, resource, body)
    assert first.status_code == 201, first.text
    receipt = first.json()
    assert receipt["format"] == "csv"
    assert receipt["encoding"] == "utf-8"
    assert receipt["outcome"] == "applied"
    assert receipt["counts"]["rows"] == 5
    assert receipt["counts"]["upserted"] == 5
    assert (receipt["first_seq"], receipt["last_seq"]) == (1, 5)
    assert receipt["sha256"] == hashlib.sha256(body).hexdigest()
    assert receipt["bytes"] == len(body)
    held = _current(exchange, resource)[resident_id(3)]
    assert held["birth_date"] == "1980-05-17"
    assert held["household_size"] == 3
    assert held["income"] == 5000.5
    assert held["is_resident"] is True
    assert held["updated_at"] == "2026-11-01T08:00:00+08:00"  # Beijing time unless the file says otherwise
    assert held["remark"] is None

    again = _upload(exchange, resource, body).json()
    assert again["counts"]["upserted"] == 0
    assert again["counts"]["unchanged"] == 5
    assert again["first_seq"] is None
    assert _last_seq(exchange, resource) == 5

    changed = _upload(exchange, resource, _csv([_person(2, address="张家港市金港镇1号"), _person(6)])).json()
    assert changed["counts"]["upserted"] == 2
    assert (changed["first_seq"], changed["last_seq"]) == (6, 7)
    entries = exchange.client("bob").get("/v1/audit", params={"resource": resource, "action": "upload"}).json()
    assert [e["scope"]["rows"] for e in entries] == [5, 5, 2]
    assert entries[0]["scope"]["sha256"] == receipt["sha256"]
    assert entries[0]["outcome"] == "ok"


def test_gb18030_is_found_and_stated(exchange: RunningExchange, resource: str) -> None:
    body = _csv([_person(1, name="欧阳娜娜", address="张家港市锦丰镇")], encoding="gb18030")
    with pytest.raises(UnicodeDecodeError):
        body.decode("utf-8")
    receipt = _upload(exchange, resource, body).json()
    assert receipt["encoding"] == "gb18030"
    assert _current(exchange, resource)[resident_id(1)]["name"] == "欧阳娜娜"


def test_a_file_with_bad_rows_changes_nothing_and_says_what_to_fix(exchange: RunningExchange, resource: str) -> None:
    assert _upload(exchange, resource, _csv([_person(1)])).status_code == 201
    bad_id = resident_id(7)[:-1] + ("0" if resident_id(7)[-1] != "0" else "1")
    rows = [
        _person(1, name="改了的名字"),  # good, but the file is refused: nothing of it lands
        _person(2, id_number=bad_id),
        _person(3, name=""),
        _person(4, birth_date="1980-02-30", is_resident="也许"),
        _person(5, household_size="3.5"),
        _person(2),
        _person(2, name="同一个人"),
    ]
    refused = _upload(exchange, resource, _csv(rows))
    assert refused.status_code == 422, refused.text
    answer = refused.json()
    assert answer["error"] == "invalid_rows"
    assert "nothing was applied" in answer["message"]
    found = {(p["row"], p["column"], p["field"]): p for p in answer["details"]}
    assert set(found) == {(3, "A", "id_number"), (4, "B", "name"), (5, "D", "birth_date"), (5, "H", "is_resident"),
                          (6, "F", "household_size"), (8, "A", "id_number")}  # fmt: skip
    assert "check digit" in found[(3, "A", "id_number")]["problem"]
    assert found[(3, "A", "id_number")]["value"] == bad_id
    assert "required" in found[(4, "B", "name")]["problem"]
    assert "no such date" in found[(5, "D", "birth_date")]["problem"]
    assert found[(6, "F", "household_size")]["value"] == "3.5"
    assert "row 7" in found[(8, "A", "id_number")]["problem"]
    assert _current(exchange, resource)[resident_id(1)]["name"] == "居民1"
    assert _last_seq(exchange, resource) == 1

    upload_id = int(answer["message"].rsplit("/v1/uploads/", 1)[1].split("/")[0])
    kept = exchange.client("zjg-gaj").get(f"/v1/uploads/{upload_id}").json()
    assert kept["outcome"] == "refused"
    assert kept["problems"] == 6
    assert kept["counts"] is None
    assert exchange.client("zjg-wjw").get(f"/v1/uploads/{upload_id}").status_code == 404  # not its upload
    report = exchange.client("zjg-gaj").get(f"/v1/uploads/{upload_id}/report.xlsx")
    assert report.status_code == 200
    book = python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(report.content))
    listing = book.get_sheet_by_name("错误").to_python()
    assert [(int(r[0]), r[1], r[2]) for r in listing[1:]] == sorted(found, key=lambda k: (k[0], k[1]))
    data = book.get_sheet_by_name("数据").to_python()
    assert data[0][-1] == "_row（原行号）"
    assert [int(r[-1]) for r in data[1:]] == [3, 4, 5, 6, 8]
    with zipfile.ZipFile(io.BytesIO(report.content)) as parts:
        comments = next(parts.read(n).decode() for n in parts.namelist() if "comments" in n)
    assert "wrong check digit" in comments
    assert "no such date" in comments

    # The report's data sheet, put right, is an upload of its own: the _row column is skipped.
    fixed = [r[:-1] for r in data[1:]]
    fixed[0][0] = resident_id(7)
    fixed[1][1] = "补上的名字"
    fixed[2][3], fixed[2][7] = "1980-02-28", "否"
    fixed[3][5] = "4"
    fixed[4][1] = "居民2"
    fixed[4][0] = resident_id(8)
    again = _upload(exchange, resource, _csv(fixed, header=data[0]))
    assert again.status_code == 201, again.text
    assert again.json()["counts"]["upserted"] == 5
    entries = exchange.client("bob").get("/v1/audit", params={"resource": resource, "action": "upload"}).json()
    assert [e["outcome"] for e in entries] == ["ok", "refused", "ok"]
    assert entries[1]["scope"]["upload"] == upload_id
    assert entries[1]["scope"]["status"] == 422


def test_deletions_are_marked_in_a_file_of_changes_and_implied_by_a_replacement(
    exchange: RunningExchange, resource: str
) -> None:
    marked = _csv([_person(2, _delete="删除"), _person(9, _delete="删除"), _person(6)], header=[*HEADER, "_delete"])
    first = _upload(exchange, resource, marked).json()  # into the empty resource: nothing to delete yet
    assert (first["counts"]["upserted"], first["counts"]["absent"], first["last_seq"]) == (1, 2, 1)
    assert _upload(exchange, resource, _csv([_person(n) for n in range(1, 6)])).status_code == 201
    receipt = _upload(exchange, resource, marked).json()
    assert receipt["counts"] == {"rows": 3, "upserted": 0, "unchanged": 1, "deleted": 1, "absent": 1,
                                 "notes": 0, "blank": 0}  # fmt: skip
    assert sorted(_current(exchange, resource)) == sorted(resident_id(n) for n in (1, 3, 4, 5, 6))

    replaced = _upload(exchange, resource, _csv([_person(1), _person(4, name="新名字")]), mode="replace").json()
    assert replaced["counts"]["deleted"] == 3
    assert replaced["counts"]["upserted"] == 1
    assert replaced["counts"]["unchanged"] == 1
    held = _current(exchange, resource)
    assert sorted(held) == [resident_id(1), resident_id(4)]
    assert held[resident_id(4)]["name"] == "新名字"

    wrong = _upload(exchange, resource, marked, mode="replace")
    assert wrong.status_code == 422
    assert wrong.json()["error"] == "invalid_file"
    assert "remove that column" in wrong.json()["message"]


def test_a_workbook_with_typed_cells(exchange: RunningExchange, resource: str, tmp_path: Any) -> None:
    path = tmp_path / "filled.xlsx"
    with xlsxwriter.Workbook(path) as book:
        sheet = book.add_worksheet("数据")
        sheet.write_row(0, 0, [f"{name}（x）" for name in HEADER])
        sheet.write_row(1, 0, ["# notes"])
        when = book.add_format({"num_format": "yyyy-mm-dd"})
        for r, n in enumerate(range(1, 4), start=2):
            sheet.write_string(r, 0, resident_id(n))
            sheet.write_string(r, 1, f"居民{n}")
            sheet.write_datetime(r, 3, dt.datetime(1990, 1, n), when)
            sheet.write_number(r, 5, n)
            sheet.write_number(r, 6, 1234.25)
            sheet.write_boolean(r, 7, n % 2 == 1)
            sheet.write_datetime(r, 8, dt.datetime(2026, 12, 1, 9, 30), when)
            sheet.write_number(r, 9, 13800000000)  # a number in a text field
    answer = exchange.client("zjg-gaj").post(f"/v1/resources/{resource}/uploads", content=path.read_bytes(),
                                             headers={"content-type": XLSX_MEDIA_TYPE})  # fmt: skip
    assert answer.status_code == 201, answer.text
    assert answer.json()["format"] == "xlsx"
    assert answer.json()["counts"]["notes"] == 1
    held = _current(exchange, resource)[resident_id(2)]
    assert held["birth_date"] == "1990-01-02"
    assert held["household_size"] == 2
    assert held["income"] == 1234.25
    assert held["is_resident"] is False
    assert held["updated_at"] == "2026-12-01T09:30:00+08:00"
    assert held["remark"] == "13800000000"
    assert held["gender"] is None


def test_who_may_upload_and_what(exchange: RunningExchange, resource: str) -> None:
    body = _csv([_person(1)])
    assert _upload(exchange, resource, body, who="zjg-wjw").status_code == 403
    form = exchange.client("zjg-gaj").post(f"/v1/resources/{resource}/uploads", files={"file": ("a.csv", body)})
    assert form.status_code == 415
    assert "--data-binary" in form.json()["message"]
    assert _upload(exchange, resource, b"").json()["error"] == "invalid_file"
    zone = _upload(exchange, resource, body, timezone="Mars/Olympus")
    assert zone.status_code == 422
    assert "Mars/Olympus" in zone.json()["message"]
    header = _upload(exchange, resource, _csv([["x"]], header=["身份证"]))
    assert header.status_code == 422
    assert "身份证" in header.json()["message"]
    not_text = _upload(exchange, resource, "姓名\n".encode() + b"\x81\x30\xff\xff\n")
    assert not_text.status_code == 422
    assert "neither UTF-8 nor GB18030" in not_text.json()["message"]
    # A resource its node publishes takes no files: they would fight over the same keys.
    gaj = exchange.client("zjg-gaj")
    beat = {"seq": 1, "source_time": dt.datetime.now(dt.UTC).isoformat()}
    assert gaj.post(f"/v1/resources/{resource}/changes", json={**batch(), "heartbeat": beat}).status_code == 200
    published = _upload(exchange, resource, body)
    assert published.status_code == 409
    assert "front-end node" in published.json()["message"]
    refusals = exchange.client("bob").get("/v1/audit", params={"resource": resource, "action": "upload"}).json()
    assert [e["scope"]["status"] for e in refusals] == [403, 415, 422, 422, 422, 422, 409]


def test_a_subscriber_downloads_its_granted_fields_as_csv_or_a_workbook(exchange: RunningExchange) -> None:
    code = unique_code("zjg-gaj")
    entry = population_entry(code, "conditional", share_methods=["front_end", "file"])
    assert exchange.client("zjg-gaj").post("/v1/resources", json=entry).status_code == 201
    gaj = exchange.client("zjg-gaj")
    assert gaj.post(f"/v1/resources/{code}/changes", json=batch(*(upsert(n, 1) for n in range(3)))).status_code == 200
    filed = exchange.client("zjg-wjw").post("/v1/requests", json={"resource": code, "purpose": PURPOSE,
                                                                  "fields": ["name", "income"]}).json()  # fmt: skip
    gaj.post(f"/v1/requests/{filed['id']}/approve", json={})
    wjw = exchange.client("zjg-wjw")
    answer = wjw.get(f"/v1/resources/{code}/records", params={"purpose": PURPOSE, "format": "csv"})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(answer.content.decode("utf-8-sig"))))
    assert rows[0] == ["*id_number（公民身份号码）", "*name（姓名）", "income（月收入（元））"]
    assert rows[1:] == [[resident_id(n), f"居民{n}", str(5000.5 + n)] for n in range(3)]
    old_excel = wjw.get(f"/v1/resources/{code}/records", params={"purpose": PURPOSE, "format": "csv",
                                                                 "encoding": "gb18030"})  # fmt: skip
    assert old_excel.content.decode("gb18030").splitlines()[1].split(",")[1] == "居民0"
    book = wjw.get(f"/v1/resources/{code}/records", params={"purpose": PURPOSE, "format": "xlsx"})
    sheet = python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(book.content)).get_sheet_by_name("数据")
    assert sheet.to_python()[1] == [resident_id(0), "居民0", 5000.5]
    # Not offered as NDJSON (the download method): the file method is.
    assert wjw.get(f"/v1/resources/{code}/records", params={"purpose": PURPOSE}).status_code == 403
    entries = exchange.client("bob").get("/v1/audit", params={"resource": code, "action": "download"}).json()
    assert [(e["scope"].get("format"), e["outcome"]) for e in entries] == [
        ("csv", "ok"), ("csv", "ok"), ("xlsx", "ok"), (None, "refused")
    ]  # fmt: skip
    assert entries[0]["scope"]["fields"] == ["name", "income"]
    assert entries[0]["purpose"] == PURPOSE


def test_gdx_template_and_gdx_upload_from_a_desk(exchange: RunningExchange, resource: str, tmp_path: Any) -> None:
    identity = ["--exchange", exchange.url, "--cert", str(exchange.pki / "zjg-gaj.crt"),
                "--key", str(exchange.pki / "zjg-gaj.key"), "--ca", str(exchange.pki / "ca.crt")]  # fmt: skip
    runner = CliRunner()
    template = tmp_path / "filled.csv"
    made = runner.invoke(app, ["template", resource, "--out", str(template), *identity])
    assert made.exit_code == 0, made.output
    lines = template.read_text(encoding="utf-8-sig").splitlines()
    template.write_text("\n".join([*lines, ",".join(_person(1))[:-1], ",".join(_person(2, name=""))]), "utf-8")
    refused = runner.invoke(app, ["upload", resource, str(template), *identity])
    assert refused.exit_code == 1, refused.output
    assert "row 5, column B (name): required" in refused.output
    report = tmp_path / "filled-report.xlsx"
    assert python_calamine.CalamineWorkbook.from_path(str(report)).sheet_names == ["错误", "数据"]
    template.write_text("\n".join([*lines, ",".join(_person(1))[:-1], ",".join(_person(2))[:-1]]), "utf-8")
    applied = runner.invoke(app, ["upload", resource, str(template), *identity])
    assert applied.exit_code == 0, applied.output
    assert "2 rows, 2 new or changed" in applied.output
    incomplete = runner.invoke(app, ["upload", resource, str(template), "--exchange", exchange.url])
    assert incomplete.exit_code == 2
    assert "--cert, --key, --ca" in incomplete.output


def test_a_workbook_that_unpacks_too_large_is_refused_before_it_is_read(
    exchange: RunningExchange, resource: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("exchange.spreadsheets.read.MAX_UNPACKED_BYTES", 1024 * 1024)
    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as bomb:
        bomb.writestr("xl/worksheets/sheet1.xml", b"\0" * (2 * 1024 * 1024))
    assert len(packed.getvalue()) < 10_000
    answer = exchange.client("zjg-gaj").post(f"/v1/resources/{resource}/uploads", content=packed.getvalue(),
                                             headers={"content-type": XLSX_MEDIA_TYPE})  # fmt: skip
    assert answer.status_code == 422
    assert "unpacks to 2 MiB" in answer.json()["message"]


def test_a_field_named_like_the_deletion_column_is_a_field(exchange: RunningExchange) -> None:
    code = unique_code("zjg-gaj", "flags")
    entry = population_entry(code, leave_out=["remark"])
    entry["fields"] = [*entry["fields"], {"name": "_delete", "type": "string", "description": "注销标志"}]
    assert exchange.client("zjg-gaj").post("/v1/resources", json=entry).status_code == 201
    header = [*HEADER[:-1], "_delete"]
    answer = _upload(exchange, code, _csv([[*_person(1)[:-1], "删除"]], header=header))
    assert answer.status_code == 201, answer.text
    assert answer.json()["counts"]["upserted"] == 1
    assert _current(exchange, code)[resident_id(1)]["_delete"] == "删除"


def test_the_format_and_encoding_are_told_by_the_bytes(tmp_path: Any) -> None:
    def spooled(body: bytes) -> Spool:
        spool = Spool(tmp_path)
        for start in range(0, len(body), 3):  # in pieces, as a body arrives, a character split across two
            spool.write(body[start : start + 3])
        spool.finish()
        return spool

    ods = io.BytesIO()
    with zipfile.ZipFile(ods, "w") as packed:
        packed.writestr("mimetype", "application/vnd.oasis.opendocument.spreadsheet")
    assert spooled(ods.getvalue()).format() == "ods"
    assert spooled(b"PK\x03\x04rest").format() == "xlsx"
    assert spooled(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1rest").format() == "xls"
    assert spooled("姓名,住址\n".encode()).encoding() == "utf-8"
    assert spooled(b"\xef\xbb\xbf" + "姓名\n".encode()).encoding() == "utf-8-sig"
    assert spooled("姓名,住址\n".encode("gb18030")).encoding() == "gb18030"
