"""Shared set-up for tests/raft: put this directory on sys.path so tests can `from harness import ...`."""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)


def pytest_addoption(parser):  # type: ignore[no-untyped-def]
    """`pytest tests/raft --rewrite` regenerates testdata/*.txt (see datadriven.py).

    pytest only asks conftests it loads at start-up for options, and a bare `pytest` (testpaths =
    tests) does not load this one: there, use `RAFTCRON_REWRITE=1 pytest`. Should tests/conftest.py
    ever define --rewrite itself, this one steps aside instead of clashing."""
    try:
        parser.addoption("--rewrite", action="store_true", default=False,
                         help="rewrite the expected output of tests/raft/testdata/*.txt")
    except ValueError:  # "option names {'--rewrite'} already added"
        pass
