"""README's layout section names every top-level folder of the project, and only those."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_readme_layout_matches_the_tree() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("## Layout", 1)[1].split("```", 2)[1]
    listed = set(re.findall(r"^([a-z_]+)/", block, re.M))
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    folders = {path.split("/", 1)[0] for path in tracked.splitlines() if "/" in path and not path.startswith(".")}
    assert listed == folders
    for package in ("gdx", "exchange", "front_end_node", "monitoring", "infra", "local_platform"):
        for module in re.findall(rf"{package}/[\s\S]*?(?=^\S|\Z)", block, re.M)[0:1]:
            for name in re.findall(r"\b([a-z_]+\.py)\b", module):
                assert list(ROOT.glob(f"{package}/**/{name}")), f"README names {package}/…/{name}, which is gone"
