"""`gdx render`: the Kubernetes manifests of a stack, as the Pulumi program declares them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from gdx.inventory import InventoryError
from gdx.terminal import console, fail


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
            raise fail(f"--secret {item!r}: expected KEY=VALUE, e.g. databasePassword=s3cret", 2)
        secrets[key] = value
    try:
        rendering = render(stack, pki_dir=pki, inventory=inventory, secrets=secrets)
    except SettingsError as exc:
        raise fail("\n  ".join([f"stack {stack}:", *exc.problems]), 2) from None
    except (RenderError, InventoryError) as exc:
        raise fail(str(exc), 2) from None
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
