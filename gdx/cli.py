"""The `gdx` command: one entry point for every part of the platform."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gdx import __version__, logs
from gdx.inventory import InventoryError, load_inventory
from gdx.pki import PkiError, Role, init_ca, issue

if TYPE_CHECKING:
    from front_end_node.config import NodeConfig

console = Console(stderr=True)
app = typer.Typer(
    help="GDX: deploy and operate a government data sharing and exchange platform (政务数据共享交换平台).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
ca_app = typer.Typer(help="The platform's certificate authority (mutual TLS identities).", no_args_is_help=True)
exchange_app = typer.Typer(help="The central exchange service.", no_args_is_help=True)
audit_app = typer.Typer(help="The exchange's audit trail.", no_args_is_help=True)
node_app = typer.Typer(help="The front-end node agent (前置机): extract, push, pull.", no_args_is_help=True)
inventory_app = typer.Typer(help="The one inventory of departments and front-end nodes.", no_args_is_help=True)
monitor_app = typer.Typer(
    help="The monitoring agent: node health, lag per hop, reconciliation, governance.", no_args_is_help=True
)
app.add_typer(ca_app, name="ca")
app.add_typer(exchange_app, name="exchange")
app.add_typer(audit_app, name="audit")
app.add_typer(inventory_app, name="inventory")
app.add_typer(monitor_app, name="monitor")
app.add_typer(node_app, name="node")
platform_app = typer.Typer(
    help="The whole platform on this machine (make up / make down / make status).", no_args_is_help=True
)
app.add_typer(platform_app, name="platform")

DbUrl = Annotated[
    str,
    typer.Option(
        "--database-url",
        envvar="GDX_DATABASE_URL",
        help="PostgreSQL connection string, e.g. postgresql://gdx@db/gdx",
        show_default=False,
    ),
]
PkiDir = Annotated[Path, typer.Option("--dir", help="Where the CA's files live.")]


def _fail(message: str, code: int = 1) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(code)


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
    try:
        cert = init_ca(directory)
    except PkiError as exc:
        raise _fail(str(exc)) from None
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
    try:
        cert, key = issue(directory, name, role=role, server_names=server, days=days, out_dir=out)
    except PkiError as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"issued {cert} and {key} ({'server' if server else role.value})")


@exchange_app.command("migrate")
def exchange_migrate(database_url: DbUrl) -> None:
    """Bring the database schema up to date (safe to run from several pods at once)."""
    from exchange.migrate import migrate

    applied = migrate(database_url)
    typer.echo("applied: " + ", ".join(applied) if applied else "schema is up to date")


@exchange_app.command("load-departments")
def exchange_load_departments(
    inventory: Annotated[Path, typer.Argument(help="The Ansible YAML inventory.")],
    database_url: DbUrl,
) -> None:
    """Load the department registry from the inventory (departments it no longer lists are deactivated)."""
    from exchange.registry import sync_from_inventory

    try:
        inv = load_inventory(inventory, require_secrets=False)
    except InventoryError as exc:
        raise _fail(str(exc)) from None
    listed, deactivated = sync_from_inventory(database_url, inv)
    typer.echo(f"{listed} department(s) active, {deactivated} deactivated")


@exchange_app.command("serve")
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
    from exchange.server import serve
    from exchange.settings import Settings

    for label, path in (("--tls-cert", tls_cert), ("--tls-key", tls_key), ("--ca-cert", ca_cert)):
        if not path.is_file():
            raise _fail(f"{label} {path}: no such file")
    logs.configure()
    settings = Settings(database_url, tls_cert, tls_key, ca_cert, calendar, pool_max=pool_max, tls_alerts=tls_alerts)
    serve(settings, host, port, workers=workers)


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
            raise _fail("--anchor takes ID:HASH, e.g. 1200:3f5a... (64 hex digits)", 2)
        parsed = (int(entry_id), digest.lower())
    result = verify(database_url, anchor=parsed)
    if result.ok:
        typer.echo(f"audit trail intact: {result.entries} entries; head {result.head_id}:{result.head_hash}")
        return
    for problem in result.problems:
        console.print(f"[red]tampered:[/red] {problem}", highlight=False)
    raise typer.Exit(1)


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
    table = Table("host", "department", "name", "jurisdiction", "reply days", title=str(inventory))
    for node in inv.nodes:
        days = str(inv.reply_working_days(node.jurisdiction))
        table.add_row(node.host, node.department_id, node.department_name, node.jurisdiction, days)
    Console().print(table)


NodeConfigPath = Annotated[
    Path,
    typer.Option("--config", "-c", envvar="GDX_NODE_CONFIG", help="The node's config file (written by Ansible)."),
]


def _node_config(path: Path) -> NodeConfig:
    from front_end_node.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


@node_app.command("run")
def node_run(config: NodeConfigPath = Path("/etc/gdx/node.yml")) -> None:
    """Run the agent: extract published tables, push them, pull subscriptions; serve /healthz and /metrics.

    Runs until SIGTERM or Ctrl-C, then finishes the step in hand. Logs are JSON lines on stderr.
    """
    import asyncio

    from front_end_node.agent import run
    from gdx.aio import tune_gc

    cfg = _node_config(config)
    logs.configure(cfg.log_level)
    tune_gc()
    raise typer.Exit(asyncio.run(run(cfg)))


@node_app.command("check")
def node_check(config: NodeConfigPath = Path("/etc/gdx/node.yml")) -> None:
    """Validate a config file without starting anything (Ansible runs it before installing a new config).

    Exit 0 when the file is usable, 2 with every bad setting named otherwise.
    """
    cfg = _node_config(config)
    typer.echo(
        f"{config}: ok (department {cfg.department}, {len(cfg.publishes)} published, {len(cfg.subscribes)} subscribed)"
    )


@node_app.command("sync")
def node_sync(
    resource: Annotated[str, typer.Argument(help="The published resource's catalog code.")],
    full: Annotated[bool, typer.Option("--full", help="Copy the whole table (the initial load).")] = False,
    restart: Annotated[bool, typer.Option("--restart", help="Start over instead of resuming.")] = False,
    config: NodeConfigPath = Path("/etc/gdx/node.yml"),
) -> None:
    """Load a published table into the front-end database; the running agent pushes it on.

    Resumable: an interrupted load goes on after the last key it committed.

    Example: gdx node sync --full zjg-gaj.population -c /etc/gdx/node.yml
    """
    import asyncio

    from front_end_node.config import ConfigError
    from front_end_node.full_sync import full_sync
    from front_end_node.health import Waiting
    from front_end_node.sources import SourceError
    from front_end_node.store import FieldsChanged
    from gdx.aio import tune_gc

    if not full:
        raise _fail("only --full is supported: incremental sync is what `gdx node run` does", 2)
    cfg = _node_config(config)
    logs.configure(cfg.log_level)
    tune_gc()
    try:
        rows = asyncio.run(full_sync(cfg, resource, restart=restart))
    except (ConfigError, SourceError, Waiting) as exc:
        raise _fail(str(exc)) from None
    except FieldsChanged as exc:
        raise _fail(f"{exc}: run the same command again, it goes on with the new fields") from None
    console.print(f"{resource}: {rows:,} rows read; the agent pushes the changes to the exchange", highlight=False)


@monitor_app.command("run")
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

    from monitoring.agent import run
    from monitoring.settings import SettingsError, from_inventory

    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise _fail(f"--listen {listen!r}: expected HOST:PORT, e.g. 0.0.0.0:9480", 2)
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
        raise _fail(f"{exc.path}: " + "; ".join(exc.problems), 2) from None
    except SettingsError as exc:
        raise _fail(str(exc), 2) from None
    logs.configure(log_level)
    raise typer.Exit(asyncio.run(run(settings, host, int(port))))


@monitor_app.command("dashboards")
def monitor_dashboards(
    out: Annotated[Path, typer.Option(help="Folder for the JSON files.")] = Path("build/dashboards"),
) -> None:
    """Write the Grafana dashboards (platform overview, one department) as JSON."""
    from monitoring.dashboards import write

    for path in write(out):
        typer.echo(path)


@app.command("render")
def render_stack(
    stack: Annotated[str, typer.Option(help="local, dev or prod (infra/Pulumi.STACK.yaml).")],
    out: Annotated[Path, typer.Option(help="Folder for the manifests (one file per object, in apply order).")],
    pki: Annotated[Path | None, typer.Option(help="PKI folder (default: the stack's gdx:pkiDir).")] = None,
    inventory: Annotated[Path | None, typer.Option(help="Inventory (default: the stack's gdx:inventory).")] = None,
    secret: Annotated[
        list[str] | None,
        typer.Option(help="KEY=VALUE for a secret setting, e.g. databasePassword=... (repeatable)."),
    ] = None,
    with_secrets: Annotated[
        bool, typer.Option(help="Write secret values (for podman kube play); otherwise they are redacted.")
    ] = False,
) -> None:
    """Write the Kubernetes manifests the Pulumi program declares for a stack, checked.

    Runs infra/ under Pulumi's mocks (no cluster, no Pulumi CLI), validates every manifest against
    the Kubernetes 1.29 schemas and applies the policy pack's rules; exits 1 on any problem.

    Example: gdx render --stack prod --out build/manifests/prod --pki pki --inventory inventory.yml
    """
    from infra.render import RenderError, render, write
    from infra.rules import check
    from infra.settings import SettingsError
    from infra.validate import KUBERNETES_VERSION, validate

    secrets = {}
    for item in secret or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise _fail(f"--secret {item!r}: expected KEY=VALUE, e.g. databasePassword=s3cret", 2)
        secrets[key] = value
    try:
        rendering = render(stack, pki_dir=pki, inventory=inventory, secrets=secrets)
    except SettingsError as exc:
        raise _fail("\n  ".join([f"stack {stack}:", *exc.problems]), 2) from None
    except (RenderError, InventoryError) as exc:
        raise _fail(str(exc), 2) from None
    written = write(rendering, out, with_secrets=with_secrets)
    console.print(f"{len(rendering.manifests)} manifests written to {out} (+ outputs.yaml)", highlight=False)
    report = validate(rendering.manifests)
    console.print(
        f"schemas (Kubernetes {KUBERNETES_VERSION}, custom resources' CRDs): "
        f"{report.checked - len(report.problems)} valid, {len(report.problems)} invalid"
    )
    for line in report.unchecked:
        console.print(f"  no schema bundled, not checked: {line}", highlight=False)
    violations = check(rendering.manifests)
    for problem in [*report.problems, *violations]:
        console.print(f"[red]  {escape(problem)}[/red]", highlight=False)
    console.print(f"policy rules: {len(violations)} violations", highlight=False)
    if report.problems or violations:
        raise typer.Exit(1)
    del written


@platform_app.command("up")
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
            progress=lambda line: console.print(f"[green]>[/green] {escape(line)}", highlight=False),
            residents=residents,
            entities=entities,
        )
    except PlatformError as exc:
        raise _fail("make up cannot go on:\n  " + "\n  ".join(exc.problems), 2) from None
    except FAILURES as exc:
        hint = "what runs stays up: fix the cause and run make up again, or make down"
        raise _fail(f"make up stopped: {exc}\n({hint})", 1) from None
    _print_platform(summary)


@platform_app.command("down")
def platform_down(
    purge: Annotated[bool, typer.Option(help="Also drop the nodes' package caches (/var/cache/gdx-local).")] = False,
) -> None:
    """Remove everything `gdx platform up` made (containers, network, pods, volumes, processes,
    build/local), nothing else. The images stay, so the next up is quick."""
    from local_platform.up import down

    down(progress=lambda line: console.print(f"[green]>[/green] {escape(line)}", highlight=False), purge=purge)


@platform_app.command("status")
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
    for what, url in summary["urls"].items():  # type: ignore[attr-defined]
        typer.echo(f"{what:>18}: {url}")


def main() -> None:
    import psycopg

    os.environ.setdefault("PYTHONUTF8", "1")
    try:
        app()
    except psycopg.OperationalError as exc:
        # An unreachable database or a wrong password: say so, without a traceback.
        console.print(f"[red]error:[/red] cannot reach the database: {str(exc).strip()}", highlight=False)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
