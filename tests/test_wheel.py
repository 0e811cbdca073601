"""The wheel `python -m build` makes installs into a clean virtualenv and runs there with
nothing from the source tree: `harmony --version`, and the demo's secure mesh."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.mesh


def run(argv: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    """`argv` with no trace of this checkout: no PYTHONPATH, this venv off PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = "/usr/bin:/bin"
    return subprocess.run(
        argv,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def source_copy(dst: Path) -> Path:
    """The tracked files only, so the build sees what a clean clone holds (and writes its
    build/ and egg-info there, not into this checkout)."""
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=60
    ).stdout.split(b"\0")
    for name in filter(None, files):
        src = ROOT / name.decode()
        if src.is_file():
            target = dst / name.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
    return dst


def test_the_wheel_installs_and_runs_outside_the_source_tree(tmp_path: Path) -> None:
    src = source_copy(tmp_path / "src")
    dist = tmp_path / "dist"
    built = run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(src)],
        cwd=tmp_path,
        timeout=600,
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (wheel,) = dist.glob("harmony_mesh-*.whl")

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    installed = run([str(py), "-m", "pip", "install", "-q", str(wheel)], tmp_path, 900)
    assert installed.returncode == 0, installed.stderr[-3000:]

    away = tmp_path / "elsewhere"
    away.mkdir()
    where = run([str(py), "-c", "import harmony; print(harmony.__file__)"], away, 60)
    assert where.stdout.strip().startswith(str(env_dir)), where.stdout + where.stderr

    harmony = str(env_dir / "bin" / "harmony")
    version = run([harmony, "--version"], away, 60)
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"harmony {wheel.name.split('-')[1]}"

    demo = run(
        [harmony, "demo", "--no-tui", "--duration", "5", "--dir", str(away / "demo")],
        away,
        180,
    )
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "mesh 'demo' is up" in demo.stdout
    assert "mesh is secure" in demo.stdout
