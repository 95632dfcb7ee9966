"""Building `raftcron`'s parser, which every command does first, stays light: it must not import
the jepsen harness, trio, httpx or the scheduler (they cost ~0.25 s of every command's start;
commands import them when they run)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("trio", "httpx", "jepsen_like.runner", "scheduler.server", "scheduler.job", "croniter")

_CHILD = """
import json, sys
from raftcron.cli import build_parser
build_parser()
print(json.dumps(sorted(sys.modules)))
"""


def test_building_the_parser_imports_none_of_the_heavy_modules() -> None:
    done = subprocess.run([sys.executable, "-c", _CHILD], cwd=ROOT, capture_output=True, text=True, check=True)
    loaded = set(json.loads(done.stdout))
    assert loaded.isdisjoint(HEAVY), sorted(loaded & set(HEAVY))
    assert "raftcron.cmd_jepsen" in loaded and "raftcron.cmd_server" in loaded  # every command registered
