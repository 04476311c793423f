"""gdx/ is the shared base: the exchange, the agent, the monitoring, infra/ and the local platform
import it, and it imports none of them (gdx/cli.py mounts their commands by module name)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("exchange", "front_end_node", "monitoring", "infra", "local_platform")
SHARED = sorted(p.stem for p in (ROOT / "gdx").glob("*.py") if p.stem not in {"__init__", "__main__", "cli"})


def _imported_packages(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.partition(".")[0])
        elif isinstance(node, ast.Import):
            found.update(alias.name.partition(".")[0] for alias in node.names)
    return found & set(PACKAGES)


@pytest.mark.parametrize("module", [*SHARED, "cli"])
def test_no_module_of_gdx_names_another_package_in_an_import(module: str) -> None:
    # Imports inside functions count too: they are what made the base depend on its users.
    assert _imported_packages(ROOT / "gdx" / f"{module}.py") == set()


def test_importing_the_shared_base_loads_no_other_package() -> None:
    program = (
        "import importlib, sys\n"
        f"for name in {SHARED!r}: importlib.import_module('gdx.' + name)\n"
        f"print(sorted({{m.partition('.')[0] for m in sys.modules}} & set({PACKAGES!r})))\n"
    )
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, cwd=ROOT, check=True)
    assert result.stdout.strip() == "[]", result.stdout


def test_the_check_would_see_a_forbidden_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from front_end_node.config import NodeConfig\n    import infra.render\n")
    assert _imported_packages(sample) == {"front_end_node", "infra"}
