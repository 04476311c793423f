"""The `gdx` command: one entry point for every part of the platform.

The CA and the inventory are the shared base's own commands (here); each package owns its commands
(exchange/cli.py, front_end_node/cli.py, monitoring/cli.py, infra/cli.py, local_platform/cli.py),
mounted below. A front-end node installs only what the agent needs, so a command whose package or
extra is missing says what to install instead of failing with a traceback.
"""

from __future__ import annotations

import importlib
import os
import re
from importlib import metadata
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from gdx import __version__
from gdx.inventory import InventoryError, JurisdictionSpec, load_inventory
from gdx.pki import PkiError, Role, init_ca, issue
from gdx.terminal import console, fail, reported

app = typer.Typer(
    help="GDX: deploy and operate a government data sharing and exchange platform (政务数据共享交换平台).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
ca_app = typer.Typer(help="The platform's certificate authority (mutual TLS identities).", no_args_is_help=True)
inventory_app = typer.Typer(help="The one inventory of departments and front-end nodes.", no_args_is_help=True)
app.add_typer(ca_app, name="ca")
app.add_typer(inventory_app, name="inventory")

PkiDir = Annotated[Path, typer.Option("--dir", help="Where the CA's files live.")]


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        typer.echo(__version__)
        raise typer.Exit()


@ca_app.command("init")
def ca_init(directory: PkiDir = Path("pki")) -> None:
    """Create the platform CA (ca.crt, and ca.key with mode 0600)."""
    with reported(PkiError):
        cert = init_ca(directory)
    typer.echo(f"created {cert} and {directory / 'ca.key'}")


@ca_app.command("issue")
def ca_issue(
    name: Annotated[str, typer.Argument(help="Department id (e.g. zjg-gaj), person, or host name.")],
    directory: PkiDir = Path("pki"),
    role: Annotated[Role, typer.Option(help="What the holder may do.")] = Role.DEPARTMENT,
    server: Annotated[
        list[str] | None,
        typer.Option("--server", help="Issue a server certificate for this DNS name or address (repeatable)."),
    ] = None,
    days: Annotated[int, typer.Option(min=1, max=825, help="Validity in days.")] = 397,
    out: Annotated[Path | None, typer.Option(help="Write NAME.crt and NAME.key here (default: --dir).")] = None,
) -> None:
    """Issue a client certificate (or, with --server, a server certificate) signed by the CA."""
    with reported(PkiError):
        cert, key = issue(directory, name, role=role, server_names=server, days=days, out_dir=out)
    typer.echo(f"issued {cert} and {key} ({'server' if server else role.value})")


@inventory_app.command("check")
def inventory_check(
    inventory: Annotated[Path, typer.Argument(help="The Ansible YAML inventory.")],
) -> None:
    """Validate the inventory and name every bad entry; exit 1 when there is any."""
    try:
        inv = load_inventory(inventory)
    except InventoryError as exc:
        # One line per problem, never wrapped: the text is read in terminals and in Ansible's output.
        console.print(f"[red]{exc.path}: {len(exc.problems)} problem(s)[/red]", highlight=False, soft_wrap=True)
        for problem in exc.problems:
            console.print(f"  - {problem}", highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(1) from None
    table = Table("host", "department", "name", "jurisdiction", "deadlines", title=str(inventory))
    for node in inv.nodes:
        rules = inv.jurisdictions[node.jurisdiction]
        table.add_row(node.host, node.department_id, node.department_name, node.jurisdiction, _deadlines(rules))
    Console().print(table)


def _deadlines(rules: JurisdictionSpec) -> str:
    parts = [
        (rules.reply_working_days, "reply {} wd"),
        (rules.negotiation_working_days, "negotiation {} wd"),
        (rules.explanation_days, "explanation {} d"),
        (rules.decision_days, "decision {} d"),
        (rules.catalog_update_working_days, "catalog {} wd"),
    ]
    return ", ".join(text.format(days) for days, text in parts if days is not None) or "none set"


# (command, module, attribute, help): each package's commands, as `gdx COMMAND ...`.
MOUNTS = (
    ("exchange", "exchange.cli", "app", "The central exchange service."),
    ("audit", "exchange.cli", "audit_app", "The exchange's audit trail."),
    ("node", "front_end_node.cli", "app", "The front-end node agent (前置机): extract, push, pull."),
    ("inbox", "front_end_node.cli", "inbox", "What waits for this node's department at the exchange."),
    ("template", "front_end_node.file_commands", "template", "Download a resource's template to fill."),
    ("upload", "front_end_node.file_commands", "upload", "Upload a filled template: applied whole or refused whole."),
    ("file", "front_end_node.file_commands", "files", "Upload and download the files of a resource of format file."),
    ("monitor", "monitoring.cli", "app", "The monitoring agent: node health, lag per hop, reconciliation."),
    ("render", "infra.cli", "render_stack", "Write and check the Kubernetes manifests of a stack."),
    ("platform", "local_platform.cli", "app", "The whole platform on this machine (make up / down / status)."),
)


def _mount(command: str, module_name: str, attribute: str, help_text: str) -> None:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        _mount_missing(command, help_text, exc)
        return
    target = getattr(module, attribute)
    if isinstance(target, typer.Typer):
        app.add_typer(target, name=command)
    else:
        app.command(command)(target)


def _mount_missing(command: str, help_text: str, exc: ModuleNotFoundError) -> None:
    """A command that takes any arguments and says what to install."""
    everything = {"allow_extra_args": True, "ignore_unknown_options": True}

    @app.command(command, help=f"{help_text} (not installed here)", context_settings=everything)
    def _missing() -> None:
        raise fail(f"`gdx {command}` {missing_part(exc)}", 2)


def missing_part(exc: ModuleNotFoundError) -> str:
    """What to install for a module this installation lacks: the extra of pyproject.toml that
    brings it, or the repository checkout for the parts that only run from one (make up)."""
    top = (exc.name or "").partition(".")[0]
    wanted = _normalise(top)
    try:
        requirements = metadata.requires("gdx") or []
    except metadata.PackageNotFoundError:
        requirements = []
    for requirement in requirements:
        name = re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0]
        extra = re.search(r"""extra\s*==\s*["']([^"']+)["']""", requirement)
        if extra and _normalise(name) == wanted:
            return f"needs the '{extra.group(1)}' extra (module {top} is missing): pip install 'gdx[{extra.group(1)}]'"
    if top == "local_platform":
        return "runs from a checkout of the GDX repository (make up), not from the agent bundle installed here"
    return f"module {top} is missing from this installation; reinstall GDX (make setup)"


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


for _command in MOUNTS:
    _mount(*_command)


def main() -> None:
    import psycopg

    os.environ.setdefault("PYTHONUTF8", "1")
    try:
        app()
    except psycopg.OperationalError as exc:
        # An unreachable database or a wrong password: say so, without a traceback.
        fail(f"cannot reach the database: {str(exc).strip()}")
        raise SystemExit(1) from None
    except ModuleNotFoundError as exc:
        # A command found its package but not a library of an extra this installation lacks.
        fail(f"this command {missing_part(exc)}")
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
