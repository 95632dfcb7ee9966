"""Shared set-up for tests/raft: put this directory on sys.path so tests can `from harness import ...`."""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
