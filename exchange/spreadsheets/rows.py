"""A filled template's rows as changes of its resource, checked as a pushed batch is checked.

The header row names the columns: a field's code, its code with its Chinese name as the template
writes it (``id_number（公民身份号码）``, a leading ``*`` for a required field), or its Chinese name
alone. Rows right below the header whose first cell begins with ``#`` are the template's notes
(types, an example) and are skipped; so are rows with nothing in them. Both are counted in the
answer, so nothing is left out unsaid. In a file of changes, the ``_delete`` column (``删除标记``)
marks the rows whose keys are to be deleted.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from exchange.spreadsheets.cells import CONVERTERS, EMPTY, TRUE_WORDS, CellError
from gdx.fields import RowError, tidy_key
from gdx.protocol import ResourceSpec

DELETE_COLUMN = "_delete"
# The error report's column of each bad row's number in the original file (write.write_report):
# a report put right can be uploaded as it is, and this column is skipped.
ORIGINAL_ROW = "_row"
# How the header's mapping names those two columns: no field can be called so (a catalog field
# called _delete or _row keeps its name, and the columns are then named in Chinese only).
_DELETE, _ORIGINAL = "\0delete", "\0row"
DELETE_LABEL = "删除标记"
DELETE_WORDS = TRUE_WORDS | {"删除", "delete", "d", "x"}
NOTE_MARK = "#"
# The error report names this many bad cells at most, and keeps the cells of as many bad rows.
MAX_PROBLEMS = 1000

_LABELLED = re.compile(r"\*?\s*([^（(]+?)\s*[（(](.*)[)）]\s*")


class HeaderError(ValueError):
    """The header row does not match the catalog entry; the message says how to put it right."""


class TooManyRows(ValueError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"the file has more than {limit:,} rows; split it, or send the rows through a front-end node")
        self.limit = limit


@dataclass(frozen=True)
class Problem:
    row: int
    column: str  # as a spreadsheet names it: A, B, ..., AA
    field: str
    value: str
    problem: str

    def as_dict(self) -> dict[str, Any]:
        return {"row": self.row, "column": self.column, "field": self.field, "value": self.value,
                "problem": self.problem}  # fmt: skip


@dataclass
class Tally:
    """What the whole file held, filled in as its rows are read."""

    rows: int = 0  # data rows, deletions included
    deletions: int = 0
    notes: int = 0
    blank: int = 0
    bad_rows: int = 0
    problems: list[Problem] = field(default_factory=list)
    bad_cells: list[tuple[int, list[str]]] = field(default_factory=list)  # (row, its cells as text)
    header: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Chunk:
    """Checked changes: op ('u' or 'd'), key as text, and the row (None for a delete)."""

    ops: list[str]
    keys: list[str]
    rows: list[dict[str, Any] | None]

    def upserts(self) -> Chunk:
        kept = [i for i, op in enumerate(self.ops) if op == "u"]
        return Chunk(["u"] * len(kept), [self.keys[i] for i in kept], [self.rows[i] for i in kept])


def column_letter(index: int) -> str:
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


def _shown(value: Any) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= 200 else text[:200] + "…"


class RowReader:
    """Reads the rows of one upload: the header first, then each row into a change."""

    def __init__(self, spec: ResourceSpec, *, deletions: bool, zone: ZoneInfo) -> None:
        self.spec = spec
        self.schema = spec.row_schema()
        self.deletions = deletions
        self.zone = zone
        self._by_label: dict[str, str] = {}
        for spec_field in spec.fields:
            self._by_label[spec_field.name] = spec_field.name
            if spec_field.description and spec_field.description not in self._by_label:
                self._by_label[spec_field.description] = spec_field.name
        for label_, special in ((DELETE_COLUMN, _DELETE), (DELETE_LABEL, _DELETE),
                                (ORIGINAL_ROW, _ORIGINAL), ("原行号", _ORIGINAL)):  # fmt: skip
            self._by_label.setdefault(label_, special)  # a field of that name keeps it
        self._columns: list[tuple[int, str, Any, bool]] = []  # (index, field, converter, nullable)
        self._delete_index: int | None = None
        self._width = 0
        self._seen: dict[str, int] = {}

    def header(self, cells: list[Any]) -> None:
        names: dict[str, int] = {}
        for index, cell in enumerate(cells):
            label = "" if cell is None else str(cell).strip()
            if not label:
                continue
            name = self._field_of(label)
            if name is None:
                known = ", ".join(f.name for f in self.spec.fields)
                raise HeaderError(
                    f"column {column_letter(index)} is headed {label!r}, which is no field of {self.spec.code} "
                    f"(its fields: {known}); download the template again"
                )
            if name in names:
                raise HeaderError(
                    f"columns {column_letter(names[name])} and {column_letter(index)} are both for field {name!r}"
                )
            names[name] = index
        if _DELETE in names and not self.deletions:
            raise HeaderError(
                f"column {column_letter(names[_DELETE])} marks deletions, but a full replacement deletes the "
                "keys the file leaves out: remove that column, or upload the file as changes"
            )
        missing = [f.name for f in self.spec.fields if f.name not in names]
        if missing:
            raise HeaderError(
                f"no column for field(s) {', '.join(missing)}: every field of {self.spec.code} needs its column "
                "(an empty cell is an empty value); download the template again"
            )
        self._delete_index = names.pop(_DELETE, None)
        skipped = names.pop(_ORIGINAL, None)
        self._columns = [(names[f.name], f.name, CONVERTERS[f.type], f.nullable) for f in self.spec.fields]
        used = [*names.values(), *(i for i in (self._delete_index, skipped) if i is not None)]
        self._width = max(used) + 1

    def _field_of(self, label: str) -> str | None:
        label = label.lstrip("*").strip()
        if label in self._by_label:
            return self._by_label[label]
        labelled = _LABELLED.fullmatch(label)
        if labelled is not None:
            for part in (labelled[1].strip(), labelled[2].strip()):
                if part in self._by_label:
                    return self._by_label[part]
        return None

    def row(self, number: int, cells: list[Any], tally: Tally) -> tuple[str, str, dict[str, Any] | None] | None:
        """The row's change, or None when it has a problem (put in ``tally``)."""
        change = self._good_row(number, cells)
        if change is not None:
            return change
        return self._row_with_care(number, cells, tally)

    def _good_row(self, number: int, cells: list[Any]) -> tuple[str, str, dict[str, Any] | None] | None:
        """The change of an upsert row with nothing wrong, in one pass; None for anything else
        (a deletion, a bad or missing cell, a key seen before), which _row_with_care reads."""
        if len(cells) < self._width or (len(cells) > self._width and any(cells[self._width :])):
            return None
        if self._delete_index is not None and cells[self._delete_index] not in EMPTY:
            return None
        zone = self.zone
        row: dict[str, Any] = {}
        try:
            for index, name, convert, nullable in self._columns:
                cell = cells[index]
                if cell is None or cell == "" or (type(cell) is str and cell.isspace()):
                    if not nullable:
                        return None
                    row[name] = None
                else:
                    row[name] = convert(cell, zone)
            key_field = self.spec.primary_key
            key = row[key_field] = tidy_key(self.spec.key_kind, row[key_field])
            self.schema.check_key(key)
        except (CellError, RowError):
            return None
        text = str(key)
        if self._seen.setdefault(text, -1) != -1:
            return None
        self._seen[text] = number
        return "u", text, row

    def _row_with_care(
        self, number: int, cells: list[Any], tally: Tally
    ) -> tuple[str, str, dict[str, Any] | None] | None:
        problems: list[Problem] = []
        if len(cells) > self._width and any(c not in ("", None) for c in cells[self._width :]):
            index = next(i for i in range(self._width, len(cells)) if cells[i] not in ("", None))
            problems.append(Problem(number, column_letter(index), "", _shown(cells[index]),
                                    "a value in a column without a header"))  # fmt: skip
        deleting = False
        if self._delete_index is not None:
            mark = cells[self._delete_index] if self._delete_index < len(cells) else None
            text = "" if mark is None else str(mark).strip().lower()
            if text in DELETE_WORDS or mark is True:
                deleting = True
            elif text and mark is not False:
                problems.append(Problem(number, column_letter(self._delete_index), DELETE_COLUMN, _shown(mark),
                                        "mark a deletion with 删除 (or leave the cell empty)"))  # fmt: skip
        row: dict[str, Any] = {}
        key_field = self.spec.primary_key
        for index, name, convert, nullable in self._columns:
            if deleting and name != key_field:
                continue
            cell = cells[index] if index < len(cells) else None
            if isinstance(cell, str):
                cell = cell.strip() if cell[:1].isspace() or cell[-1:].isspace() else cell
            if cell is None or cell == "":
                if not nullable:
                    problems.append(Problem(number, column_letter(index), name, "", "required: the cell is empty"))
                row[name] = None
                continue
            try:
                value = convert(cell, self.zone)
            except CellError as exc:
                problems.append(Problem(number, column_letter(index), name, _shown(cell), str(exc)))
                continue
            row[name] = tidy_key(self.spec.key_kind, value) if name == key_field else value
        if not problems:
            problem = self._check(row)
            if problem is not None:
                name, text = problem
                index = next(i for i, n, _, _ in self._columns if n == name)
                problems.append(Problem(number, column_letter(index), name, _shown(row.get(name)), text))
        key = row.get(key_field)
        if not problems:
            earlier = self._seen.setdefault(str(key), number)
            if earlier != number:
                index = next(i for i, n, _, _ in self._columns if n == key_field)
                problems.append(Problem(number, column_letter(index), key_field, _shown(key),
                                        f"the same key as row {earlier}: a key may appear once in a file"))  # fmt: skip
        if problems:
            tally.bad_rows += 1
            if len(tally.problems) < MAX_PROBLEMS:
                tally.problems.extend(problems[: MAX_PROBLEMS - len(tally.problems)])
                tally.bad_cells.append((number, [_shown(c) for c in cells]))
            return None
        if deleting:
            tally.deletions += 1
            return "d", str(key), None
        return "u", str(key), row

    def _check(self, row: dict[str, Any]) -> tuple[str, str] | None:
        """The key's check (gdx.fields, as a pushed key's): each cell's type is its converter's."""
        try:
            self.schema.check_key(row[self.spec.primary_key])
        except RowError as exc:
            return self.spec.primary_key, str(exc)
        return None


