"""Build the agent bundle that the Ansible agent role installs on front-end nodes.

The bundle is one file, dist/gdx-node-VERSION.tar.gz, holding the project's wheel and every
wheel it depends on, so that a node installs it with `pip install --no-index` and never needs
to reach a package index (front-end servers usually cannot).

    python scripts/build_node_bundle.py                 # the version in gdx/__init__.py
    python scripts/build_node_bundle.py --version 0.1.1 --out /tmp/bundles   # a rebuilt copy under another version

--version rebuilds a copy of the source tree under that version (used by the upgrade tests).
A bundle that already exists is kept unless --force is given.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VERSION_FILE = Path("gdx/__init__.py")
SOURCE_PARTS = ("pyproject.toml", "README.md", "gdx", "exchange", "front_end_node", "monitoring", "infra")


def project_version(root: Path = ROOT) -> str:
    match = re.search(r'^__version__ = "([^"]+)"', (root / VERSION_FILE).read_text(encoding="utf-8"), re.M)
    if not match:
        raise SystemExit(f"build_node_bundle: no __version__ in {root / VERSION_FILE}")
    return match.group(1)


def copy_source(dest: Path, version: str | None, patch: str | None) -> Path:
    dest.mkdir(parents=True)
    for part in SOURCE_PARTS:
        src = ROOT / part
        if src.is_dir():
            shutil.copytree(src, dest / part, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif src.exists():
            shutil.copy2(src, dest / part)
    if version:
        path = dest / VERSION_FILE
        text = re.sub(
            r'^__version__ = "[^"]+"', f'__version__ = "{version}"', path.read_text(encoding="utf-8"), flags=re.M
        )
        path.write_text(text, encoding="utf-8")
    if patch:
        subprocess.run(["patch", "-p1", "-s", "-i", str(Path(patch).resolve())], cwd=dest, check=True)
    return dest


def build(version: str | None, out: Path, *, force: bool, patch: str | None) -> Path:
    final_version = version or project_version()
    bundle = out / f"gdx-node-{final_version}.tar.gz"
    if bundle.exists() and not force:
        print(f"build_node_bundle: {bundle} exists (use --force to rebuild)")
        return bundle
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gdx-bundle-") as tmp:
        work = Path(tmp)
        src = copy_source(work / "src", version, patch) if (version or patch) else ROOT
        wheels = work / "wheels"
        print(f"build_node_bundle: building gdx {final_version} and its dependencies' wheels", flush=True)
        done = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(wheels), str(src)],
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
        # pip's notes about the machine's index mirrors are noise here; anything else is shown.
        noise = ("WARNING: Location",)
        sys.stderr.write("".join(line for line in done.stderr.splitlines(True) if not line.startswith(noise)))
        if done.returncode:
            raise SystemExit(f"build_node_bundle: pip wheel failed (exit {done.returncode})")
        if not list(wheels.glob(f"gdx-{final_version}-*.whl")):
            raise SystemExit(f"build_node_bundle: pip built no gdx-{final_version} wheel in {wheels}")
        partial = bundle.with_suffix(".partial")
        with tarfile.open(partial, "w:gz") as tar:
            for wheel in sorted(wheels.iterdir()):
                tar.add(wheel, arcname=f"wheels/{wheel.name}")
        partial.rename(bundle)
    print(f"build_node_bundle: wrote {bundle} ({bundle.stat().st_size / 1e6:.1f} MB)")
    return bundle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", help="build a copy of the source under this version")
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="where the bundle goes (default: dist/)")
    parser.add_argument("--patch", help="apply this patch (-p1) to the copy first (tests build broken releases)")
    parser.add_argument("--force", action="store_true", help="rebuild even when the bundle exists")
    args = parser.parse_args()
    build(args.version, args.out, force=args.force, patch=args.patch)


if __name__ == "__main__":
    main()
