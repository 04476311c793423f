"""`gdx exchange` and `gdx audit`: the central exchange service and its audit trail."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from gdx import logs
from gdx.inventory import InventoryError, load_inventory
from gdx.protocol import UPLOAD_MAX_BYTES, UPLOAD_MAX_ROWS
from gdx.terminal import console, fail, reported

app = typer.Typer(help="The central exchange service.", no_args_is_help=True)
audit_app = typer.Typer(help="The exchange's audit trail.", no_args_is_help=True)

DbUrl = Annotated[
    str,
    typer.Option(
        "--database-url",
        envvar="GDX_DATABASE_URL",
        help="PostgreSQL connection string, e.g. postgresql://gdx@db/gdx",
        show_default=False,
    ),
]


@app.command("migrate")
def exchange_migrate(
    database_url: DbUrl,
    wait: Annotated[
        float,
        typer.Option(min=0, help="Seconds to wait for the database to accept connections (a Job started with it)."),
    ] = 0,
) -> None:
    """Bring the database schema up to date (safe to run from several pods at once).

    Example: gdx exchange migrate --wait 300 --database-url postgresql://gdx@db/gdx
    """
    from exchange.migrate import DatabaseNotReady, migrate, wait_for_database

    with reported(DatabaseNotReady):
        wait_for_database(database_url, wait, progress=lambda line: console.print(line, highlight=False))
    applied = migrate(database_url)
    typer.echo("applied: " + ", ".join(applied) if applied else "schema is up to date")


@app.command("load-departments")
def exchange_load_departments(
    inventory: Annotated[Path, typer.Argument(help="The Ansible YAML inventory.")],
    database_url: DbUrl,
) -> None:
    """Load the department registry from the inventory (departments it no longer lists are deactivated)."""
    from exchange.registry import sync_from_inventory

    with reported(InventoryError):
        inv = load_inventory(inventory, require_secrets=False)
    listed, deactivated = sync_from_inventory(database_url, inv)
    typer.echo(f"{listed} department(s) active, {deactivated} deactivated")


@app.command("serve")
def exchange_serve(
    database_url: DbUrl,
    tls_cert: Annotated[Path, typer.Option(envvar="GDX_TLS_CERT", help="The server's certificate.")],
    tls_key: Annotated[Path, typer.Option(envvar="GDX_TLS_KEY", help="The server's key.")],
    ca_cert: Annotated[Path, typer.Option(envvar="GDX_CA_CERT", help="The platform CA's certificate.")],
    host: Annotated[str, typer.Option(envvar="GDX_HOST")] = "0.0.0.0",  # noqa: S104 - a server listens
    port: Annotated[int, typer.Option(envvar="GDX_PORT")] = 8443,
    calendar: Annotated[
        Path | None,
        typer.Option(envvar="GDX_CALENDAR_FILE", help="Official holiday schedule for years chinese-calendar lacks."),
    ] = None,
    pool_max: Annotated[int, typer.Option(envvar="GDX_POOL_MAX", min=1, help="Database connections per process.")] = 10,
    workers: Annotated[
        int,
        typer.Option(
            envvar="GDX_WORKERS",
            min=1,
            help="Server processes sharing the port: one uses one core (the checks of pushed rows run in Python).",
        ),
    ] = 1,
    change_retention_days: Annotated[
        int,
        typer.Option(
            envvar="GDX_CHANGE_RETENTION_DAYS",
            min=0,
            help="Days a superseded version of a key stays in the change log (0: for ever). The newest "
            "version of every key, deletions included, always stays.",
        ),
    ] = 30,
    upload_max_bytes: Annotated[
        int,
        typer.Option(
            envvar="GDX_UPLOAD_MAX_BYTES", min=1, help="The largest file a department may upload (413 beyond)."
        ),
    ] = UPLOAD_MAX_BYTES,
    upload_max_rows: Annotated[
        int, typer.Option(envvar="GDX_UPLOAD_MAX_ROWS", min=1, help="The most rows of an uploaded CSV file.")
    ] = UPLOAD_MAX_ROWS,
    s3_endpoint: Annotated[
        str | None,
        typer.Option(envvar="GDX_S3_ENDPOINT", help="An S3-compatible object store for files: https://host:port."),
    ] = None,
    s3_bucket: Annotated[
        str | None,
        typer.Option(
            envvar="GDX_S3_BUCKET",
            help="Its bucket: the files of resources of format file go there (else into PostgreSQL). The "
            "credentials come from GDX_S3_ACCESS_KEY and GDX_S3_SECRET_KEY only.",
        ),
    ] = None,
    s3_prefix: Annotated[str, typer.Option(envvar="GDX_S3_PREFIX", help="The objects' name prefix.")] = "gdx-files/",
    s3_region: Annotated[str | None, typer.Option(envvar="GDX_S3_REGION", help="The bucket's region.")] = None,
    s3_ca_file: Annotated[
        Path | None, typer.Option(envvar="GDX_S3_CA_FILE", help="The CA of the store's certificate, if private.")
    ] = None,
    tls_alerts: Annotated[
        bool,
        typer.Option(
            envvar="GDX_TLS_ALERTS",
            help="Send a refused client certificate the TLS alert that says why, and log its subject "
            "(asyncio's event loop: about 0.6x the push throughput of uvloop's, which only resets). "
            "Turn off behind an ingress that checks client certificates itself.",
        ),
    ] = True,
) -> None:
    """Serve the exchange API over mutual TLS."""
    from exchange.object_store import ObjectStoreError
    from exchange.server import serve
    from exchange.settings import Settings

    for label, path in (("--tls-cert", tls_cert), ("--tls-key", tls_key), ("--ca-cert", ca_cert)):
        if not path.is_file():
            raise fail(f"{label} {path}: no such file")
    logs.configure()
    settings = Settings(
        database_url,
        tls_cert,
        tls_key,
        ca_cert,
        calendar,
        pool_max=pool_max,
        tls_alerts=tls_alerts,
        change_retention_days=change_retention_days,
        upload_max_bytes=upload_max_bytes,
        upload_max_rows=upload_max_rows,
        s3_endpoint=s3_endpoint,
        s3_bucket=s3_bucket,
        s3_prefix=s3_prefix,
        s3_region=s3_region,
        s3_access_key=os.environ.get("GDX_S3_ACCESS_KEY"),
        s3_secret_key=os.environ.get("GDX_S3_SECRET_KEY"),
        s3_ca_file=s3_ca_file,
    )
    try:
        settings.object_store()
    except ObjectStoreError as exc:
        raise fail(f"{exc} (--s3-endpoint, GDX_S3_ACCESS_KEY, GDX_S3_SECRET_KEY)", 2) from None
    serve(settings, host, port, workers=workers)


@app.command("compact")
def exchange_compact(
    database_url: DbUrl,
    retention_days: Annotated[int, typer.Option(min=0, help="Superseded versions older than this many days go.")] = 30,
) -> None:
    """Compact the change log once now (the exchange does it every hour by itself).

    Superseded versions older than the retention leave the log; the newest version of every key,
    deletions included, stays. Safe beside running exchanges (one compactor at a time).

    Example: gdx exchange compact --retention-days 30 --database-url postgresql://gdx@db/gdx
    """
    import datetime as dt

    from exchange.retention import compact

    done = compact(database_url, dt.timedelta(days=retention_days))
    if done is None:
        typer.echo("another process is compacting; nothing done")
        return
    typer.echo(f"{done.removed:,} superseded versions removed from {done.resources} resource(s)")


@audit_app.command("verify")
def audit_verify(
    database_url: DbUrl,
    anchor: Annotated[
        str | None, typer.Option(help="ID:HASH of an entry recorded earlier outside the database.")
    ] = None,
) -> None:
    """Recompute the audit trail's hash chain; exit 1 and name every entry that was tampered with."""
    from exchange.audit import verify

    parsed = None
    if anchor:
        entry_id, _, digest = anchor.partition(":")
        if not entry_id.isdigit() or len(digest) != 64:
            raise fail("--anchor takes ID:HASH, e.g. 1200:3f5a... (64 hex digits)", 2)
        parsed = (int(entry_id), digest.lower())
    result = verify(database_url, anchor=parsed)
    if result.ok:
        typer.echo(f"audit trail intact: {result.entries} entries; head {result.head_id}:{result.head_hash}")
        return
    for problem in result.problems:
        console.print(f"[red]tampered:[/red] {problem}", highlight=False)
    raise typer.Exit(1)
