"""`gdx upload`, `gdx template` and `gdx file`: the file channel from a department's desk (模板导入,
文件上传, and the attachments of resources of format file).

Either on a front-end node (the exchange's address and the node's certificate come from its
config) or on any machine with the department's certificate (--exchange, --cert, --key, --ca).
"""

from __future__ import annotations

import hashlib
import re
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from front_end_node.config import ExchangeSettings
from gdx.terminal import console, fail

XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CHUNK = 1 << 20

ConfigOption = Annotated[
    Path,
    typer.Option(
        "--config", "-c", envvar="GDX_NODE_CONFIG", help="A node config: the exchange's address and identity."
    ),
]
ExchangeOption = Annotated[
    str | None, typer.Option("--exchange", envvar="GDX_EXCHANGE_URL", help="The exchange's https:// URL (no config).")
]
CertOption = Annotated[Path | None, typer.Option("--cert", envvar="GDX_CERT", help="The department's certificate.")]
KeyOption = Annotated[Path | None, typer.Option("--key", envvar="GDX_KEY", help="Its key.")]
CaOption = Annotated[Path | None, typer.Option("--ca", envvar="GDX_CA", help="The platform CA's certificate.")]


def exchange_settings(
    config: Path, url: str | None, cert: Path | None, key: Path | None, ca: Path | None
) -> ExchangeSettings:
    """The exchange to call and the identity to call it with: the options, else the node config."""
    if url or cert or key or ca:
        missing = [name for name, value in (("--exchange", url), ("--cert", cert), ("--key", key), ("--ca", ca))
                   if value is None]  # fmt: skip
        if missing:
            raise fail(f"give {', '.join(missing)} too, or none of them and a node config (--config)", 2)
        return ExchangeSettings(url=url or "", cert=cert or Path(), key=key or Path(), ca=ca or Path(), timeout_s=30)
    from front_end_node.cli import _node_config

    return _node_config(config).exchange


def http_client(exchange: ExchangeSettings, read_timeout_s: float | None = None) -> Any:
    """An HTTPS client with the department's certificate; ``read_timeout_s`` for answers that
    take long (an upload is checked and applied before it is answered)."""
    import httpx

    context = ssl.create_default_context(cafile=str(exchange.ca))
    context.load_cert_chain(str(exchange.cert), str(exchange.key))
    timeout = httpx.Timeout(exchange.timeout_s, read=read_timeout_s or exchange.timeout_s)
    return httpx.Client(base_url=exchange.url, verify=context, timeout=timeout, trust_env=False)


def reach(exchange: ExchangeSettings, call: Any) -> Any:
    import httpx

    try:
        return call()
    except httpx.HTTPError as exc:
        raise fail(f"cannot reach the exchange at {exchange.url}: {exc}", 2) from None


