"""The compiled build of the simulator's hot modules, which `raftcron sim` runs once it exists.

Why: in pure Python a simulated proposal costs ~110 us of CPU, ~630 calls of small functions
of the Raft core, the event loop, the observer and the trace (papers/perf/README.md, "sim");
no single hot spot is left. mypyc compiles the same typed sources (the project is
`mypy --strict`) into C extension modules, which run them ~3-4x faster (280x real time at 100
proposals/s against 91x, 5,000x idle against 1,290x, per CPU second) with exactly the same
behaviour: a run's `trace_sha256` is identical (tests/sim/test_native.py checks it whenever a
build exists).

How: `python -m sim.native build` copies the `raft` and `sim` packages into a directory named
by the digest of their sources (under `~/.cache/raftcron/native`, or `$RAFTCRON_NATIVE_DIR`),
and compiles `MODULES` there. It never writes into the checkout: an extension module next to
its `.py` would shadow every later edit of that file. `build_path()` names the build of the
current sources, or None when there is none (an edit makes it stale at once); a process uses
it by putting it first on `sys.path` before it imports `raft` or `sim` (not `PYTHONPATH`:
`python -c` and `-m` put the working directory ahead of it). The bench runs the compiled side
in such a subprocess; `python -m sim.native run ARGS` runs `raftcron ARGS` that way, and
`raftcron sim` and `raftcron paper fig16` do it by themselves whenever a build of the current
sources exists (raftcron/builds.py: `--build auto`, the default; `--build interpreted` opts
out; `--native` builds first if needed). When none exists, `auto` starts the build in the
background (`start_background_build`) and that run takes the sources. Compiled,
`raft/messages.py`'s classes refuse `object.__new__`, so the wire codec then builds entries with
`Entry(...)` (raft/codec.py, `_SLOTS_WRITABLE`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("raft", "sim")
MODULES = (
    "raft/messages.py", "raft/log.py", "raft/progress.py", "raft/node.py", "raft/storage.py",
    "raft/driver.py", "raft/ready.py", "sim/clock.py", "sim/network.py", "sim/checkers.py",
    "sim/cluster.py", "sim/trace.py", "sim/statemachine.py",
)
# Not sim/runner.py: compiled it gave +2-3% at 100 proposals/s (same hashes), but mypyc then
# type-checks its whole import graph (workload, swarm, scheduler_world, scheduler.*), and
# whether mypy finds those depends on the environment (with PYTHONPATH on a checkout the
# build failed on their errors): a fragile build for 2%.


def cache_dir() -> Path:
    return Path(os.environ.get("RAFTCRON_NATIVE_DIR") or Path.home() / ".cache" / "raftcron" / "native")


def source_digest() -> str:
    """Names a build: every source file of the copied packages, and the interpreter."""
    digest = hashlib.sha256(sys.version.encode())
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:20]


def build_path(digest: str | None = None) -> Path | None:
    """The finished build of the current sources (or of `digest`), if there is one."""
    path = cache_dir() / (digest or source_digest())
    return path if (path / "BUILT").exists() else None


def compiled() -> bool:
    """Whether this process runs the compiled build (its `raft.node` is an extension)."""
    import raft.node

    return not raft.node.__file__.endswith(".py")


def build(*, quiet: bool = True) -> Path:
    """Copy and compile (~20 s of mypyc and gcc here, more on a loaded machine); a no-op when
    the build exists."""
    existing = build_path()
    if existing is not None:
        failed_path().unlink(missing_ok=True)  # an older attempt's failure no longer holds
        return existing
    target = cache_dir() / source_digest()
    staging = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, staging / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", staging / "pyproject.toml")  # mypy's settings
    done = subprocess.run([sys.executable, "-m", "mypyc", *MODULES], cwd=staging, text=True,
                          capture_output=quiet, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"mypyc failed in {staging}:\n{(done.stdout or '')[-3000:]}{(done.stderr or '')[-2000:]}")
    shutil.rmtree(staging / "build", ignore_errors=True)  # gcc's objects; the .so files stay
    (staging / "BUILT").write_text(" ".join(MODULES) + "\n")
    if target.exists():  # another process finished first: keep its build
        shutil.rmtree(staging, ignore_errors=True)
    else:
        staging.rename(target)
    failed_path().unlink(missing_ok=True)
    prune(keep=KEEP_BUILDS)
    return target


KEEP_BUILDS = 3  # ~6 MB each; every edit of raft/ or sim/ makes a new one


# ---- the build in the background, on first use ------------------------------------------------
# `raftcron sim` (`--build auto`) with no build of the current sources runs the Python sources at
# once and starts this build beside it, niced, so that the next run is the compiled one. A
# build is tried once per source version: one that failed (no C compiler, an edit mypy rejects)
# leaves `DIGEST.failed` and is not started again until `python -m sim.native build` succeeds.

_BACKGROUND = """
import json, os, sys
sys.path[:] = json.loads(sys.argv[1])
os.nice(10)
from sim import native
sys.exit(native.background_build_main(sys.argv[2]))
"""


def _note(kind: str, digest: str | None = None) -> Path:
    """A background build's files beside the builds: DIGEST.log, DIGEST.failed, DIGEST.building."""
    return cache_dir() / f"{digest or source_digest()}.{kind}"


