"""Test-wide settings: Hypothesis profiles.

`ci` (the default, and what .ci/run uses) keeps the whole suite within the CI budget;
`deep` (RAFTCRON_DEEP=1 or HYPOTHESIS_PROFILE=deep) searches much harder for the patient.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("deep", max_examples=2000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("dev", max_examples=100, deadline=None)

# `raftcron sim` re-runs itself on the compiled simulator when a build exists (cmd_sim.py, `auto`),
# in a child process that pytest's capsys and monkeypatches do not reach. The suite runs the
# sources it is testing; tests/sim/test_native.py covers the compiled build and `auto`.
os.environ.setdefault("RAFTCRON_SIM_BUILD", "interpreted")

_profile = os.environ.get("HYPOTHESIS_PROFILE") or ("deep" if os.environ.get("RAFTCRON_DEEP") else "ci")
settings.load_profile(_profile)


def pytest_collection_modifyitems(config, items):  # type: ignore[no-untyped-def]
    """Tests marked `slow` run only in deep mode."""
    if os.environ.get("RAFTCRON_DEEP"):
        return
    import pytest

    skip = pytest.mark.skip(reason="slow: set RAFTCRON_DEEP=1 to run")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def pytest_addoption(parser):  # type: ignore[no-untyped-def]
    """`pytest --rewrite` regenerates the golden outputs in tests/raft/testdata (see
    tests/raft/datadriven.py); defined here so it works from the repository root."""
    parser.addoption("--rewrite", action="store_true", default=False,
                     help="rewrite the expected output of tests/raft/testdata/*.txt")
