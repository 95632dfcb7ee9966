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
        capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, compiled_build: Path) -> None:
    """With no --build and no $RAFTCRON_SIM_BUILD, `raftcron sim` takes the compiled build when
    one of the current sources exists."""
    from raftcron.cli import main

    monkeypatch.delenv("RAFTCRON_SIM_BUILD")  # tests/conftest.py pins it for the rest of the suite
    assert main(["sim", "--seconds", "4", "--seed", "2", "--json"]) == 0
    assert json.loads(capfd.readouterr().out.strip().splitlines()[-1])["build"] == "native"


class _FakeBuilds:
    """Stands in for `native._spawn`: each "build" is a process that lives until `finish()`."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []

    def __call__(self, argv: list[str], log: object) -> subprocess.Popen[bytes]:
        assert "background_build_main" in argv[2]
        child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
        self.started.append(child)
        return child

    def finish(self) -> None:
        for child in self.started:
            if child.stdin is not None and not child.stdin.closed:
                child.stdin.close()
            child.wait(timeout=30)


def test_auto_without_a_build_runs_the_sources_and_starts_one_build_in_the_background(
        capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The run is not held up: it takes the sources and says a build started. A second run while
    that build is under way starts none; a build whose process died is started again; a build
    that failed for these sources is not."""
    from raftcron.cli import main

    pytest.importorskip("mypyc", reason="without mypyc no build is started (that is tested below)")
    monkeypatch.delenv("RAFTCRON_SIM_BUILD")
    monkeypatch.setenv("RAFTCRON_NATIVE_DIR", str(tmp_path))  # an empty cache
    fake = _FakeBuilds()
    monkeypatch.setattr(native, "_spawn", fake)
    args = ["sim", "--seconds", "2", "--seed", "2", "--json"]
    try:
        assert main(args) == 0
        out, err = capfd.readouterr()
        assert json.loads(out.strip().splitlines()[-1])["build"] == "interpreted"
        assert "compiling a faster build of the simulator in the background" in err
        assert len(fake.started) == 1
        lock = tmp_path / f"{native.source_digest()}.building"
        assert lock.read_text() == str(fake.started[0].pid)
        assert native.build_under_way()

        assert main(args) == 0  # under way: not again, and not a word about it
        assert "background" not in capfd.readouterr().err
        assert len(fake.started) == 1

        fake.finish()  # it died without a build (as a kill would leave it): a stale lock
        assert not native.build_under_way()
        assert main(args) == 0
        assert "background" in capfd.readouterr().err
        assert len(fake.started) == 2
        fake.finish()

        native.failed_path().write_text("mypyc failed\n")
        assert main(args) == 0
        assert "background" not in capfd.readouterr().err
        assert len(fake.started) == 2
        monkeypatch.setenv("RAFTCRON_SIM_BUILD", "interpreted")  # the opt-out never starts one
        native.failed_path().unlink()
        assert main(args) == 0
        assert len(fake.started) == 2
    finally:
        fake.finish()


def test_no_background_build_without_mypyc(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import importlib.util

    monkeypatch.setenv("RAFTCRON_NATIVE_DIR", str(tmp_path))
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *rest: None if name == "mypyc" else real_find_spec(name, *rest))
    assert native.start_background_build() is None
    assert not list(tmp_path.iterdir())


def test_a_failed_background_build_leaves_its_reason_and_unlocks(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    monkeypatch.setenv("RAFTCRON_NATIVE_DIR", str(tmp_path))

    def failing_build(*, quiet: bool = True) -> Path:
        raise RuntimeError("mypyc failed in staging: error: Incompatible types")

    monkeypatch.setattr(native, "build", failing_build)
    lock = tmp_path / f"{native.source_digest()}.building"
    lock.write_text(str(os.getpid()))  # as start_background_build leaves it for its child
    assert native.background_build_main(native.source_digest()) == 1
    assert "Incompatible types" in native.failed_path().read_text()
    assert not lock.exists()
    assert native.start_background_build() is None  # not again for these sources


def test_a_background_build_makes_the_build_the_next_run_takes(
        capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The real thing, end to end, in an empty cache (~20 s of mypyc and gcc)."""
    from raftcron.cli import main

    pytest.importorskip("mypyc", reason="mypyc (pip install mypy) is needed to compile the simulator")
    monkeypatch.setenv("RAFTCRON_NATIVE_DIR", str(tmp_path))
    native.failed_path().parent.mkdir(parents=True, exist_ok=True)
    native.failed_path().write_text("an older failure\n")
    assert native.start_background_build() is None  # a failure marker holds it back ...
    native.failed_path().unlink()
    child = native.start_background_build()
    assert child is not None
    assert child.wait(timeout=600) == 0, native.log_path().read_text()[-3000:]
    assert native.build_path() is not None
    assert not native.build_under_way() and not (tmp_path / f"{native.source_digest()}.building").exists()
    assert native.start_background_build() is None  # built: nothing to start
    native.failed_path().write_text("an older failure\n")
    native.build()  # ... and a build that succeeds (here: exists) clears it
    assert not native.failed_path().exists()
    monkeypatch.delenv("RAFTCRON_SIM_BUILD")
    assert main(["sim", "--seconds", "2", "--seed", "2", "--json"]) == 0
    assert json.loads(capfd.readouterr().out.strip().splitlines()[-1])["build"] == "native"


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
    current = native.source_digest()
    for name, text in [("old3.log", ""), ("old2.failed", "x"), ("old1.building", "999999999"),
                       ("old0.building", str(os.getpid())), (f"{current}.log", ""), (f"{current}.failed", "x"),
                       ("new0.building", ""), ("new1.building", "")]:
        (tmp_path / name).write_text(text)
    os.utime(tmp_path / "new1.building", (1000, 1000))  # taken long ago, never given a pid: stale
    removed = native.prune(keep=3)  # new0's lock was taken a moment ago, its pid not yet written: kept
    assert sorted(path.name for path in removed) == [
        "new1.building", "old1.building", "old1.tmp999999999", "old2.failed", "old3", "old3.log"]
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        ["old2", "old1", current, f"old1.tmp{os.getpid()}", "old0.building", "new0.building",
         f"{current}.log", f"{current}.failed"])


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
    monkeypatch.delenv("RAFTCRON_NATIVE_DIR", raising=False)
    monkeypatch.setattr(Path, "home", no_home)  # where cache_dir() looks: every cache lookup raises
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
