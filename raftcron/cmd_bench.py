"""`raftcron bench NAME`: our numbers beside a peer's, measured in the same invocation.

Each bench lives in `papers/perf/suite_<name>.py` and exposes `run(BenchContext) ->
BenchResult`; this module only parses arguments, runs one (or all), and prints a table or JSON.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from typing import Any

from raftcron.cli import UsageError

BENCHES: dict[str, str] = {
    "raft": "3 servers on loopback (WAL + synced LMDB, and LMDB alone), 1/8/64 outstanding vs PySyncObj",
    "http": "acknowledged HTTP writes, 1/8/64 keep-alive clients vs an etcd 3-member cluster",
    "failover": "kill -9 of the leader to the next committed write vs PySyncObj and etcd",
    "sim": "simulated seconds per wall second (idle, 100 proposals/s) vs SimPy ping-pong",
    "planner": "fires/s of planner plus state machine with 1k/10k/100k jobs",
    "checker": "linearizability check time for 1k/10k-operation register histories",
}

HELP = """\
Run one benchmark (or `all`): ours and the peer alternate over --repeats runs in this one
invocation, and the table shows medians [min-max] and the ratio ours/peer. These machines are
shared and noisy: compare numbers only within one run. Peers are installed on demand
(PySyncObj and SimPy from PyPI, etcd from Debian's packages); --no-install only looks.

benches:
""" + "\n".join(f"  {name:<9} {text}" for name, text in BENCHES.items())


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("bench", help="benchmarks beside PySyncObj, etcd and SimPy",
                                   description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", choices=[*BENCHES, "all"], metavar="NAME",
                        help="one of: " + ", ".join([*BENCHES, "all"]))
    parser.add_argument("--json", action="store_true", help="print the result as JSON (a list for `all`)")
    parser.add_argument("--repeats", type=int, default=3, metavar="N",
                        help="alternating repeats of each side (default 3, at least 1)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the harness, not speed")
    parser.add_argument("--no-install", action="store_true", help="use peers only if already installed")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from papers.perf.harness import BenchContext, render

    if args.repeats < 1:
        raise UsageError("--repeats must be >= 1")
    names = list(BENCHES) if args.name == "all" else [args.name]
    ctx = BenchContext(repeats=args.repeats, quick=args.quick, install=not args.no_install)
    results: list[dict[str, Any]] = []
    for name in names:
        print(f"raftcron bench {name}: {BENCHES[name]}", file=sys.stderr, flush=True)
        module = importlib.import_module(f"papers.perf.suite_{name}")
        started = time.perf_counter()
        result = module.run(ctx)
        result.wall_seconds = time.perf_counter() - started
        record = result.to_json()
        results.append(record)
        if not args.json:
            print(render(record), flush=True)
    if args.json:
        print(json.dumps(results if args.name == "all" else results[0], indent=1))
    return 0
