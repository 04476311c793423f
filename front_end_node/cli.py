"""`gdx node`: the front-end node agent (前置机) and its initial load."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from front_end_node.config import ConfigError, NodeConfig, load_config
from gdx import logs
from gdx.terminal import console, fail

if TYPE_CHECKING:
    from front_end_node.captured import ChangeLog, Position

app = typer.Typer(help="The front-end node agent (前置机): extract, push, pull.", no_args_is_help=True)


NodeConfigPath = Annotated[
    Path,
    typer.Option("--config", "-c", envvar="GDX_NODE_CONFIG", help="The node's config file (written by Ansible)."),
]


def _node_config(path: Path) -> NodeConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


@app.command("run")
def node_run(config: NodeConfigPath = Path("/etc/gdx/node.yml")) -> None:
    """Run the agent: extract published tables, push them, pull subscriptions; serve /healthz and /metrics.

    Runs until SIGTERM or Ctrl-C, then finishes the step in hand. Logs are JSON lines on stderr.
    """
    import asyncio

    from front_end_node.main import run
    from gdx.aio import tune_gc

    cfg = _node_config(config)
    logs.configure(cfg.log_level)
    tune_gc()
    raise typer.Exit(asyncio.run(run(cfg)))


@app.command("check")
def node_check(config: NodeConfigPath = Path("/etc/gdx/node.yml")) -> None:
    """Validate a config file without starting anything (Ansible runs it before installing a new config).

    Exit 0 when the file is usable, 2 with every bad setting named otherwise.
    """
    cfg = _node_config(config)
    typer.echo(
        f"{config}: ok (department {cfg.department}, {len(cfg.publishes)} published, {len(cfg.subscribes)} subscribed)"
    )


@app.command("sync")
def node_sync(
    resource: Annotated[str, typer.Argument(help="The published resource's catalog code.")],
    full: Annotated[bool, typer.Option("--full", help="Copy the whole table (the initial load).")] = False,
    restart: Annotated[bool, typer.Option("--restart", help="Start over instead of resuming.")] = False,
    wait: Annotated[
        bool, typer.Option(help="Wait until the agent has pushed every copied row, then end the load at the exchange.")
    ] = True,
    config: NodeConfigPath = Path("/etc/gdx/node.yml"),
) -> None:
    """Load a published table into the front-end database; the running agent pushes it on.

    Resumable: an interrupted load goes on after the last key it committed. The exchange holds the
    load open until every row is pushed (subscriptions that begin meanwhile read the change log).

    Example: gdx node sync --full zjg-gaj.population -c /etc/gdx/node.yml
    """
    import asyncio

    from front_end_node.errors import Waiting
    from front_end_node.full_sync import full_sync
    from front_end_node.sources import SourceError
    from front_end_node.store import FieldsChanged
    from gdx.aio import tune_gc

    if not full:
        raise fail("only --full is supported: incremental sync is what `gdx node run` does", 2)
    cfg = _node_config(config)
    logs.configure(cfg.log_level)
    tune_gc()
    try:
        rows = asyncio.run(full_sync(cfg, resource, restart=restart, wait=wait))
    except (ConfigError, SourceError, Waiting) as exc:
        raise fail(str(exc)) from None
    except FieldsChanged as exc:
        raise fail(f"{exc}: run the same command again, it goes on with the new fields") from None
    console.print(f"{resource}: {rows:,} rows read; the agent pushes the changes to the exchange", highlight=False)


def inbox(
    config: NodeConfigPath = Path("/etc/gdx/node.yml"),
    as_json: Annotated[bool, typer.Option("--json", help="The items as JSON, as GET /v1/inbox gives them.")] = False,
) -> None:
    """What waits for this node's department at the exchange: requests to answer, negotiations,
    explanations owed to the authority, disputes, catalog updates due, grants expiring; the
    nearest deadline first, overdue ones marked. Uses the node's certificate (its config).

    Exit 0 with an empty inbox, 1 when something is overdue, 2 when the exchange cannot be asked.
    """
    from rich.table import Table

    from front_end_node.file_commands import http_client, reach
    from gdx.protocol import InboxItem

    exchange = _node_config(config).exchange
    with http_client(exchange) as http:
        answer = reach(exchange, lambda: http.get("/v1/inbox"))
    if answer.status_code != 200:
        raise fail(f"the exchange answered {answer.status_code}: {answer.text[:300]}", 2)
    items = [InboxItem.model_validate(item) for item in answer.json()]
    if as_json:
        typer.echo(answer.text)
    else:
        table = Table("deadline", "what", "resource", "with", "about", "to do", title=f"inbox of {exchange.url}")
        for item in items:
            deadline = "—" if item.deadline is None else str(item.deadline)
            if item.overdue:
                deadline = f"[red]{deadline} overdue[/red]"
            table.add_row(
                deadline, f"{item.kind.value} {item.id}", escape(item.resource or "—"), escape(item.counterpart or "—"),
                escape(item.about or ""), escape(item.action),
            )  # fmt: skip
        console.print(table if items else "nothing waits for this department")
    raise typer.Exit(1 if any(item.overdue for item in items) else 0)


slots = typer.Typer(help="Log capture's replication slots on the business database.", no_args_is_help=True)
app.add_typer(slots, name="slot")


def _logs(cfg: NodeConfig, resources: list[str] | None) -> list[ChangeLog]:
    from front_end_node.log_capture import open_change_log
    from front_end_node.sources import open_source

    logged = [p for p in cfg.publishes if p.capture == "log"]
    if resources:
        unknown = sorted(set(resources) - {p.resource for p in logged})
        if unknown:
            raise fail(f"not published with capture: log on this node: {', '.join(unknown)}", 2)
        logged = [p for p in logged if p.resource in resources]
    if not logged:
        return []
    assert cfg.business_db is not None
    source = open_source(cfg.business_db)
    return [open_change_log(source, pub, "", cfg.department) for pub in logged]


def _log_position(cfg: NodeConfig, capture: ChangeLog) -> Position | None:
    """Where the node's capture stands, as its front-end database holds it."""
    import psycopg

    with psycopg.connect(cfg.front_end_db) as conn:
        found = conn.execute(
            "SELECT watermark ->> 'log' FROM gdx.extract_state WHERE resource = %s", (capture.pub.resource,)
        ).fetchone()
    return capture.position_value(found[0]) if found and found[0] else None


