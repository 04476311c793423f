"""What every `gdx` command prints to a person: errors in red on stderr, exit codes that say why."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.markup import escape

console = Console(stderr=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print `error: MESSAGE` and return the exit to raise: 1 for a failure, 2 for bad input."""
    console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


@contextmanager
def reported(*errors: type[Exception], code: int = 1) -> Iterator[None]:
    """Within it, an error the command expects (bad input, a missing file) ends the command with
    `error: MESSAGE` and ``code``, not a traceback."""
    try:
        yield
    except errors as exc:
        raise fail(str(exc), code) from None


def progress(line: str) -> None:
    """One step of a long run, as `> what happens` (make up, make down)."""
    console.print(f"[green]>[/green] {escape(line)}", highlight=False)
