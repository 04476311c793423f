"""`gdx monitor`: the monitoring agent and the dashboards."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gdx import logs
from gdx.inventory import InventoryError
from gdx.terminal import fail

app = typer.Typer(
    help="The monitoring agent: node health, lag per hop, reconciliation, governance.", no_args_is_help=True
)


@app.command("run")
def monitor_run(
    inventory: Annotated[
        Path, typer.Option("--inventory", "-i", envvar="GDX_INVENTORY", help="The inventory Ansible uses.")
    ],
    identity: Annotated[
        str, typer.Option(help="The monitor's operator certificate: NAME.crt and NAME.key in the PKI folder.")
    ] = "monitor",
    pki_dir: Annotated[Path | None, typer.Option(help="Default: the inventory's gdx_pki_dir.")] = None,
    exchange_url: Annotated[str | None, typer.Option(help="Default: the inventory's gdx_exchange_url.")] = None,
    listen: Annotated[str, typer.Option(help="HOST:PORT of the status page and /metrics.")] = "0.0.0.0:9480",
    interval: Annotated[float, typer.Option(min=1, help="Seconds between probe cycles.")] = 15,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds a probe may take.")] = 5,
    heartbeat_interval: Annotated[float, typer.Option(min=0.1, help="The agents' heartbeat_interval_s.")] = 5,
    stall_after: Annotated[float, typer.Option(min=1, help="Seconds without a new heartbeat = stalled.")] = 30,
    reconcile_interval: Annotated[float, typer.Option(min=1, help="Seconds between reconciliation rounds.")] = 300,
    reconcile_ranges: Annotated[int, typer.Option(min=1, max=4096, help="Key ranges per resource.")] = 64,
    reconcile_rows_per_s: Annotated[
        float, typer.Option(min=1, help="The most rows a reconciliation reads per second from one database.")
    ] = 20_000,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Probe every department's node, read the exchange's heartbeats and deadlines, compare copies.

    Serves the status page at http://LISTEN/ and Prometheus metrics at /metrics.

    Example: gdx monitor run -i inventory.yml --identity monitor
    """
    import asyncio

    from monitoring.main import run
    from monitoring.settings import SettingsError, from_inventory

    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise fail(f"--listen {listen!r}: expected HOST:PORT, e.g. 0.0.0.0:9480", 2)
    try:
        settings = from_inventory(
            inventory,
            identity=identity,
            exchange_url=exchange_url,
            pki_dir=pki_dir,
            interval_s=interval,
            probe_timeout_s=timeout,
            heartbeat_interval_s=heartbeat_interval,
            stall_after_s=stall_after,
            reconcile_interval_s=reconcile_interval,
            reconcile_ranges=reconcile_ranges,
            reconcile_rows_per_s=reconcile_rows_per_s,
        )
    except InventoryError as exc:
        raise fail(f"{exc.path}: " + "; ".join(exc.problems), 2) from None
    except SettingsError as exc:
        raise fail(str(exc), 2) from None
    logs.configure(log_level)
    raise typer.Exit(asyncio.run(run(settings, host, int(port))))


@app.command("dashboards")
def monitor_dashboards(
    out: Annotated[Path, typer.Option(help="Folder for the JSON files.")] = Path("build/dashboards"),
) -> None:
    """Write the Grafana dashboards (platform overview, one department) as JSON."""
    from monitoring.dashboards import write

    for path in write(out):
        typer.echo(path)