@slots.command("list")
def slot_list(config: NodeConfigPath = Path("/etc/gdx/node.yml")) -> None:
    """The replication slot of each log-capture publication: its state and the WAL it holds back.

    Exit 0 when every slot is there and well, 1 when one is missing or lost its WAL.
    """
    from rich.table import Table

    from front_end_node.sources import SourceError

    table = Table("resource", "log", "state", "WAL held back", "not confirmed")
    bad = False
    cfg = _node_config(config)
    try:
        for capture in _logs(cfg, None):
            figures = capture.figures(_log_position(cfg, capture))
            if figures is None:
                table.add_row(capture.pub.resource, capture.slot, "[yellow]none[/yellow] (made at the agent's start)")
                bad = True
                continue
            bad |= figures.wal_status == "lost"
            table.add_row(
                capture.pub.resource, capture.slot, figures.wal_status,
                f"{figures.retained_bytes / 2**20:,.1f} MiB", f"{figures.behind_bytes / 2**20:,.1f} MiB",
            )  # fmt: skip
    except SourceError as exc:
        raise fail(str(exc), 2) from None
    console.print(table if table.rows else "no publication of this node uses capture: log")
    raise typer.Exit(1 if bad else 0)


@slots.command("drop")
def slot_drop(
    resources: Annotated[list[str] | None, typer.Argument(help="Resources whose slot goes (default: all).")] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for a confirmation (playbooks).")] = False,
    config: NodeConfigPath = Path("/etc/gdx/node.yml"),
) -> None:
    """Drop log capture's replication slots on the business database, so that it lets their WAL go.

    For decommissioning a node (playbooks/decommission.yml runs it), or when a stopped node's slot
    would fill the business database's disk. An agent that runs again loads the table anew at a
    new slot. Example: gdx node slot drop zjg-gaj.population -c /etc/gdx/node.yml
    """
    from front_end_node.sources import SourceError

    try:
        captures = _logs(_node_config(config), resources)
        if not captures:
            console.print("no publication of this node uses capture: log: nothing to drop")
            return
        names = ", ".join(c.slot for c in captures)
        if not yes and not typer.confirm(f"Drop {names} on the business database? Capture starts over with a load"):
            raise typer.Exit(1)
        for capture in captures:
            dropped = capture.drop()
            console.print(f"{capture.pub.resource}: slot {capture.slot} {'dropped' if dropped else 'was not there'}")
    except SourceError as exc:
        raise fail(str(exc), 2) from None


@slots.command("setup")
def slot_setup(config: NodeConfigPath = Path("/etc/gdx/node.yml")) -> None:
    """Print what the business database's DBA does once for this node's capture: log publications.

    Server settings (then a restart) and SQL, with this node's table and account names filled in;
    docs/front-end-node.md ("Log capture: the DBA's checklist") explains each.
    """
    from front_end_node import dba_checklist

    cfg = _node_config(config)
    logged = [p for p in cfg.publishes if p.capture == "log"]
    if not logged or cfg.business_db is None:
        console.print("no publication of this node uses capture: log")
        return
    db = cfg.business_db
    if db.kind == "postgresql":
        lists = [dba_checklist.postgres(p.resource, p.table, db.user) for p in logged]
        checklist = dba_checklist.Checklist(lists[0].settings, sorted({s for c in lists for s in c.statements}))
    else:
        checklist = dba_checklist.mariadb(db.user)
    typer.echo(f"# {db.kind}://{db.host}:{db.port}/{db.name}: log capture of {', '.join(p.table for p in logged)}")
    typer.echo(checklist.text())
