"""What every `gdx` command prints to a person: errors in red on stderr, exit codes that say why."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape

console = Console(stderr=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print `error: MESSAGE` and return the exit to raise: 1 for a failure, 2 for bad input."""
    console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def progress(line: str) -> None:
    """One step of a long run, as `> what happens` (make up, make down)."""
    console.print(f"[green]>[/green] {escape(line)}", highlight=False)
