"""The `raftcron jepsen run` command line: its options and help text, kept apart from the
harness (jepsen_like/runner.py) so that building `raftcron`'s argument parser, which every
command does, does not import trio, httpx and the server (~0.2 s of each command's start).
"""

from __future__ import annotations

from typing import Any, Final

WORKLOADS: Final = ("register", "cron")
NETWORKS: Final = ("auto", "netns", "transport")
TARGETS: Final = ("one", "leader", "minority")  # whom a fault hits (jepsen_like/nemesis.py)

RUN_DESCRIPTION: Final = """\
Start real server processes, drive a workload against their HTTP API while a nemesis injects
faults from outside, record the history, and check it. Everything lands in STORE/<run>/
(history.jsonl, nemesis.jsonl, nodes/*.log, results.json, timeline.png); STORE/latest points
at the newest run. Exit 0 valid, 1 invalid, 2 unknown or bad options.

nemeses: kill (kill -9, restart), pause (SIGSTOP/SIGCONT), partition (a minority or the leader
cut off: iptables in network namespaces when the machine allows it, else a labelled fallback
inside the transport), skew (libfaketime wall-clock offsets, a rate per server process).

examples:
  raftcron jepsen run --nodes 5 --time-limit 60 --nemesis kill,pause,partition,skew
  raftcron jepsen run --nodes 3 --time-limit 30 --nemesis kill --targets leader --workload cron
  raftcron jepsen analyze store/latest          # check a stored run again
"""


def families(text: str) -> tuple[str, ...]:
    if text.strip().lower() in ("", "none"):
        return ()
    return tuple(part.strip() for part in text.split(",") if part.strip())


def add_run_arguments(parser: Any) -> None:
    parser.add_argument("--nodes", type=int, default=5, help="server processes (default 5)")
    parser.add_argument("--time-limit", type=float, default=60.0, metavar="S",
                        help="seconds of workload and faults (default 60)")
    parser.add_argument("--nemesis", default="kill,pause,partition,skew", metavar="LIST",
                        help="comma-separated faults, or none (default all four)")
    parser.add_argument("--targets", default=",".join(TARGETS), metavar="LIST",
                        help="whom faults hit: one, leader, minority (default all three)")
    parser.add_argument("--workload", choices=WORKLOADS, default="register")
    parser.add_argument("--rate", type=float, default=30.0,
                        help="register ops/s in total (default 30)")
    parser.add_argument("--concurrency", type=int, default=None,
                        help="client processes (default 2 per node)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the schedule and workload")
    parser.add_argument("--store", default="store", help="store directory (default ./store)")
    parser.add_argument("--network", choices=NETWORKS, default="auto",
                        help="auto: namespaces if allowed, else the transport fallback")
    parser.add_argument("--fault-duration", type=float, default=3.0, metavar="S",
                        help="mean fault length; each lasts 0.5x-1.5x (default 3)")
    parser.add_argument("--nemesis-interval", type=float, default=2.0, metavar="S",
                        help="mean quiet time between faults (default 2)")
    parser.add_argument("--skew-ms", type=float, default=1500.0, help="largest clock bump (ms)")
    parser.add_argument("--op-timeout", type=float, default=5.0, metavar="S")
    parser.add_argument("--schedule", default="@every 1s", help="cron workload: the job's schedule")
    parser.add_argument("--recovery", type=float, default=5.0, metavar="S",
                        help="cron: seconds of watching after healing, before judging")
    parser.add_argument("--keep-data", action="store_true",
                        help="keep the servers' data directories")
    parser.add_argument("--no-plot", action="store_true", help="skip timeline.png")
    parser.add_argument("--json", action="store_true",
                        help="print results.json instead of a summary")
