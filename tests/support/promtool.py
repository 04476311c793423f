"""`promtool check metrics`: what Prometheus' own linter says of an exposition."""

from __future__ import annotations

import shutil
import subprocess


def lint_metrics(exposition: str) -> list[str]:
    """promtool's complaints about ``exposition`` (the text format), one a line; none when clean."""
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool is missing: `make setup` installs Debian's prometheus package"
    result = subprocess.run(
        [promtool, "check", "metrics"], input=exposition, capture_output=True, text=True, timeout=30, check=False
    )
    return [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
