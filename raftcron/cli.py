"""The `raftcron` command: one argparse tree, one module per subcommand.

Each subcommand lives in `raftcron/cmd_<name>.py` and exposes `register(subparsers)`, which adds
its parser and sets `func` to a callable taking the parsed namespace and returning an exit code.
Adding a subcommand means adding its module name to `SUBCOMMANDS`; nothing else changes here.
Exit codes: 0 success, 1 a check failed, 2 bad usage (argparse's convention).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

SUBCOMMANDS: tuple[str, ...] = (
    "raftcron.cmd_sim",
    "raftcron.cmd_cron",
    "raftcron.cmd_jepsen",
    "raftcron.cmd_bench",
    "raftcron.cmd_server",
    "raftcron.cmd_job",
    "raftcron.cmd_paper",
    "raftcron.cmd_plot",
)


class UsageError(Exception):
    """Bad arguments that argparse cannot catch; printed as one line, exit 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="raftcron",
        description=(
            "A distributed cron on a hand-written Raft, with a deterministic fault simulator. "
            "Start with `raftcron sim` to watch a simulated 5-node cluster survive a leader crash."
        ),
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in SUBCOMMANDS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name != module_name:
                raise
            continue  # a subcommand still being built is simply absent
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[2:] if argv is None else argv[1:])  # the command's own arguments
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args))
    except UsageError as error:
        print(f"raftcron {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `raftcron sim | head`: the reader left; not an error of ours
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush stays quiet
        return 141  # what a shell reports for a process killed by SIGPIPE
