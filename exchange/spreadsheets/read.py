"""A received file, spooled to disk as it arrives, and read back as rows of cells.

The format is told by the bytes, not the name or the media type, and stated in the answer: a
ZIP is a workbook (XLSX, or ODS), an OLE2 file an old XLS; anything else is CSV text, in
UTF-8 (with or without a BOM) when every byte of it is valid UTF-8, else GB18030 (of which GBK
and GB2312 are subsets), the two encodings Chinese office software writes. Workbooks are read by
calamine (python-calamine), CSV by Python's csv module, a row at a time.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import os
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import python_calamine

# csv's own limit is 128 KiB per cell; a catalog field holds far less (gdx.protocol limits text).
csv.field_size_limit(1024 * 1024)

ZIP_MAGIC = b"PK\x03\x04"
OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
UTF8_BOM = codecs.BOM_UTF8
DATA_SHEET = "数据"


class FileError(ValueError):
    """The file as a whole cannot be read (its format, encoding or sheet); the message says why."""


@dataclass
class Spool:
    """The body of an upload as it arrives: on disk, with its size, SHA-256 and whether it is all
    valid UTF-8, found in the same pass."""

    directory: Path | None = None
    size: int = 0
    _file: IO[bytes] = field(init=False)
    _sha256: Any = field(init=False, default_factory=hashlib.sha256)
    _utf8: Any = field(init=False, default_factory=lambda: codecs.getincrementaldecoder("utf-8")())
    _is_utf8: bool = field(init=False, default=True)
    _head: bytes = field(init=False, default=b"")

    def __post_init__(self) -> None:
        self._file = tempfile.NamedTemporaryFile(prefix="gdx-upload-", dir=self.directory, delete=False)  # noqa: SIM115

    @property
    def path(self) -> Path:
        return Path(self._file.name)

    @property
    def sha256(self) -> str:
        return str(self._sha256.hexdigest())

    def write(self, chunk: bytes) -> None:
        self._file.write(chunk)
        self._sha256.update(chunk)
        self.size += len(chunk)
        if len(self._head) < 8:
            self._head += chunk[: 8 - len(self._head)]
        if self._is_utf8:
            try:
                self._utf8.decode(chunk)
            except UnicodeDecodeError:
                self._is_utf8 = False

    def finish(self) -> None:
        if self._is_utf8:
            try:
                self._utf8.decode(b"", final=True)
            except UnicodeDecodeError:
                self._is_utf8 = False
        self._file.close()

    def discard(self) -> None:
        self._file.close()
        self.path.unlink(missing_ok=True)

    def format(self) -> str:
        if self._head.startswith(ZIP_MAGIC):
            return "ods" if _is_ods(self.path) else "xlsx"
        if self._head.startswith(OLE2_MAGIC):
            return "xls"
        return "csv"

    def encoding(self) -> str | None:
        """The text encoding of a CSV file (None for a workbook)."""
        if self.format() != "csv":
            return None
        if self._is_utf8:
            return "utf-8-sig" if self._head.startswith(UTF8_BOM) else "utf-8"
        return "gb18030"


def _is_ods(path: Path) -> bool:
    """An OpenDocument spreadsheet (WPS and LibreOffice save them) names itself in its first entry."""
    try:
        with zipfile.ZipFile(path) as packed:
            return packed.read("mimetype").startswith(b"application/vnd.oasis.opendocument.spreadsheet")
    except (KeyError, zipfile.BadZipFile, OSError):
        return False


@dataclass
class Sheet:
    """The rows of the file's data sheet: each a list of cells, numbered as a spreadsheet
    program numbers them (the header is row 1)."""

    format: str
    encoding: str | None
    rows: Iterator[tuple[int, list[Any]]]


def open_sheet(spool: Spool) -> Sheet:
    kind = spool.format()
    if kind == "csv":
        encoding = spool.encoding()
        assert encoding is not None
        return Sheet("csv", "utf-8" if encoding == "utf-8-sig" else encoding, _csv_rows(spool.path, encoding))
    return Sheet(kind, None, _workbook_rows(spool.path))


def _csv_rows(path: Path, encoding: str) -> Iterator[tuple[int, list[Any]]]:
    with path.open(encoding=encoding, newline="", errors="strict") as text:
        try:
            sample = text.readline()
        except UnicodeDecodeError as exc:
            raise _undecodable(exc) from None
        delimiter = max(",\t;", key=sample.count) if sample else ","
        text.seek(0)
        reader = csv.reader(text, delimiter=delimiter, strict=True)
        number = 0
        try:
            for number, cells in enumerate(reader, start=1):
                yield number, cells
        except UnicodeDecodeError as exc:
            raise _undecodable(exc) from None
        except csv.Error as exc:
            raise FileError(f"the CSV file cannot be read after row {number}: {exc}") from None


def _undecodable(exc: UnicodeDecodeError) -> FileError:
    return FileError(
        f"the file is neither UTF-8 nor GB18030 text (byte {exc.object[exc.start : exc.end]!r} cannot be decoded); "
        "save it as CSV UTF-8 or as a workbook (.xlsx)"
    )


# A workbook is unpacked whole to be read: refused past this, however small it is packed (a
# "zip bomb" of a few megabytes can unpack to gigabytes).
MAX_UNPACKED_BYTES = 1024 * 1024 * 1024


def _check_unpacked(path: Path) -> None:
    try:
        with zipfile.ZipFile(path) as packed:
            unpacked = sum(entry.file_size for entry in packed.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise FileError(f"the workbook is not a readable ZIP file ({exc}); save it again as .xlsx") from None
    if unpacked > MAX_UNPACKED_BYTES:
        raise FileError(
            f"the workbook unpacks to {unpacked / 2**20:,.0f} MiB, more than {MAX_UNPACKED_BYTES / 2**20:,.0f} MiB; "
            "send its rows as CSV"
        )


def _workbook_rows(path: Path) -> Iterator[tuple[int, list[Any]]]:
    with path.open("rb") as head:
        zipped = head.read(4) == ZIP_MAGIC
    if zipped:
        _check_unpacked(path)
    try:
        workbook = python_calamine.CalamineWorkbook.from_path(os.fspath(path))
        names = workbook.sheet_names
        sheet = workbook.get_sheet_by_name(DATA_SHEET if DATA_SHEET in names else names[0])
        # Numbered from the sheet's first row, however many empty rows calamine leaves out above.
        first = sheet.start[0] + 1 if sheet.start else 1
        rows = sheet.iter_rows()
    except (python_calamine.CalamineError, IndexError, ValueError) as exc:
        raise FileError(f"the workbook cannot be read: {exc}; save it again as .xlsx, or as CSV UTF-8") from None
    for number, cells in enumerate(rows, start=first):
        yield number, list(cells)
