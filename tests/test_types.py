"""The project's packages pass `mypy --strict` (pyproject.toml's settings).

Why a test: mypyc compiles `raft/` and `sim/` for the simulator's default build only when they
type-check, so a type error there silently leaves every run on the slower sources; and the
rest of the project claims the same standard in its docs.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("raft", "sim", "scheduler", "jepsen_like", "raftcron", "papers")


def test_the_packages_pass_mypy_strict(tmp_path: Path) -> None:
    pytest.importorskip("mypy", reason="mypy is a dependency of raftcron (pip install -e .)")
    done = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path), *PACKAGES],
                          cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
