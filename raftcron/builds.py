"""Which build of the Raft core and simulator a command runs: the Python sources, or the
mypyc-compiled build of the same sources (sim/native.py), ~3x faster with the same traces.

`auto` (the default, or `$RAFTCRON_SIM_BUILD`) takes a build of the current sources when one
exists; when none does, the run takes the sources at once and the build starts in the
background for the next run (`sim.native.start_background_build`: once per source version,
never waited for). `native` builds first if needed; `interpreted` runs the sources.
A command on the build runs again in a child process whose `raft` and `sim` are the build's
(a process cannot swap modules it has imported): `raftcron sim` and `raftcron paper fig16`.
"""

from __future__ import annotations

import argparse
import os
import sys

from raftcron.cli import UsageError

BUILDS = ("auto", "native", "interpreted")
BUILD_HELP = ("which build of the Raft core and simulator runs: native, the mypyc-compiled build of these "
              "same sources (~3x faster, the same traces; compiled once per source version, ~20 s to a "
              "minute, here or by `python -m sim.native build`); interpreted, the Python sources; auto, "
              "native when a build of the current sources exists, else interpreted while the build is "
              "made in the background for later runs (default auto, or $RAFTCRON_SIM_BUILD)")


def add_build_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--build", choices=BUILDS, default=None, help=BUILD_HELP)
    parser.add_argument("--native", action="store_const", const="native", dest="build",
                        help="the same as --build native")


def chosen_build(args: argparse.Namespace) -> str:
    """--build, else $RAFTCRON_SIM_BUILD, else auto; a bad environment value is a usage error."""
    build = args.build or os.environ.get("RAFTCRON_SIM_BUILD") or "auto"
    if build not in BUILDS:
        raise UsageError(f"RAFTCRON_SIM_BUILD={build!r}: expected one of {', '.join(BUILDS)}")
    return str(build)


def build_name() -> str:
    """Which build this process runs, as a summary's `build` names it."""
    from sim import native

    return "native" if native.compiled() else "interpreted"


def _start_background_build() -> None:
    """`auto` without a build: this run takes the sources, and the build starts beside it."""
    from sim import native

    try:
        child = native.start_background_build()
    except (OSError, RuntimeError):  # an unwritable cache, no home directory: no build, no harm
        return
    if child is not None:
        print(f"raftcron: compiling a faster build of the simulator in the background (~20 s, once per "
              f"version of raft/ and sim/; log: {native.log_path()}).\n"
              f"  Later runs take it: ~3x faster, the same traces. RAFTCRON_SIM_BUILD=interpreted opts out.",
              file=sys.stderr, flush=True)


def run_on_build(build: str, raftcron_args: list[str]) -> int | None:
    """`raftcron ARGS` again in a child on the compiled build, and its exit code; or None to
    run here: `interpreted`, `auto` with no build of the current sources, or this process is
    the build already."""
    from sim import native

    if build == "interpreted" or native.compiled():
        return None
    try:
        path = native.build_path()
    except (OSError, RuntimeError):  # no home directory, an unreadable cache: no build to take
        path = None
    if path is None and build == "auto":
        _start_background_build()
        return None
    if path is None:
        print("building the compiled simulator for these sources (once per source version, ~20 s)...",
              file=sys.stderr, flush=True)
        try:
            path = native.build()
        except (RuntimeError, OSError) as error:
            raise UsageError(f"--build native: the build failed (--build interpreted runs the Python sources): "
                             f"{str(error)[-500:]}") from None
    return native.run_built(path, raftcron_args)
