"""Runs every scenario in testdata/ through the data-driven runner and diffs the whole file.

A mismatch shows a unified diff of expected (the file) against actual (this run). To accept a
change on purpose: `pytest tests/raft --rewrite` (or `RAFTCRON_REWRITE=1 pytest`), then read
the diff (`git diff tests/raft/testdata`) and commit it only if you understand what caused it.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest
from datadriven import run_file

TESTDATA = Path(__file__).parent / "testdata"
FILES = sorted(TESTDATA.glob("*.txt"))


def test_there_are_scenarios() -> None:
    assert FILES, f"no scenarios in {TESTDATA}"


@pytest.mark.parametrize("path", FILES, ids=[path.stem for path in FILES])
def test_interaction(path: Path, request: pytest.FixtureRequest) -> None:
    expected = path.read_text()
    actual = run_file(expected)
    if os.environ.get("RAFTCRON_REWRITE") == "1" or request.config.getoption("--rewrite", False):
        if actual != expected:
            path.write_text(actual)
        return
    if actual != expected:
        names = f"{path.name} (expected)", f"{path.name} (actual)"
        old, new = expected.splitlines(), actual.splitlines()
        diff = difflib.unified_diff(old, new, *names, lineterm="", n=4)
        hint = "scenario output differs; `pytest tests/raft --rewrite` accepts it"
        pytest.fail(hint + ":\n" + "\n".join(diff), pytrace=False)
