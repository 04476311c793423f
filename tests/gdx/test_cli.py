"""`gdx` mounts each package's commands; one whose package or extra is not installed (a front-end
node has the agent bundle only) says what to install, with no traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from gdx.cli import app


def _gdx_without(modules: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    # A module set to None in sys.modules cannot be imported: as on a machine that lacks it.
    program = (
        "import sys\n"
        f"for name in {modules!r}: sys.modules[name] = None\n"
        f"sys.argv = ['gdx', *{list(args)!r}]\n"
        "from gdx.cli import main\n"
        "main()\n"
    )
    return subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    ("missing", "args", "says"),
    [
        (["pulumi"], ["render", "--stack", "prod", "--out", "/nonexistent"], "needs the 'infra' extra"),
        (["grafana_foundation_sdk"], ["monitor", "dashboards", "--out", "/nonexistent"], "gdx[monitor]"),
        (["local_platform"], ["platform", "up", "--residents", "100"], "runs from a checkout of the GDX repository"),
        (["local_platform"], ["platform"], "runs from a checkout of the GDX repository"),
    ],
)
def test_a_missing_part_is_named_with_what_to_install(missing: list[str], args: list[str], says: str) -> None:
    result = _gdx_without(missing, *args)
    assert result.returncode == 2, result.stderr
    assert says in result.stderr
    assert "pip install 'gdx[" in result.stderr or "checkout" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_help_lists_every_package_command_and_marks_a_missing_one() -> None:
    result = _gdx_without(["local_platform"], "--help")
    assert result.returncode == 0, result.stderr
    for command in ("ca", "inventory", "exchange", "audit", "node", "monitor", "render", "platform"):
        assert f"│ {command} " in result.stdout
    assert "not installed here" in result.stdout


def test_with_everything_installed_each_command_has_its_own_help() -> None:
    runner = CliRunner()
    for command in ("exchange", "audit", "node", "inbox", "template", "upload", "monitor", "render", "platform"):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0, (command, result.output)
        assert "not installed here" not in result.output
        assert "Usage: " in result.output
