"""The compiled build (sim/native.py) runs the same stories as the interpreted sources."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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


@pytest.fixture
def compiled_build() -> Path:
    """The build of the current sources, made here if there is none (about 20 s); mypyc comes
    with mypy, which the test extra installs."""
    path = native.build_path()
    if path is None:
        pytest.importorskip("mypyc", reason="mypyc (pip install mypy) is needed to compile the simulator")
        path = native.build()
    return path


def test_the_compiled_build_gives_the_same_trace_hashes(compiled_build: Path) -> None:
    done = subprocess.run([sys.executable, "-c", _CHILD, str(compiled_build)], capture_output=True, text=True,
                          check=True, cwd=str(native.ROOT))
    compiled = json.loads(done.stdout)
    interpreted = [run_simulation(SimOptions(seed=3, seconds=8.0))["trace_sha256"],
                   run_simulation(SimOptions(seed=4, seconds=8.0, faults=set(
                       "crash,partition,pause,loss,dup,transfer".split(","))))["trace_sha256"]]
    assert compiled == interpreted



def test_raftcron_sim_native_runs_the_same_story_in_the_compiled_build(
        capfd: pytest.CaptureFixture[str], compiled_build: Path) -> None:
    """`raftcron sim --native` re-runs the command in a child on the build: same hash, and the
    child really imported the compiled modules (its own --native is then a no-op)."""
    from raftcron.cli import main

    args = ["sim", "--seconds", "8", "--seed", "5", "--faults", "crash,partition", "--json"]
    assert main([*args, "--native"]) == 0
    compiled = json.loads(capfd.readouterr().out.strip().splitlines()[-1])
    assert main([*args, "--build", "interpreted"]) == 0
    interpreted = json.loads(capfd.readouterr().out.strip().splitlines()[-1])
    assert compiled["trace_sha256"] == interpreted["trace_sha256"]
    assert (compiled["build"], interpreted["build"]) == ("native", "interpreted")


def test_raftcron_sim_runs_an_existing_build_by_default(
        capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        compiled_build: Path) -> None:
    """With no --build and no $RAFTCRON_SIM_BUILD, `raftcron sim` takes the compiled build when
    one of the current sources exists, and the Python sources when none does (never building)."""
    from raftcron.cli import main

    monkeypatch.delenv("RAFTCRON_SIM_BUILD")  # tests/conftest.py pins it for the rest of the suite
    args = ["sim", "--seconds", "4", "--seed", "2", "--json"]
    assert main(args) == 0
    assert json.loads(capfd.readouterr().out.strip().splitlines()[-1])["build"] == "native"
    monkeypatch.setenv("RAFTCRON_NATIVE_DIR", str(tmp_path))  # an empty cache: no build to take
    assert main(args) == 0
    assert json.loads(capfd.readouterr().out.strip().splitlines()[-1])["build"] == "interpreted"
    assert not list(tmp_path.iterdir()), "auto must not start a build"


def test_a_bad_build_name_in_the_environment_is_a_usage_error(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from raftcron.cli import main

    monkeypatch.setenv("RAFTCRON_SIM_BUILD", "fast")
    assert main(["sim", "--seconds", "1"]) == 2
    assert "RAFTCRON_SIM_BUILD='fast'" in capsys.readouterr().err


def test_a_build_prunes_old_builds_and_dead_staging_but_keeps_the_newest(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    monkeypatch.setenv("RAFTCRON_NATIVE_DIR", str(tmp_path))
    for age, name in enumerate(["old3", "old2", "old1", native.source_digest()]):
        (tmp_path / name).mkdir()
        (tmp_path / name / "BUILT").write_text("x")
        os.utime(tmp_path / name / "BUILT", (1000 + age, 1000 + age))
    (tmp_path / "old1.tmp999999999").mkdir()  # no such process: a build that died
    (tmp_path / f"old1.tmp{os.getpid()}").mkdir()  # this process: a build under way
    removed = native.prune(keep=3)
    assert sorted(path.name for path in removed) == ["old1.tmp999999999", "old3"]
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        ["old2", "old1", native.source_digest(), f"old1.tmp{os.getpid()}"])


def test_the_scheduler_world_runs_on_the_compiled_build_with_the_same_story(
        capfd: pytest.CaptureFixture[str], compiled_build: Path) -> None:
    """`--jobs` on the build: the world watches crashes and pauses through the cluster's
    `NodeWatcher`, since a compiled class's methods cannot be replaced on an instance."""
    from raftcron.cli import main

    args = ["sim", "--jobs", str(native.ROOT / "examples" / "jobs.json"), "--faults", "all", "--seed", "1",
            "--seconds", "20", "--json"]
    assert main([*args, "--native"]) == 0
    compiled = json.loads(capfd.readouterr().out.strip().splitlines()[-1])
    assert main([*args, "--build", "interpreted"]) == 0
    interpreted = json.loads(capfd.readouterr().out.strip().splitlines()[-1])
    assert compiled["build"] == "native"
    assert compiled["trace_sha256"] == interpreted["trace_sha256"]
    assert compiled["ticks_fired"] == interpreted["ticks_fired"] > 0


def test_auto_runs_the_sources_when_the_build_cache_cannot_be_found(
        capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """No home directory (Path.home() raises) must not stop a run that never asked for a build."""
    from raftcron.cli import main

    def no_home() -> None:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.delenv("RAFTCRON_SIM_BUILD")
    monkeypatch.setattr(native, "build_path", no_home)
    assert main(["sim", "--seconds", "2", "--json"]) == 0
    assert json.loads(capfd.readouterr().out.strip().splitlines()[-1])["build"] == "interpreted"


def test_figure_16_gives_the_same_numbers_on_the_compiled_build(
        capfd: pytest.CaptureFixture[str], tmp_path: Path, compiled_build: Path) -> None:
    from raftcron.cli import main

    args = ["paper", "fig16", "--trials", "20", "--configs", "150-155,150-300", "--json", "--no-plot",
            "--workers", "1"]
    results = {}
    for build in ("native", "interpreted"):
        assert main([*args, "--out", str(tmp_path / build), "--build", build]) == 0
        results[build] = json.loads(capfd.readouterr().out.strip().splitlines()[-1])
    assert (results["native"].pop("build"), results["interpreted"].pop("build")) == ("native", "interpreted")
    for result in results.values():
        result.pop("wall_seconds")
    assert results["native"] == results["interpreted"]


def test_the_figure_2_timer_ablation_runs_interpreted(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """It replaces a method on one RaftNode, which a compiled class refuses: auto runs the
    sources even with a build at hand, and an explicit --build native is a usage error."""
    from raftcron.cli import main

    monkeypatch.delenv("RAFTCRON_SIM_BUILD")
    args = ["paper", "fig16", "--trials", "2", "--configs", "150-155+fig2timer", "--json", "--no-plot",
            "--workers", "1", "--out", str(tmp_path)]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["build"] == "interpreted"
    assert main([*args, "--build", "native"]) == 2
    assert "--build interpreted" in capsys.readouterr().err