def template(
    resource: Annotated[str, typer.Argument(help="The catalog code, e.g. zjg-gaj.population.")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Where to write it (default: RESOURCE.xlsx).")] = None,
    replace: Annotated[bool, typer.Option(help="For a full replacement: no deletion column.")] = False,
    config: ConfigOption = Path("/etc/gdx/node.yml"),
    exchange_url: ExchangeOption = None,
    cert: CertOption = None,
    key: KeyOption = None,
    ca: CaOption = None,
) -> None:
    """Download the template of a resource to fill: a workbook (.xlsx) or, for an --out ending in
    .csv, CSV. Row 1 names the columns, rows 2 and 3 (first cell #...) are notes; fill from row 4."""
    exchange = exchange_settings(config, exchange_url, cert, key, ca)
    target = out or Path(f"{resource}.xlsx")
    kind = "csv" if target.suffix.lower() == ".csv" else "xlsx"
    mode = "replace" if replace else "changes"
    with http_client(exchange) as http:
        answer = reach(exchange, lambda: http.get(f"/v1/resources/{resource}/template.{kind}", params={"mode": mode}))
    if answer.status_code != 200:
        raise fail(f"the exchange answered {answer.status_code}: {_message(answer)}")
    target.write_bytes(answer.content)
    console.print(f"wrote {escape(str(target))}: fill the 数据 sheet from row 4, then gdx upload {resource} {target}")


def upload(
    resource: Annotated[str, typer.Argument(help="The catalog code, e.g. zjg-gaj.population.")],
    file: Annotated[
        Path,
        typer.Argument(
            help="The filled template: .xlsx, or CSV in UTF-8 or GB18030.", exists=True, dir_okay=False, readable=True
        ),
    ],
    replace: Annotated[
        bool, typer.Option(help="The file is the whole resource: keys it leaves out are deleted.")
    ] = False,
    timezone: Annotated[str, typer.Option(help="The zone of times written without an offset.")] = "Asia/Shanghai",
    report: Annotated[
        Path | None, typer.Option(help="Where to write the error report of a refused file (default: FILE-report.xlsx).")
    ] = None,
    config: ConfigOption = Path("/etc/gdx/node.yml"),
    exchange_url: ExchangeOption = None,
    cert: CertOption = None,
    key: KeyOption = None,
    ca: CaOption = None,
) -> None:
    """Upload a filled template to the exchange. It is applied whole or not at all: a file with any
    bad row changes nothing, and its problems are listed and written to a report (the bad cells
    marked) that can be put right and uploaded again.

    Exit 0 when applied, 1 when refused, 2 when the exchange cannot be asked.
    """
    exchange = exchange_settings(config, exchange_url, cert, key, ca)
    size = file.stat().st_size
    media_type = XLSX_MEDIA_TYPE if file.read_bytes()[:4] == b"PK\x03\x04" else "text/csv"
    mode = "replace" if replace else "changes"
    with Progress(
        TextColumn(f"[bold]{escape(file.name)}[/bold]"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
        TextColumn("{task.fields[step]}"), console=console, transient=True,
    ) as bar, http_client(exchange, read_timeout_s=3600) as http:  # fmt: skip
        task = bar.add_task("send", total=size, step="sending")

        def body() -> Iterator[bytes]:
            with file.open("rb") as source:
                while block := source.read(CHUNK):
                    bar.advance(task, len(block))
                    yield block
            bar.update(task, step="the exchange checks and applies every row ...")

        answer = reach(exchange, lambda: http.post(
            f"/v1/resources/{resource}/uploads", params={"mode": mode, "timezone": timezone}, content=body(),
            headers={"content-type": media_type, "content-length": str(size)},
        ))  # fmt: skip
        refused_report = _report_of(http, answer)
    if answer.status_code == 201:
        done = answer.json()
        counts = done["counts"]
        console.print(
            f"upload {done['id']}: applied ({done['format']}{', ' + done['encoding'] if done['encoding'] else ''}): "
            f"{counts['rows']:,} rows, {counts['upserted']:,} new or changed, {counts['unchanged']:,} unchanged, "
            f"{counts['deleted']:,} deleted; changes {done['first_seq'] or '-'}..{done['last_seq'] or '-'}",
            highlight=False,
        )
        return
    console.print(f"[red]refused ({answer.status_code}):[/red] {escape(_message(answer))}", highlight=False)
    problems = answer.json().get("details", []) if _is_json(answer) else []
    for problem in problems[:20]:
        console.print(f"  row {problem['row']}, column {problem['column']} ({problem['field'] or '-'}): "
                      f"{escape(str(problem['problem']))}", highlight=False)  # fmt: skip
    if len(problems) > 20:
        console.print(f"  ... {len(problems) - 20} more in the report")
    if refused_report is not None:
        target = report or file.with_name(f"{file.stem}-report.xlsx")
        target.write_bytes(refused_report)
        console.print(f"the report, bad cells marked: {escape(str(target))} (put right, it can be uploaded as it is)")
    raise typer.Exit(1)


files = typer.Typer(
    help="The files of a resource of format file (scanned licences, documents), named by their SHA-256.",
    no_args_is_help=True,
)


@files.command("put")
def put_files(
    resource: Annotated[str, typer.Argument(help="The catalog code of a resource of format file.")],
    paths: Annotated[
        list[Path], typer.Argument(help="The files to upload.", exists=True, dir_okay=False, readable=True)
    ],
    config: ConfigOption = Path("/etc/gdx/node.yml"),
    exchange_url: ExchangeOption = None,
    cert: CertOption = None,
    key: KeyOption = None,
    ca: CaOption = None,
) -> None:
    """Upload files to a resource you provide, each under its SHA-256; then name each in its record's
    file field (a row pushed by your node, or a template uploaded). A file uploaded again changes
    nothing. Prints each file's SHA-256 and type.

    Exit 0 when every file is stored, 1 when any is refused, 2 when the exchange cannot be asked.
    """
    exchange = exchange_settings(config, exchange_url, cert, key, ca)
    refused = 0
    with Progress(
        TextColumn("[bold]{task.description}[/bold]"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
        console=console, transient=True,
    ) as bar, http_client(exchange, read_timeout_s=600) as http:  # fmt: skip
        for path in paths:
            digest = hashlib.sha256()
            with path.open("rb") as source:
                while block := source.read(CHUNK):
                    digest.update(block)
            sha256 = digest.hexdigest()
            task = bar.add_task(escape(path.name), total=path.stat().st_size)
            answer = reach(exchange, lambda path=path, task=task, sha256=sha256: http.put(
                f"/v1/resources/{resource}/files/{sha256}", content=_read_with_progress(path, bar, task),
                headers={"content-type": "application/octet-stream", "content-length": str(path.stat().st_size)},
            ))  # fmt: skip
            bar.remove_task(task)
            if answer.status_code in (200, 201):
                done = answer.json()
                held = "stored" if answer.status_code == 201 else "held already"
                console.print(f"{sha256}  {escape(str(path))}  {done['media_type']}, {done['bytes']:,} bytes, {held}",
                              highlight=False)  # fmt: skip
            else:
                refused += 1
                console.print(f"[red]refused ({answer.status_code}):[/red] {escape(str(path))}: "
                              f"{escape(_message(answer))}", highlight=False)  # fmt: skip
    if refused:
        raise typer.Exit(1)


@files.command("get")
def get_file(
    resource: Annotated[str, typer.Argument(help="The catalog code of a resource of format file.")],
    sha256: Annotated[str, typer.Argument(help="The file's SHA-256, as its record's file field holds it.")],
    purpose: Annotated[str | None, typer.Option(help="The purpose of your grant (not for the provider).")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Where to write it (default: SHA256).")] = None,
    config: ConfigOption = Path("/etc/gdx/node.yml"),
    exchange_url: ExchangeOption = None,
    cert: CertOption = None,
    key: KeyOption = None,
    ca: CaOption = None,
) -> None:
    """Download a file of a resource: its provider, or a department whose grant includes the file
    field. The bytes are checked against the SHA-256 before the file is kept."""
    exchange = exchange_settings(config, exchange_url, cert, key, ca)
    target = out or Path(sha256)
    partial = target.with_name(target.name + ".part")
    params = {"purpose": purpose} if purpose else {}
    digest = hashlib.sha256()
    with http_client(exchange, read_timeout_s=600) as http:

        def fetch() -> Any:
            with http.stream("GET", f"/v1/resources/{resource}/files/{sha256}", params=params) as answer:
                if answer.status_code != 200:
                    answer.read()
                    return answer
                with Progress(
                    TextColumn(f"[bold]{escape(target.name)}[/bold]"), BarColumn(), DownloadColumn(),
                    TransferSpeedColumn(), console=console, transient=True,
                ) as bar, partial.open("wb") as sink:  # fmt: skip
                    task = bar.add_task("get", total=int(answer.headers.get("content-length", 0)) or None)
                    for block in answer.iter_bytes(CHUNK):
                        sink.write(block)
                        digest.update(block)
                        bar.advance(task, len(block))
                return answer

        answer = reach(exchange, fetch)
    if answer.status_code != 200:
        raise fail(f"the exchange answered {answer.status_code}: {_message(answer)}")
    if digest.hexdigest() != sha256:
        partial.unlink(missing_ok=True)
        raise fail(f"the bytes received have the SHA-256 {digest.hexdigest()}, not {sha256}: nothing kept; try again")
    partial.replace(target)
    console.print(f"wrote {escape(str(target))} ({answer.headers.get('content-type', '?')})", highlight=False)


def _read_with_progress(path: Path, bar: Progress, task: Any) -> Iterator[bytes]:
    with path.open("rb") as source:
        while block := source.read(CHUNK):
            bar.advance(task, len(block))
            yield block


def _is_json(answer: Any) -> bool:
    return bool(answer.headers.get("content-type", "").startswith("application/json"))


def _message(answer: Any) -> str:
    if _is_json(answer):
        return str(answer.json().get("message", answer.text[:300]))
    return str(answer.text[:300])


def _report_of(http: Any, answer: Any) -> bytes | None:
    """The error report of a refused upload, fetched while the connection is open."""
    if answer.status_code != 422 or not _is_json(answer):
        return None
    found = re.search(r"/v1/uploads/(\d+)/report\.xlsx", answer.json().get("message", ""))
    if found is None:
        return None
    fetched = http.get(found.group(0))
    return bytes(fetched.content) if fetched.status_code == 200 else None
