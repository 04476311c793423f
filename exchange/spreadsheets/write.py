"""Workbooks (XlsxWriter) the exchange hands out: a template, an upload's error report, and a
granted resource's rows. All are written to a file first (a download streams from it), in
XlsxWriter's constant-memory mode where rows are many."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import xlsxwriter
from xlsxwriter.worksheet import Worksheet

from exchange.spreadsheets.read import DATA_SHEET
from exchange.spreadsheets.rows import MAX_PROBLEMS, ORIGINAL_ROW, Problem, column_letter
from exchange.spreadsheets.template import example, label, template
from gdx.fields import FieldType, KeyKind
from gdx.protocol import ResourceSpec

XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
LAST_ROW = 1_048_575  # a worksheet's last row, counted from 0
_HEADER = {"bold": True, "bg_color": "#DDEBF7", "border": 1, "text_wrap": True, "valign": "top"}
_NOTE = {"italic": True, "font_color": "#7F7F7F", "text_wrap": True, "valign": "top"}


def _validation(spec: ResourceSpec, name: str, field_type: FieldType) -> dict[str, Any]:
    """What Excel checks as a cell is typed (the exchange checks again on upload)."""
    if name == spec.primary_key and spec.key_kind is not KeyKind.PLAIN:
        return {"validate": "length", "criteria": "==", "value": 18,
                "error_message": "18 位：17 位数字和 1 位校验位 (0-9 或 X)"}  # fmt: skip
    if field_type is FieldType.INTEGER:
        return {"validate": "integer", "criteria": "between", "minimum": -(2**53), "maximum": 2**53,
                "error_message": "请填整数 an integer"}  # fmt: skip
    if field_type is FieldType.NUMBER:
        return {"validate": "decimal", "criteria": "between", "minimum": -1e300, "maximum": 1e300,
                "error_message": "请填数值 a number"}  # fmt: skip
    if field_type is FieldType.BOOLEAN:
        return {"validate": "list", "source": ["是", "否"], "error_message": "请选“是”或“否”"}
    if field_type is FieldType.DATE:
        return {"validate": "date", "criteria": "between", "minimum": dt.date(1800, 1, 1),
                "maximum": dt.date(9999, 12, 31), "error_message": "请填日期 YYYY-MM-DD"}  # fmt: skip
    return {"validate": "any"}


def write_template(spec: ResourceSpec, path: Path, *, deletions: bool) -> None:
    made = template(spec, deletions=deletions)
    with xlsxwriter.Workbook(path) as workbook:
        header = workbook.add_format(_HEADER)
        note = workbook.add_format(_NOTE)
        text = workbook.add_format({"num_format": "@"})
        date = workbook.add_format({"num_format": "yyyy-mm-dd"})
        moment = workbook.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
        sheet = workbook.add_worksheet(DATA_SHEET)
        sheet.write_row(0, 0, made.header, header)
        sheet.write_row(1, 0, made.types, note)
        sheet.write_row(2, 0, made.example, note)
        sheet.set_row(1, 45)
        sheet.freeze_panes(1, 0)
        for index, spec_field in enumerate(spec.fields):
            cell_format = {FieldType.DATE: date, FieldType.TIMESTAMP: moment}.get(spec_field.type)
            if spec_field.type is FieldType.STRING:
                cell_format = text
            sheet.set_column(index, index, 22, cell_format)
            rule = _validation(spec, spec_field.name, spec_field.type)
            rule["input_title"] = spec_field.name[:32]
            rule["input_message"] = made.types[index].lstrip("# ")[:255]
            if "error_message" in rule:
                rule["error_title"] = "格式不符"
            sheet.data_validation(3, index, LAST_ROW, index, rule)
        if deletions:
            column = len(spec.fields)
            sheet.set_column(column, column, 14, text)
            sheet.data_validation(3, column, LAST_ROW, column, {"validate": "list", "source": ["删除"]})
        _instructions(workbook, spec, made.types, deletions)


def _instructions(workbook: xlsxwriter.Workbook, spec: ResourceSpec, types: list[str], deletions: bool) -> None:
    sheet = workbook.add_worksheet("说明")
    bold = workbook.add_format({"bold": True})
    lines = [
        (f"{spec.name}（{spec.code}）", bold),
        ("在“数据”表第 4 行起填写，每行一条记录；第 2、3 行（首格以 # 开头）为说明和示例，上传时跳过。", None),
        (
            "Fill the 数据 sheet from row 4, one record a row; rows 2 and 3 (first cell starting with #) are notes.",
            None,
        ),
        ("上传：gdx upload RESOURCE FILE，或 POST /v1/resources/{code}/uploads?mode=changes|replace", None),
        (
            "changes：新增或修改；“删除标记”列填“删除”的行删除该主键。replace：整表替换，文件中没有的主键全部删除。"
            if deletions
            else "replace：整表替换，文件中没有的主键全部删除。",
            None,
        ),
        ("任何一行有错，整个文件都不生效，并返回错误报告（行号、字段、值、原因）。", None),
        ("", None),
    ]
    for row, (text, cell_format) in enumerate(lines):
        sheet.write(row, 0, text, cell_format)
    start = len(lines)
    sheet.write_row(start, 0, ["字段 field", "中文名 name", "类型与要求 type", "示例 example"], bold)
    for offset, spec_field in enumerate(spec.fields, start=1):
        sheet.write_row(start + offset, 0, [spec_field.name, spec_field.description, types[offset - 1].lstrip("# "),
                                            example(spec, spec_field)])  # fmt: skip
    sheet.set_column(0, 1, 20)
    sheet.set_column(2, 2, 60)
    sheet.set_column(3, 3, 24)


def write_report(
    path: Path, header: list[str], problems: list[Problem], bad_cells: list[tuple[int, list[str]]]
) -> None:
    """The problems as a list, and the bad rows as they were uploaded with the bad cells marked
    (filled red, the reason in the cell's comment). The 数据 sheet, put right, can be uploaded
    as changes: its ``_row`` column, the row's number in the original file, is skipped."""
    with xlsxwriter.Workbook(path) as workbook:
        bold = workbook.add_format(_HEADER)
        bad = workbook.add_format({"bg_color": "#FFC7CE", "font_color": "#9C0006", "num_format": "@"})
        text = workbook.add_format({"num_format": "@"})
        listing = workbook.add_worksheet("错误")
        listing.write_row(0, 0, ["行 row", "列 column", "字段 field", "值 value", "原因 problem"], bold)
        for index, problem in enumerate(problems, start=1):
            listing.write_row(index, 0, [problem.row, problem.column, problem.field, problem.value, problem.problem])
        listing.set_column(0, 1, 8)
        listing.set_column(2, 3, 22)
        listing.set_column(4, 4, 80)
        listing.freeze_panes(1, 0)
        if len(problems) >= MAX_PROBLEMS:
            listing.write(len(problems) + 1, 0, f"only the first {MAX_PROBLEMS:,} problems are listed")
        data = workbook.add_worksheet(DATA_SHEET)
        width = max([len(header), *(len(cells) for _, cells in bad_cells)])
        data.write_row(0, 0, header, bold)
        data.write(0, width, f"{ORIGINAL_ROW}（原行号）", bold)
        marked: dict[tuple[int, str], list[str]] = {}
        for problem in problems:
            marked.setdefault((problem.row, problem.column), []).append(problem.problem)
        for out, (number, cells) in enumerate(bad_cells, start=1):
            for index, value in enumerate(cells):
                reasons = marked.get((number, column_letter(index)))
                data.write_string(out, index, value, bad if reasons else text)
                if reasons:
                    data.write_comment(out, index, "\n".join(reasons), {"x_scale": 2, "y_scale": 1.5})
            data.write_number(out, width, number)
        data.freeze_panes(1, 0)
        data.set_column(0, width - 1, 20)


class RowsWorkbook:
    """A download as a workbook, written a page of rows at a time (constant memory): the header as
    the template heads it, then typed cells."""

    def __init__(self, path: Path, spec: ResourceSpec, fields: list[str]) -> None:
        by_name = {f.name: f for f in spec.fields}
        self.workbook = xlsxwriter.Workbook(path, {"constant_memory": True, "strings_to_numbers": False,
                                                   "strings_to_formulas": False, "strings_to_urls": False})  # fmt: skip
        self.sheet: Worksheet = self.workbook.add_worksheet(DATA_SHEET)
        self.sheet.write_row(0, 0, [label(by_name[name]) for name in fields], self.workbook.add_format(_HEADER))
        self.sheet.freeze_panes(1, 0)
        self.rows = 0

    def add(self, rows: Iterable[list[Any]]) -> None:
        sheet = self.sheet
        for values in rows:
            self.rows += 1
            for column, value in enumerate(values):
                if value is None:
                    continue
                if isinstance(value, bool):
                    sheet.write_string(self.rows, column, "是" if value else "否")
                elif isinstance(value, float) or (isinstance(value, int) and abs(value) <= 2**53):
                    sheet.write_number(self.rows, column, value)
                else:
                    sheet.write_string(self.rows, column, str(value))

    def close(self) -> None:
        self.workbook.close()
