"""The compiled build (sim/native.py) runs the same stories as the interpreted sources."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sim import native
from sim.runner import SimOptions, run_simulation

_CHILD = """
import json, sys
sys.path.insert(0, sys.argv[1])
import raft.node, sim.cluster
assert raft.node.__file__.endswith(".so") and sim.cluster.__file__.endswith(".so")
from sim.runner import SimOptions, run_simulation
runs = [run_simulation(SimOptions(seed=seed, seconds=8.0, faults=set(faults.split(",")) if faults else None))
        for seed, faults in ((3, ""), (4, "crash,partition,pause,loss,dup,transfer"))]
print(json.dumps([run["trace_sha256"] for run in runs]))
"""


def test_the_compiled_build_gives_the_same_trace_hashes() -> None:
    path = native.build_path()
    if path is None:  # build it (about 30 s); mypyc comes with mypy, which the test extra installs
        pytest.importorskip("mypyc", reason="mypyc (pip install mypy) is needed to compile the simulator")
        path = native.build()
    done = subprocess.run([sys.executable, "-c", _CHILD, str(path)], capture_output=True, text=True,
                          check=True, cwd=str(native.ROOT))
    compiled = json.loads(done.stdout)
    interpreted = [run_simulation(SimOptions(seed=3, seconds=8.0))["trace_sha256"],
                   run_simulation(SimOptions(seed=4, seconds=8.0, faults=set(
                       "crash,partition,pause,loss,dup,transfer".split(","))))["trace_sha256"]]
    assert compiled == interpreted



def test_raftcron_sim_native_runs_the_same_story_in_the_compiled_build(
        capfd: pytest.CaptureFixture[str]) -> None:
    """`raftcron sim --native` re-runs the command in a child on the build: same hash, and the
    child really imported the compiled modules (its own --native is then a no-op)."""
    if native.build_path() is None:
        pytest.importorskip("mypyc", reason="mypyc (pip install mypy) is needed to compile the simulator")
    from raftcron.cli import main

    args = ["sim", "--seconds", "8", "--seed", "5", "--faults", "crash,partition", "--json"]
    assert main([*args, "--native"]) == 0
    compiled = json.loads(capfd.readouterr().out.strip().splitlines()[-1])
    assert main(args) == 0
    interpreted = json.loads(capfd.readouterr().out.strip().splitlines()[-1])
    assert compiled["trace_sha256"] == interpreted["trace_sha256"]
