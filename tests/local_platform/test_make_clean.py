"""`make clean` removes what a build made, never the state of a platform `make up` runs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_make_clean_keeps_build_local(tmp_path: Path) -> None:
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    (tmp_path / "gdx").mkdir()
    (tmp_path / "gdx" / "__init__.py").write_text('__version__ = "0"\n')
    for made in ("build/local/pki/ca.key", "build/manifests/prod/a.yaml", "build/dashboards/a.json", ".venv/x"):
        (tmp_path / made).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / made).write_text("x")
    done = subprocess.run(["make", "clean"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "build/local/pki/ca.key").is_file(), "make up's state stays"
    assert not (tmp_path / "build/manifests").exists()
    assert not (tmp_path / "build/dashboards").exists()
    assert not (tmp_path / ".venv").exists()