def read_changes(
    rows: Iterator[tuple[int, list[Any]]], reader: RowReader, tally: Tally, *, max_rows: int, chunk_rows: int
) -> Iterator[Chunk]:
    """The file's changes in chunks of ``chunk_rows``; ``tally`` says what the file held. Bad
    rows are left out of the chunks (and named in the tally): the caller applies nothing then."""
    header_seen = False
    notes_allowed = True
    ops: list[str] = []
    keys: list[str] = []
    texts: list[dict[str, Any] | None] = []
    for number, cells in rows:
        if all(cell is None or (isinstance(cell, str) and not cell.strip()) for cell in cells):
            tally.blank += header_seen
            continue
        if not header_seen:
            reader.header(cells)
            tally.header = [_shown(c) for c in cells]
            header_seen = True
            continue
        first = cells[0] if cells else None
        if notes_allowed and isinstance(first, str) and first.lstrip().startswith(NOTE_MARK):
            tally.notes += 1
            continue
        notes_allowed = False
        tally.rows += 1
        if tally.rows > max_rows:
            raise TooManyRows(max_rows)
        change = reader.row(number, cells, tally)
        if change is None:
            continue
        ops.append(change[0])
        keys.append(change[1])
        texts.append(change[2])
        if len(keys) >= chunk_rows:
            yield Chunk(ops, keys, texts)
            ops, keys, texts = [], [], []
    if not header_seen:
        raise HeaderError("the file is empty: no header row, no rows; download the template and fill it")
    if keys:
        yield Chunk(ops, keys, texts)