def log_path() -> Path:
    return _note("log")


def failed_path() -> Path:
    return _note("failed")


def build_under_way(digest: str | None = None) -> bool:
    """Whether a background build of the current sources is running (its lock names a live
    process, or was taken a moment ago and does not name one yet)."""
    lock = _note("building", digest)
    try:
        text, age = lock.read_text().strip(), time.time() - lock.stat().st_mtime
    except FileNotFoundError:
        return False
    if text.isdigit():
        return _alive(int(text))
    return age < 60


def start_background_build() -> subprocess.Popen[bytes] | None:
    """Start building the current sources in a detached, niced process, unless a build exists,
    one is under way, one failed for these sources, or mypyc is missing. Returns the process
    (its output goes to `log_path()`), or None when none was started."""
    if importlib.util.find_spec("mypyc") is None:
        return None
    digest = source_digest()
    if build_path(digest) is not None or _note("failed", digest).exists() or build_under_way(digest):
        return None
    lock = _note("building", digest)
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.unlink(missing_ok=True)  # a stale lock: its process is gone
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:  # another run took it between the test and here
        return None
    with os.fdopen(fd, "w") as held, open(_note("log", digest), "wb") as log:
        child = _spawn([sys.executable, "-c", _BACKGROUND, json.dumps(sys.path), digest], log)
        held.write(str(child.pid))
    return child


def _spawn(argv: list[str], log: IO[bytes]) -> subprocess.Popen[bytes]:
    """A process of its own session: a Ctrl-C of the run that started it does not stop it."""
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, cwd=str(cache_dir()))


def background_build_main(digest: str) -> int:
    """The background process: build, or leave `DIGEST.failed` with the reason; then unlock."""
    try:
        if source_digest() != digest:  # the sources changed since the run that started us
            return 0
        try:
            print(build(quiet=False), flush=True)
        except (RuntimeError, OSError) as error:
            _note("failed", digest).write_text(f"{error}\n")
            print(f"build failed: {error}", flush=True)
            return 1
        return 0
    finally:
        lock = _note("building", digest)
        if lock.exists() and lock.read_text().strip() == str(os.getpid()):
            lock.unlink(missing_ok=True)


def prune(*, keep: int) -> list[Path]:
    """Remove all but the `keep` newest finished builds (the current one always stays), the
    staging directories of builds whose process is gone, and the logs and markers of source
    versions other than the current one (but not the lock of a build under way). Returns what
    it removed."""
    root, current = cache_dir(), source_digest()
    if not root.is_dir():
        return []
    removed: list[Path] = []
    builds: list[tuple[float, Path]] = []
    notes: list[Path] = []
    for path in root.iterdir():
        name, _, pid = path.name.partition(".tmp")
        if pid:
            if pid.isdigit() and not _alive(int(pid)):
                removed.append(path)
        elif path.is_file():
            notes.append(path)  # DIGEST.log, .failed, .building
        elif (path / "BUILT").exists() and name != current:
            builds.append(((path / "BUILT").stat().st_mtime, path))
    builds.sort(reverse=True)
    removed += [path for _, path in builds[max(keep - 1, 0):]]
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    for path in notes:
        digest, _, kind = path.name.partition(".")
        if digest == current or (kind == "building" and build_under_way(digest)):
            continue
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


_RUN = """
import json, sys
build, parent_path = sys.argv.pop(1), json.loads(sys.argv.pop(1))
sys.path[:] = [build, *parent_path]
from sim import native
assert native.compiled(), "the build's modules were not imported"
from raftcron.cli import main
sys.exit(main(sys.argv[1:]))
"""


def run_built(path: Path, raftcron_args: list[str]) -> int:
    """`raftcron ARGS` in a child whose `raft` and `sim` are the build at `path`, and whose
    other imports resolve as this process's do: its `sys.path`, not `python -c`'s, which would
    put the working directory first (a `papers/` or `scheduler/` there would shadow ours)."""
    return subprocess.run([sys.executable, "-c", _RUN, str(path), json.dumps(sys.path), *raftcron_args],
                          check=False).returncode


def main(argv: list[str]) -> int:
    if argv[:1] == ["build"]:
        print(build(quiet=False))
        return 0
    if argv[:1] == ["path"]:
        path = build_path()
        print(path if path is not None else "no build of the current sources")
        return 0 if path is not None else 1
    if argv[:1] == ["run"]:
        return run_built(build(), argv[1:])
    print("usage: python -m sim.native build | path | run RAFTCRON-ARGS...", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
