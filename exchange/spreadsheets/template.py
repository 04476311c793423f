"""The template of a catalog entry: the columns a provider fills, as XLSX or CSV.

Row 1 heads each column with the field's code and Chinese name (``*`` before a required one);
rows 2 and 3 are notes, their first cell beginning with ``#``: each field's type, whether it is
the key and of which kind, then an example row. The parser (rows.py) skips such rows. In the
workbook each column also checks what is typed into it (Excel's data validation) and key and
text columns are formatted as text, so that an 18-digit resident ID stays a string.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from stdnum.cn import uscc

from exchange.spreadsheets.cells import FORMATS
from exchange.spreadsheets.rows import DELETE_COLUMN, DELETE_LABEL, NOTE_MARK
from gdx.fields import FieldType, KeyKind
from gdx.protocol import FieldSpec, ResourceSpec

_USCC_BASE = "91320582MA1N4K5J5"
EXAMPLE_KEYS = {
    KeyKind.RESIDENT_ID: "11010519491231002X",  # GB 11643's own example
    KeyKind.USCC: _USCC_BASE + uscc.calc_check_digit(_USCC_BASE),
}
KEY_KINDS = {
    KeyKind.PLAIN: "主键 key",
    KeyKind.RESIDENT_ID: "主键：公民身份号码 resident ID (GB 11643, 18 位，校验位)",
    KeyKind.USCC: "主键：统一社会信用代码 credit code (GB 32100, 18 位，校验位)",
}
_EXAMPLES: dict[FieldType, str] = {
    FieldType.STRING: "示例文本",
    FieldType.INTEGER: "3",
    FieldType.NUMBER: "5000.5",
    FieldType.BOOLEAN: "是",
    FieldType.DATE: "2026-01-05",
    FieldType.TIMESTAMP: "2026-01-05 09:30:00",
}


def label(spec_field: FieldSpec) -> str:
    """A column's header: the field's code and Chinese name, ``*`` when the cell is required."""
    required = "" if spec_field.nullable else "*"
    return (
        f"{required}{spec_field.name}（{spec_field.description}）"
        if spec_field.description
        else (f"{required}{spec_field.name}")
    )


# A file field's cell: the digest `gdx file put` printed for the file (docs/exchange.md, "Attachments").
FILE_NOTE = "文件的 SHA-256 (64 位十六进制；先用 gdx file put 上传文件) the file's SHA-256, after gdx file put"
EXAMPLE_DIGEST = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def type_note(spec: ResourceSpec, spec_field: FieldSpec) -> str:
    kind = FILE_NOTE if spec_field.name == spec.file_field else FORMATS[spec_field.type]
    parts = [kind, "可空 optional" if spec_field.nullable else "必填 required"]
    if spec_field.name == spec.primary_key:
        parts.append(KEY_KINDS[spec.key_kind])
    return "；".join(parts)


def example(spec: ResourceSpec, spec_field: FieldSpec) -> str:
    if spec_field.name == spec.file_field:
        return EXAMPLE_DIGEST
    if spec_field.name == spec.primary_key:
        if spec.key_kind in EXAMPLE_KEYS:
            return EXAMPLE_KEYS[spec.key_kind]
        return "1001" if spec_field.type is FieldType.INTEGER else "A-1001"
    return _EXAMPLES[spec_field.type]


@dataclass(frozen=True)
class Template:
    header: list[str]
    types: list[str]
    example: list[str]


def template(spec: ResourceSpec, *, deletions: bool) -> Template:
    header = [label(f) for f in spec.fields]
    types = [type_note(spec, f) for f in spec.fields]
    examples = [example(spec, f) for f in spec.fields]
    if deletions:
        header.append(f"{DELETE_COLUMN}（{DELETE_LABEL}）")
        types.append("填“删除”则删除该主键的记录，留空为新增或修改 (file of changes only)")
        examples.append("")
    types[0] = f"{NOTE_MARK} {types[0]}"
    examples[0] = f"{NOTE_MARK} 示例 example: {examples[0]}"
    return Template(header, types, examples)


def as_csv(spec: ResourceSpec, *, deletions: bool) -> bytes:
    """UTF-8 with a BOM, so that Excel opens the Chinese text as such."""
    made = template(spec, deletions=deletions)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\r\n")
    writer.writerows([made.header, made.types, made.example])
    return b"\xef\xbb\xbf" + text.getvalue().encode()
