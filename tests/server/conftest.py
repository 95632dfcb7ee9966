"""Fixtures that start real server processes on 127.0.0.1 and always clean them up."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from scheduler.server.testing import ProcessCluster


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ProcessCluster]:
    """Three servers with a leader elected. Their logs are printed if the test fails."""
    started = ProcessCluster.started(tmp_path / "cluster")
    try:
        yield started
    finally:
        print(started.log_tail())  # shown by pytest only when the test failed
        started.close()
