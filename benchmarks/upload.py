"""make bench-upload: files uploaded to the exchange and applied, next to a raw COPY of the same rows.

Starts a PostgreSQL server with its default (durable) settings and the exchange as its own process
(`gdx exchange serve`, mutual TLS). Writes a CSV file of --csv-rows rows of the 10-column population
table (resident-ID keys with valid check digits) and a workbook of --xlsx-rows rows, uploads each to
a resource of its own (`POST /v1/resources/{code}/uploads`: read, every row checked, applied in one
transaction) and times it from the first byte sent to the receipt; then COPYs the same CSV file into
a plain 10-column table of the same database. The CSV file is then uploaded a second time: nothing
changes, but every key is looked up and every row compared (`csv_again_rows_per_s`). The last line
is JSON.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import psycopg
import xlsxwriter

from benchmarks.exchange_ingest import COPY_TABLE, checkpoint, client, start_server
from exchange.spreadsheets.write import XLSX_MEDIA_TYPE
from tests.support.postgres import PostgresServer
from tests.support.samples import person, population_entry

COLUMNS = [f["name"] for f in population_entry("x.y")["fields"]]


def _cells(n: int) -> list[object]:
    row = person(n)
    row["birth_date"] = "1980-05-17"
    row["updated_at"] = "2026-11-01 08:00:00"
    row["is_resident"] = "true"  # as COPY reads it too (an upload also takes 是)
    return [row[name] for name in COLUMNS]


def write_csv(path: Path, rows: int) -> None:
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(COLUMNS)
        for n in range(rows):
            writer.writerow(_cells(n))


def write_xlsx(path: Path, rows: int, offset: int) -> None:
    with xlsxwriter.Workbook(path, {"constant_memory": True}) as book:
        sheet = book.add_worksheet("数据")
        sheet.write_row(0, 0, COLUMNS)
        for n in range(rows):
            cells = _cells(offset + n)
            for column, value in enumerate(cells):
                if value is None:
                    continue
                if isinstance(value, int | float) and not isinstance(value, bool):
                    sheet.write_number(n + 1, column, value)
                else:
                    sheet.write_string(n + 1, column, str(value))


def upload(
    base: str, pki: Path, code: str, path: Path, media_type: str, *, register: bool = True
) -> tuple[float, dict[str, object]]:
    with client(base, pki, "zjg-gaj") as c:
        if register:
            c.post("/v1/resources", json=population_entry(code)).raise_for_status()
        c.timeout = 3600
        started = time.perf_counter()
        with path.open("rb") as body:
            answer = c.post(f"/v1/resources/{code}/uploads", content=body, headers={"content-type": media_type})
        elapsed = time.perf_counter() - started
    if answer.status_code != 201:
        raise SystemExit(f"the upload of {path.name} was refused: {answer.status_code} {answer.text[:500]}")
    return elapsed, answer.json()


def copy_file(url: str, path: Path) -> float:
    with psycopg.connect(url) as conn:
        conn.execute(COPY_TABLE)
        conn.commit()
        started = time.perf_counter()
        with (
            path.open("rb") as source,
            conn.cursor().copy(
                f"COPY copy_bench ({', '.join(COLUMNS)}) FROM STDIN WITH (FORMAT csv, HEADER true)"
            ) as copy,
        ):
            while block := source.read(1 << 20):
                copy.write(block)
        conn.commit()
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv-rows", type=int, default=1_000_000, help="rows of the CSV file (default 1,000,000)")
    parser.add_argument("--xlsx-rows", type=int, default=100_000, help="rows of the workbook (default 100,000)")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    work = Path(tempfile.mkdtemp(prefix="gdx-bench-upload-"))
    csv_path, xlsx_path = work / "population.csv", work / "population.xlsx"
    print(f"writing {args.csv_rows:,} rows of CSV and {args.xlsx_rows:,} rows of XLSX ...", flush=True)
    write_csv(csv_path, args.csv_rows)
    write_xlsx(xlsx_path, args.xlsx_rows, offset=args.csv_rows)
    print(f"  {csv_path.stat().st_size / 2**20:,.1f} MiB of CSV, {xlsx_path.stat().st_size / 2**20:,.1f} MiB of XLSX")
    pg = PostgresServer(durable=True).start()
    try:
        server, base, url = start_server(pg, work, workers=1)
        try:
            checkpoint(url)
            xlsx_s, xlsx_receipt = upload(base, work / "pki", "zjg-gaj.population-xlsx", xlsx_path, XLSX_MEDIA_TYPE)
            print(f"XLSX: {args.xlsx_rows:,} rows in {xlsx_s:.1f} s, {args.xlsx_rows / xlsx_s:,.0f} rows/s "
                  f"({xlsx_receipt['counts']})", flush=True)  # fmt: skip
            checkpoint(url)
            csv_s, csv_receipt = upload(base, work / "pki", "zjg-gaj.population-csv", csv_path, "text/csv")
            print(f"CSV: {args.csv_rows:,} rows in {csv_s:.1f} s, {args.csv_rows / csv_s:,.0f} rows/s "
                  f"({csv_receipt['counts']})", flush=True)  # fmt: skip
            checkpoint(url)
            again_s, again_receipt = upload(
                base, work / "pki", "zjg-gaj.population-csv", csv_path, "text/csv", register=False
            )
            print(f"CSV again (every key looked up, every row compared): {again_s:.1f} s, "
                  f"{args.csv_rows / again_s:,.0f} rows/s ({again_receipt['counts']})", flush=True)  # fmt: skip
            checkpoint(url)
            copy_s = copy_file(url, csv_path)
            print(f"raw COPY of the same CSV file: {copy_s:.1f} s, {args.csv_rows / copy_s:,.0f} rows/s", flush=True)
        finally:
            server.terminate()
            server.wait(timeout=30)
    finally:
        pg.stop()
    print(
        json.dumps(
            {
                "csv_rows_per_s": round(args.csv_rows / csv_s),
                "xlsx_rows_per_s": round(args.xlsx_rows / xlsx_s),
                "copy_rows_per_s": round(args.csv_rows / copy_s),
                "csv_vs_copy": round(copy_s / csv_s, 3),
                "csv_again_rows_per_s": round(args.csv_rows / again_s),
                "csv_rows": args.csv_rows,
                "xlsx_rows": args.xlsx_rows,
            }
        )
    )


if __name__ == "__main__":
    main()
