"""`gdx platform`: the whole platform on this machine (make up / make down / make status)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gdx.terminal import fail, progress

app = typer.Typer(help="The whole platform on this machine (make up / make down / make status).", no_args_is_help=True)


@app.command("up")
def platform_up(
    residents: Annotated[int, typer.Option(min=100, help="Residents in the population register.")] = 10_000,
    entities: Annotated[int, typer.Option(min=100, help="Companies in the legal-entity register.")] = 2_000,
) -> None:
    """Stand up the local platform: the central exchange (the local stack under podman), three
    departments' front-end nodes provisioned by site.yml over SSH, their business databases with
    sample data, catalog entries and grants, the monitoring agent, Prometheus and Alertmanager, a
    load generator; wait until the consumer holds the providers' data, then print where to look.
    Run again, it keeps what runs and converges the rest."""
    from local_platform.up import FAILURES, PlatformError, up

    try:
        summary = up(
            progress=progress,
            residents=residents,
            entities=entities,
        )
    except PlatformError as exc:
        raise fail("make up cannot go on:\n  " + "\n  ".join(exc.problems), 2) from None
    except FAILURES as exc:
        hint = "what runs stays up: fix the cause and run make up again, or make down"
        raise fail(f"make up stopped: {exc}\n({hint})", 1) from None
    _print_platform(summary)


@app.command("down")
def platform_down(
    purge: Annotated[bool, typer.Option(help="Also drop the nodes' package caches (/var/cache/gdx-local).")] = False,
) -> None:
    """Remove everything `gdx platform up` made (containers, network, pods, volumes, processes,
    build/local), nothing else. The images stay, so the next up is quick."""
    from local_platform.up import down

    down(progress=progress, purge=purge)


@app.command("status")
def platform_status() -> None:
    """Print the local platform's summary again: per department health and lag, and the URLs."""
    from local_platform.up import status

    _print_platform(status())


def _print_platform(summary: dict[str, object]) -> None:
    table = Table(title=f"GDX local platform — exchange: {summary['exchange']}")
    for column in ("department", "state", "health", "lag per hop (s)"):
        table.add_column(column)
    for row in summary["departments"]:  # type: ignore[attr-defined]
        lag = ", ".join(f"{hop} {value:.1f}" for hop, value in row["lag"].items() if value is not None) or "—"
        table.add_row(row["department"], row["state"], escape(row["health"]), lag)
    Console().print(table)
    for row in summary.get("shared", []):  # type: ignore[attr-defined]
        if "error" in row:
            typer.echo(f"shared data: {row['error']}")
            continue
        held = "not yet" if row["consumer rows"] is None else f"{row['consumer rows']:,}"
        typer.echo(
            f"{row['consumer']} holds {held} rows of {row['resource']} (provider: {row['provider rows']:,})"
            + (", equal by checksum" if row["equal"] else "")
        )
    governance: dict[str, object] = summary.get("governance", {})  # type: ignore[assignment]
    if "error" in governance:
        typer.echo(f"governance: {governance['error']}")
    for item in governance.get("in negotiation", []):  # type: ignore[attr-defined]
        typer.echo(f"in negotiation: request {item['request']}, {item['consumer']} asks {item['provider']} "
                   f"for {item['resource']} (not shared)")  # fmt: skip
    for item in governance.get("revoked grants", []):  # type: ignore[attr-defined]
        typer.echo(f"revoked: grant {item['grant']} of {item['consumer']} on {item['resource']}: {item['reason']}")
    for what, url in summary["urls"].items():  # type: ignore[attr-defined]
        typer.echo(f"{what:>18}: {url}")
