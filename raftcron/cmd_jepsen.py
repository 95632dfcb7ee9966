"""`raftcron jepsen ...`: the Jepsen-like harness on the command line.

`jepsen check FILE` runs the linearizability checker over a recorded history (from the
simulator or from real processes; both write the same JSON lines). Exit codes: 0 valid,
1 invalid, 2 unknown (time limit reached) or unusable input (one-line error on stderr).

The group is built so other subcommands slot in beside `check`: see `_register_run`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from jepsen_like.history import NEMESIS_PROCESS, Event, HistoryError, load_history, pair_operations
from jepsen_like.linearizability import UNKNOWN, CheckResult, check
from jepsen_like.models import MODELS, ModelError
from raftcron.cli import UsageError

EXIT_VALID, EXIT_INVALID, EXIT_UNKNOWN = 0, 1, 2
FAILURES_SHOWN_MAX = 5  # invalid partitions explained in the readable summary


def register(subparsers: Any) -> None:
    """Add the `jepsen` group and its subcommands to the top-level parser."""
    parser = subparsers.add_parser(
        "jepsen",
        help="fault-injection tests on real servers, and checkers of their histories",
        description="Jepsen-style testing: histories of client operations and their checkers.",
    )
    parser.set_defaults(func=_print_help(parser))
    commands = parser.add_subparsers(dest="jepsen_command", metavar="SUBCOMMAND")
    _register_check(commands)
    _register_run(commands)


def _print_help(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    def show(args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    return show


def _register_run(commands: Any) -> None:
    """`jepsen run` (real servers, workload, nemesis, store) and `jepsen analyze` (check a
    stored run again); the options live in jepsen_like/run_options.py, the work in
    jepsen_like/runner.py (imported only when a run starts)."""
    from jepsen_like.run_options import RUN_DESCRIPTION, add_run_arguments

    parser = commands.add_parser(
        "run", help="run real servers under faults, record a history, check it",
        description=RUN_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser)
    parser.set_defaults(func=_run_command)
    again = commands.add_parser("analyze", help="check a stored run again (rewrites results.json)",
                                description="Check a run directory of `jepsen run` again.")
    again.add_argument("run_dir", metavar="DIR", help="a run directory, e.g. store/latest")
    again.add_argument("--json", action="store_true", help="print results.json")
    again.set_defaults(func=_analyze_command)


def _run_command(args: argparse.Namespace) -> int:
    from jepsen_like.runner import execute, options_from_args

    try:
        options = options_from_args(args)
        run_dir, results = execute(options)
    except (ValueError, RuntimeError) as error:
        raise UsageError(str(error)) from None
    return _report_run(run_dir, results, as_json=args.json)


def _analyze_command(args: argparse.Namespace) -> int:
    from pathlib import Path

    from jepsen_like.store import analyze

    run_dir = Path(args.run_dir).resolve()
    if not (run_dir / "run.json").exists():
        raise UsageError(f"{args.run_dir}: not a run directory (no run.json)")
    return _report_run(run_dir, analyze(run_dir), as_json=args.json)


def _report_run(run_dir: Any, results: dict[str, Any], *, as_json: bool) -> int:
    from jepsen_like.runner import summary_lines

    if as_json:
        json.dump(results, sys.stdout, default=repr)
        sys.stdout.write("\n")
    else:
        print("\n".join(summary_lines(run_dir, results)))
    if results["valid"] is True:
        return EXIT_VALID
    return EXIT_INVALID if results["valid"] is False else EXIT_UNKNOWN


def _register_check(commands: Any) -> None:
    parser = commands.add_parser(
        "check",
        help="check a recorded history for linearizability",
        description=(
            "Check a JSON-lines history (Jepsen's shape: index, time, process, type, f, key, "
            "value) for linearizability. Exit 0 valid, 1 invalid, 2 unknown or bad input."
        ),
    )
    parser.add_argument("file", help="history file, one JSON event per line")
    parser.add_argument(
        "--model", choices=sorted(MODELS), default="register",
        help="register: one read/write/cas register; kv: one register per key (checked per key)",
    )
    parser.add_argument(
        "--time-limit", type=float, default=None, metavar="S",
        help="give up after S seconds and report unknown (default: no limit)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(func=_check_command)


def _check_command(args: argparse.Namespace) -> int:
    if args.time_limit is not None and not args.time_limit >= 0:
        raise UsageError(f"--time-limit must be a number of seconds >= 0, got {args.time_limit}")
    try:
        events = load_history(args.file)
    except OSError as error:
        raise UsageError(f"cannot read {args.file}: {error.strerror or error}") from None
    except HistoryError as error:
        raise UsageError(f"{args.file}: {error}") from None
    return run_check(events, args.model, args.time_limit, as_json=args.json, source=args.file)


def run_check(
    events: Sequence[Event],
    model_name: str,
    time_limit_s: float | None,
    *,
    as_json: bool = False,
    source: str = "history",
) -> int:
    """Pair, check and report a history; returns the exit code (0 valid, 1 invalid, 2 unknown)."""
    try:
        operations = pair_operations(events)
        result = check(
            operations, MODELS[model_name](), time_limit_s=time_limit_s, progress=_progress
        )
    except (HistoryError, ModelError) as error:
        raise UsageError(f"{source}: {error}") from None
    failed = sum(1 for e in events if e.type == "fail" and e.process != NEMESIS_PROCESS)
    if as_json:
        document = {**result.to_json(), "event_count": len(events), "failed_ops_dropped": failed}
        json.dump(document, sys.stdout, default=repr)
        sys.stdout.write("\n")
    else:
        _print_summary(result, source, len(events), failed, time_limit_s)
    if result.valid is True:
        return EXIT_VALID
    return EXIT_INVALID if result.valid is False else EXIT_UNKNOWN


def _progress(done: int, total: int) -> None:
    """Partitions checked so far, on an interactive stderr only (kept out of pipes and CI)."""
    if total > 1 and sys.stderr.isatty():
        end = "\n" if done == total else ""
        print(f"\rchecked {done}/{total} partitions", end=end, file=sys.stderr, flush=True)


def _print_summary(
    result: CheckResult, source: str, event_count: int, failed: int, time_limit_s: float | None
) -> None:
    ok_count = result.op_count - result.info_count
    print(
        f"{source}: {event_count} events -> {result.op_count} operations "
        f"({ok_count} ok, {result.info_count} info; {failed} failed ops dropped)"
    )
    print(f"model: {result.model}, {len(result.partitions)} partition(s), "
          f"checked in {result.elapsed_s:.3f} s")
    invalid = [part for part in result.partitions if part.valid is False]
    unknown = [part for part in result.partitions if part.valid == UNKNOWN]
    if result.valid is True:
        print("VALID: the history is linearizable")
        return
    if result.valid is False:
        if result.model == "register":
            print("INVALID: the register's history cannot be linearized")
        else:
            keys = ", ".join(repr(part.key) for part in invalid[:10])
            more = " ..." if len(invalid) > 10 else ""
            print(f"INVALID: {len(invalid)} key(s) cannot be linearized: {keys}{more}")
        for part in invalid[:FAILURES_SHOWN_MAX]:
            assert part.failure is not None
            label = "" if part.key is None else f"key {part.key!r}: "
            print(f"  {label}{part.failure.describe()[0]}")
            for line in part.failure.describe()[1:]:
                print(f"  {line}")
    if unknown:
        limit = "the time limit" if time_limit_s is None else f"the {time_limit_s:g} s time limit"
        print(f"UNKNOWN: {len(unknown)} partition(s) not decided within {limit}")
