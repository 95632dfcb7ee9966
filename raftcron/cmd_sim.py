"""`raftcron sim`: run a simulated cluster on virtual time, with faults, and check it.

Exit codes (VOPR's): 0 all safe, 129 a correctness (safety) violation, 128 a liveness failure,
127 the simulator itself crashed, 2 bad usage. A failing seed prints the command replaying it.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from typing import IO, Any

from raftcron.builds import add_build_arguments, build_name, chosen_build, run_on_build
from raftcron.cli import UsageError

EXIT_CRASH, EXIT_LIVENESS, EXIT_CORRECTNESS = 127, 128, 129

HELP = """\
Run a Raft cluster in one process on virtual time, inject faults, and check Raft's safety
properties after every step. With no options: 5 nodes, 60 simulated seconds, the leader crashes
a third of the way in and restarts later; prints a summary. The same seed gives the same run,
byte for byte (compare `trace_sha256`).

examples:
  raftcron sim                                   # the default story
  raftcron sim --faults crash,partition,loss --seconds 300 --seed 7 --json
  raftcron sim --bug commit-old-term --seeds 50  # hunt for the Figure 8 bug
  raftcron sim --replay schedule.json            # replay a saved fault schedule
  raftcron sim --native --seeds 500              # compile first if needed (~20 s), then ~3x faster

The first run of a version of raft/ and sim/ takes the Python sources and compiles them in the
background (mypyc, ~20 s, niced); every later run uses that build (same traces, byte for byte,
~3x faster). --build interpreted (or RAFTCRON_SIM_BUILD=interpreted) always takes the sources.
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("sim", help="run a simulated cluster with faults", description=HELP,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=5, help="servers in the cluster (default 5)")
    parser.add_argument("--seconds", type=float, default=60.0, help="simulated seconds (default 60)")
    parser.add_argument("--seed", type=int, default=0, help="the seed everything derives from (default 0)")
    parser.add_argument("--seeds", type=int, default=1, metavar="N",
                        help="run N seeds derived from --seed; stop at the first violation")
    parser.add_argument("--faults", default=None, metavar="LIST",
                        help="swarm faults (docs/testing.md) from: crash,partition,pause,skew,loss,dup,transfer "
                             "(or 'all', or 'none'), at an intensity drawn per seed; 'swarm' also draws which "
                             "kinds, the network and the client mix per seed. Default: crash the leader once; "
                             "with --bug or --seeds N>1: swarm")
    parser.add_argument("--replay", metavar="FILE",
                        help="replay a fault schedule saved with --save-schedule, by a failing run or by the "
                             "Hypothesis suite; such a file names its own seed and options (--bug NAME or "
                             "--bug none still apply, to replay it with a bug on or off)")
    parser.add_argument("--save-schedule", metavar="FILE", help="write the fault schedule used as JSON")
    parser.add_argument("--entries-per-message", type=int, default=256, metavar="N",
                        help="most entries in one AppendEntries (default 256; 1 opens the Figure 8 window)")
    parser.add_argument("--bug", action="append", default=[], metavar="NAME",
                        help="re-introduce a known bug (repeatable; `none` for no bug); see docs/bugs.md")
    parser.add_argument("--storage", choices=("memory", "lmdb", "wal"), default="memory",
                        help="node storage: in memory (fast), real LMDB files, or LMDB behind the "
                             "write-ahead log (wal: each crash replays it; syncs, slow) (default memory)")
    parser.add_argument("--rate", type=float, default=10.0,
                        help="client operations per second, all clients together (default 10)")
    parser.add_argument("--workload", choices=("kv", "counter"), default="kv",
                        help="kv: clients read, write and cas a few keys and the history is checked for "
                             "linearizability; counter: the leader gets blind writes (default kv)")
    parser.add_argument("--clients", type=int, default=5, help="kv: concurrent clients (default 5)")
    parser.add_argument("--keys", type=int, default=3, help="kv: keys the clients share (default 3)")
    parser.add_argument("--history", metavar="FILE",
                        help="kv: write the client history as JSON lines (check it: raftcron jepsen check "
                             "FILE --model kv)")
    parser.add_argument("--election-timeout", default="150-300", metavar="MIN-MAX",
                        help="election timeout range in ms (default 150-300)")
    parser.add_argument("--heartbeat", type=float, default=50.0, help="heartbeat interval in ms (default 50)")
    parser.add_argument("--latency", default="1-5", metavar="MIN-MAX", help="one-way latency in ms (default 1-5)")
    parser.add_argument("--loss", type=float, default=0.0, help="message loss probability (default 0)")
    parser.add_argument("--dup", type=float, default=0.0, help="message duplication probability (default 0)")
    parser.add_argument("--no-prevote", action="store_true", help="disable pre-vote and check-quorum")
    parser.add_argument("--snapshot-entries", type=int, default=1000,
                        help="snapshot when this many entries were applied since the last (0: never)")
    parser.add_argument("--trace", metavar="FILE", help="write the JSON-lines trace here")
    parser.add_argument("--jobs", metavar="FILE",
                        help="run the scheduler: a JSON list of jobs (see examples/jobs.json); the summary adds "
                             "tick outcomes and the exactly-once, liveness and no-SPOF checks")
    parser.add_argument("--plot", metavar="FILE",
                        help="draw the run's timeline, .png or .svg (with --seeds: the last run)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a summary")
    add_build_arguments(parser)
    parser.set_defaults(func=run)


def parse_range(text: str, name: str) -> tuple[float, float]:
    try:
        low_text, _, high_text = text.partition("-")
        low = float(low_text)
        high = float(high_text) if high_text else low
    except ValueError:
        raise UsageError(f"--{name} takes MIN-MAX in milliseconds, e.g. 150-300; got {text!r}") from None
    if not 0 <= low <= high:
        raise UsageError(f"--{name}: need 0 <= MIN <= MAX, got {text!r}")
    return low, high


def build_options(args: argparse.Namespace, seed: int, trace_sink: IO[str] | None) -> Any:
    from raft.config import KNOWN_BUGS
    from sim.cluster import RaftTimings
    from sim.faults import FAULT_KINDS, FaultSchedule
    from sim.network import NetworkOptions
    from sim.runner import SimOptions

    known_bugs = set(KNOWN_BUGS) | SIM_BUGS
    for bug in args.bug:
        if bug not in known_bugs | {"none"}:
            raise UsageError(f"unknown bug {bug!r}; known: {', '.join(sorted(known_bugs))} (or none)")
    if "none" in args.bug and len(args.bug) > 1:
        raise UsageError("--bug none turns every planted bug off; it cannot be combined with other --bug")
    faults: set[str] | None = None
    swarm = swarm_environment = False
    mode = args.faults
    if mode is None and (args.bug or args.seeds > 1):
        # hunting: the default story (one leader crash) would never find anything. With jobs
        # (and no replayed schedule), every fault kind on: the jobs are the workload, so no
        # drawn environment (docs/scheduler.md "Bug switches" has what each finds how fast)
        if not args.jobs:
            mode = "swarm"
        elif not args.replay:
            mode = "all"
    if mode == "swarm":
        swarm = swarm_environment = True
    elif mode is not None:
        faults = set(FAULT_KINDS) if mode == "all" else set() if mode == "none" else {
            f.strip() for f in mode.split(",") if f.strip()}
        unknown = faults - set(FAULT_KINDS)
        if unknown:
            raise UsageError(f"unknown fault kinds {sorted(unknown)}; known: {', '.join(FAULT_KINDS)}")
        swarm = bool(faults)
    schedule = None
    if args.replay:
        try:
            with open(args.replay, encoding="utf-8") as handle:
                schedule = FaultSchedule.from_json(json.load(handle))
            if schedule.options is not None:  # a self-contained schedule: it names its own run
                replayed = SimOptions.replaying(schedule)
                _refuse_run_flags_with_replay(args, replayed)
                replayed.trace_sink = trace_sink
                if args.bug:  # the one thing a replay may change: run the same schedule with/without a bug
                    replayed.bugs = frozenset() if args.bug == ["none"] else frozenset(args.bug)
                replayed.validate()
                return replayed
        except (OSError, ValueError, TypeError, KeyError) as error:
            raise UsageError(f"cannot replay {args.replay}: {error}") from None
    low, high = parse_range(args.election_timeout, "election-timeout")
    if low <= 0 or not 0 < args.heartbeat < low:
        raise UsageError("need 0 < --heartbeat < the minimum election timeout")
    lat_low, lat_high = parse_range(args.latency, "latency")
    if args.entries_per_message < 1:
        raise UsageError("--entries-per-message must be >= 1")
    timings = RaftTimings(low, high, args.heartbeat, pre_vote=not args.no_prevote, check_quorum=not args.no_prevote,
                          entries_per_message_max=args.entries_per_message)
    network = NetworkOptions(latency_ms_min=lat_low, latency_ms_max=lat_high, loss_probability=args.loss,
                             duplicate_probability=args.dup)
    options = SimOptions(nodes=args.nodes, seconds=args.seconds, seed=seed, faults=faults, schedule=schedule,
                         timings=timings, network=network, proposals_per_second=args.rate,
                         snapshot_entries=args.snapshot_entries, bugs=frozenset(args.bug) - {"none"},
                         storage=args.storage,
                         trace_sink=trace_sink, jobs=load_jobs(args.jobs), workload=args.workload,
                         clients=args.clients, keys=args.keys, swarm=swarm, swarm_environment=swarm_environment)
    try:
        options.validate()
    except ValueError as error:
        raise UsageError(str(error)) from None
    return options


# Flags that shape a run, with their defaults: a self-contained schedule (one saved by a failing
# run or the Hypothesis suite) carries its own, so giving one with --replay would be ignored.
RUN_FLAG_DEFAULTS: dict[str, Any] = {
    "nodes": 5, "seconds": 60.0, "seed": 0, "seeds": 1, "faults": None, "storage": "memory", "rate": 10.0,
    "workload": "kv", "clients": 5, "keys": 3, "election_timeout": "150-300", "heartbeat": 50.0,
    "latency": "1-5", "loss": 0.0, "dup": 0.0, "no_prevote": False, "snapshot_entries": 1000,
    "jobs": None, "entries_per_message": 256}


# How to read each run flag's value back out of the options a schedule carries.
_FROM_OPTIONS: dict[str, Any] = {
    "nodes": lambda o: o.nodes, "seconds": lambda o: o.seconds, "seed": lambda o: o.seed,
    "storage": lambda o: o.storage, "rate": lambda o: o.proposals_per_second, "workload": lambda o: o.workload,
    "clients": lambda o: o.clients, "keys": lambda o: o.keys, "snapshot_entries": lambda o: o.snapshot_entries,
    "election_timeout": lambda o: (o.timings.election_timeout_ms_min, o.timings.election_timeout_ms_max),
    "heartbeat": lambda o: o.timings.heartbeat_interval_ms, "no_prevote": lambda o: not o.timings.pre_vote,
    "latency": lambda o: (o.network.latency_ms_min, o.network.latency_ms_max),
    "loss": lambda o: o.network.loss_probability, "dup": lambda o: o.network.duplicate_probability,
    "entries_per_message": lambda o: o.timings.entries_per_message_max, "jobs": lambda o: o.jobs,
}


def _refuse_run_flags_with_replay(args: argparse.Namespace, replayed: Any) -> None:
    """A run flag that agrees with the schedule is harmless; one that disagrees would be
    silently ignored, so say so instead of running something other than what was asked."""
    given = [name for name, default in RUN_FLAG_DEFAULTS.items() if getattr(args, name, default) != default]
    if not given:
        return
    plain = argparse.Namespace(**{**vars(args), "replay": None, "bug": [], "seeds": 1, "faults": None})
    wanted = build_options(plain, args.seed, None)
    given = [name for name in given
             if name not in _FROM_OPTIONS or _FROM_OPTIONS[name](wanted) != _FROM_OPTIONS[name](replayed)]
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise UsageError(f"{args.replay} is a self-contained schedule: it names its own seed, cluster and "
                         f"options, so {flags} would be ignored; drop them (only --bug NAME or --bug none, "
                         "--trace, --plot, --history, --json and --save-schedule apply to a replay)")


# forget-vote is the simulator's; the others are scheduler.machine.SCHEDULER_BUGS (docs/scheduler.md)
SIM_BUGS = frozenset({"forget-vote", "fire-twice", "leader-clock-trust", "lease-no-drift"})


def load_jobs(path: str | None) -> list[dict[str, Any]] | None:
    """The `--jobs` file: a JSON list of Dkron-style jobs, each validated before the run."""
    if path is None:
        return None
    from scheduler.job import JobSpec, JobValidationError

    try:
        with open(path, encoding="utf-8") as handle:
            jobs = json.load(handle)
    except (OSError, ValueError) as error:
        raise UsageError(f"cannot read --jobs {path}: {error}") from None
    if not isinstance(jobs, list) or not jobs:
        raise UsageError(f"--jobs {path}: expected a non-empty JSON list of jobs")
    for position, job in enumerate(jobs):
        try:
            JobSpec.from_json(job)
        except JobValidationError as error:
            raise UsageError(f"--jobs {path}: job {position + 1}: {error}") from None
    return jobs


def _build_tip() -> str | None:
    """For a long hunt on the sources: why, and what makes the next one ~3x faster (nothing when
    a build is under way: the run that started it said so)."""
    from sim import native

    try:
        failed = native.failed_path()
        if failed.exists():
            return f"note: the compiled build of these sources failed ({failed}); `python -m sim.native build` shows why"
        if native.build_under_way():
            return None
    except (OSError, RuntimeError):
        pass
    return ("tip: with mypy installed (its mypyc compiles the simulator once, in the background), later "
            "runs take the compiled build: ~3x faster, the same traces")


def run(args: argparse.Namespace) -> int:
    from sim.runner import derive_seeds

    if args.seeds < 1:
        raise UsageError("--seeds must be >= 1")
    seeds = derive_seeds(args.seed, args.seeds)
    build_options(args, seeds[0], None)  # validate everything before any work
    wanted = chosen_build(args)
    code = run_on_build(wanted, ["sim", *args.argv])
    if code is not None:
        return code
    if args.plot:
        from raftcron.cmd_plot import check_output

        check_output(args.plot)
    build = build_name()
    if build == "interpreted" and wanted == "auto" and len(seeds) >= 20 and not args.json:
        tip = _build_tip()
        if tip is not None:
            print(tip, file=sys.stderr)
    results: list[dict[str, Any]] = []
    worst = 0
    for seed in seeds:
        summary, code = _run_one(args, seed, show_progress=len(seeds) == 1)
        summary["build"] = build
        results.append(summary)
        worst = max(worst, code)
        if len(seeds) > 1 and not args.json:
            print(f"seed {seed}: {_verdict(summary)}", flush=True)
        if code:
            if not args.replay:  # a replay prints its own command line as the exact reproduction
                print(f"reproduce: {reproduce_command(args, seed)}", file=sys.stderr)
            if summary.get("replay_command"):
                print(f"reproduce exactly: {summary['replay_command']}", file=sys.stderr)
            break
    if args.json:
        print(json.dumps(results[0] if len(results) == 1 else {"runs": results, "seeds_run": len(results)}))
    elif len(results) == 1 or worst:
        print(human_summary(results[-1]))  # one run, or the failing one of a batch
    return worst


def _run_one(args: argparse.Namespace, seed: int, *, show_progress: bool) -> tuple[dict[str, Any], int]:
    from sim.runner import Runner

    sink = open(args.trace, "w", encoding="utf-8") if args.trace else None
    try:
        options = build_options(args, seed, sink)
        options.keep_trace = options.keep_trace or bool(args.plot)
        runner = Runner(options)
        try:
            if args.plot:
                from raftcron.cmd_plot import watch_failovers

                failover_windows = watch_failovers(runner)
            if args.save_schedule:
                with open(args.save_schedule, "w", encoding="utf-8") as handle:
                    handle.write(runner.schedule.dumps())
            with _progress(show_progress and not args.json, options.seconds) as progress:
                summary = runner.run(progress)
            _judge_no_leader(summary, options)
            if args.history and runner.workload is not None:
                runner.workload.history.dump(args.history)
            if _exit_code(summary):
                summary["schedule_file"] = args.replay or _save_failing_schedule(args, runner, seed)
                self_contained = options.schedule is not None and options.schedule.options is not None
                summary["replay_command"] = (reproduce_command(args, seed, self_contained=self_contained)
                                             if args.replay else f"raftcron sim --replay {summary['schedule_file']}")
            if args.plot:
                from raftcron.cmd_plot import plot_run

                plot_run(args.plot, runner, failover_windows)
        finally:
            runner.close()
    except UsageError:
        raise
    except Exception:  # the simulator itself crashed: that is a bug to report with its seed
        traceback.print_exc()
        return {"seed": seed, "crashed": True}, EXIT_CRASH
    finally:
        if sink is not None:
            sink.close()
    return summary, _exit_code(summary)


def _judge_no_leader(summary: dict[str, Any], options: Any) -> None:
    """A run long enough for several elections that never elected anyone did not work: say so
    (exit 128) instead of printing a clean summary. Shorter runs may legitimately end leaderless."""
    from sim.swarm import liveness_bound_ms

    if summary.get("first_leader_s") is None and options.seconds * 1000.0 >= liveness_bound_ms(options):
        summary["no_leader"] = (f"no leader was elected in {options.seconds:g} simulated seconds "
                                f"(more than the {liveness_bound_ms(options):.0f} ms a cluster needs)")


def _exit_code(summary: dict[str, Any]) -> int:
    """129 for anything wrong with what clients were told or what nodes hold (Raft safety, a
    non-linearizable history, scheduler exactly-once), 128 for a cluster that did not recover."""
    if (summary["safety_violations"] or summary.get("exactly_once_violations")
            or summary.get("linearizability_violations")):
        return EXIT_CORRECTNESS
    if (summary.get("liveness_violations") or summary.get("no_spof_violations")
            or (summary.get("liveness") or {}).get("failure") or summary.get("no_leader")):
        return EXIT_LIVENESS
    return 0


def _save_failing_schedule(args: argparse.Namespace, runner: Any, seed: int) -> str:
    """The failing run as a self-contained schedule (seed and options inside), for --replay."""
    import os
    import tempfile

    path = args.save_schedule or os.path.join(tempfile.gettempdir(), f"raftcron-sim-{seed}.json")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(runner.schedule.dumps())
    return str(path)


def _verdict(summary: dict[str, Any]) -> str:
    if summary.get("crashed"):
        return "CRASHED (the simulator raised)"
    problems = []
    if summary.get("safety_violations"):
        problems.append(f"{len(summary['safety_violations'])} safety violations")
    if summary.get("linearizability_violations"):
        problems.append(f"non-linearizable keys {[f['key'] for f in summary['linearizability_violations']]}")
    if (summary.get("liveness") or {}).get("failure"):
        problems.append("liveness: " + summary["liveness"]["failure"])
    if summary.get("no_leader"):
        problems.append(summary["no_leader"])
    for name in ("exactly_once_violations", "liveness_violations", "no_spof_violations"):
        if summary.get(name):
            problems.append(f"{len(summary[name])} {name.replace('_', ' ')}")
    return "ok" if not problems else "FAILED (" + "; ".join(problems) + ")"


class _progress:
    """A rich progress bar on stderr for runs long enough to need one; silent otherwise."""

    def __init__(self, enabled: bool, seconds: float) -> None:
        self.enabled = enabled and sys.stderr.isatty() and seconds >= 120
        self._progress: Any = None

    def __enter__(self) -> Any:
        if not self.enabled:
            return None
        from rich.progress import Progress

        self._progress = Progress(transient=True)
        self._progress.start()
        task = self._progress.add_task("simulating", total=1.0)
        return lambda fraction: self._progress.update(task, completed=fraction)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()


def reproduce_command(args: argparse.Namespace, seed: int, *, self_contained: bool = False) -> str:
    """The command line that runs this seed again. A self-contained schedule names its own run,
    so only --bug can differ from the file; a bare one (actions only) needs every flag."""
    if args.replay and self_contained:
        return " ".join(["raftcron sim", f"--replay {args.replay}", *(f"--bug {bug}" for bug in args.bug)])
    parts = ["raftcron sim", f"--seed {seed}", f"--nodes {args.nodes}", f"--seconds {args.seconds:g}"]
    if args.faults is not None:
        parts.append(f"--faults {args.faults}")
    for bug in args.bug:
        parts.append(f"--bug {bug}")
    if args.replay:
        parts.append(f"--replay {args.replay}")
    if args.jobs:
        parts.append(f"--jobs {args.jobs}")
    defaults = {"storage": "memory", "rate": 10.0, "election_timeout": "150-300", "heartbeat": 50.0,
                "latency": "1-5", "loss": 0.0, "dup": 0.0, "snapshot_entries": 1000, "workload": "kv",
                "clients": 5, "keys": 3, "entries_per_message": 256}
    for name, default in defaults.items():
        value = getattr(args, name)
        if value != default:
            parts.append(f"--{name.replace('_', '-')} {value}")
    if args.no_prevote:
        parts.append("--no-prevote")
    return " ".join(parts)


def human_summary(s: dict[str, Any]) -> str:
    if s.get("crashed"):
        return f"seed {s['seed']}: the simulator crashed (traceback above)"
    lines = [
        f"raftcron sim: {s['nodes']} nodes, {s['sim_seconds']:g} simulated seconds, seed {s['seed']}",
        f"  {s['events']} events in {s['wall_seconds']} s wall ({s['sim_speedup']}x real time, "
        f"{s.get('build', 'interpreted')} build)",
        f"  first leader after {_ms(s['first_leader_s'])}; {len(s['leaders'])} leaders, "
        f"{s['leader_changes']} changes",
    ]
    for leader in s["leaders"][:12]:
        lines.append(f"    term {leader['term']:>3}: {leader['node']} elected at {leader['elected_at']:.3f} s")
    if len(s["leaders"]) > 12:
        lines.append(f"    ... {len(s['leaders']) - 12} more")
    if s.get("no_leader"):
        lines.append(f"  LIVENESS: {s['no_leader']}")
    if s["failovers"]:
        shown = ", ".join(_ms(f) for f in s["failovers"][:10])
        lines.append(f"  failovers (leader lost -> new leader heard by a quorum): {shown}")
    committed = (f"{s['commits']} of {s['proposals']} client proposals committed" if s["proposals"]
                 else f"{s['commits']} entries committed (no client workload)")
    lines.append(f"  {committed}; {s['messages_sent']} messages, {s['messages_dropped']} dropped")
    lines.append(f"  snapshots: {s['snapshots_taken']} taken, {s['snapshots_installed']} installed; "
                 f"longest log {s['max_log_entries']} entries")
    if s["safety_violations"]:
        lines.append(f"  SAFETY VIOLATIONS ({len(s['safety_violations'])}):")
        for v in s["safety_violations"][:10]:
            lines.append(f"    step {v['step']} t={v['true_ms']} ms on {v['node']}: {v['kind']}: {v['detail']}")
    else:
        lines.append("  safety: election safety, leader append-only, log matching, leader completeness, "
                     "state machine safety, commit monotonic: all held")
    if "ticks_due" in s:
        lines.extend(_scheduler_lines(s))
    lines.extend(_client_lines(s))
    lines.append(f"  trace sha256 {s['trace_sha256'][:16]}…")
    return "\n".join(lines)


def _client_lines(s: dict[str, Any]) -> list[str]:
    """The kv workload's verdict, the liveness phase and the swarm's draw, when there are any."""
    lines: list[str] = []
    ops = s.get("client_operations")
    if ops is not None:
        verdict = {True: "linearizable", False: "NOT LINEARIZABLE", "unknown": "unknown (checker out of time)"}
        lines.append(f"  clients: {ops['invoke']} operations, {ops['ok']} ok, {ops['fail']} failed, "
                     f"{ops['info']} unknown; history {verdict.get(s['linearizable'], s['linearizable'])}")
        if s.get("linearizability_unknown_keys"):
            lines.append(f"    keys the checker could not decide in time: {s['linearizability_unknown_keys']}")
        for failure in s.get("linearizability_violations", [])[:3]:
            lines.append(f"    key {failure['key']!r}:")
            lines.extend(f"      {line}" for line in failure["explanation"])
    liveness = s.get("liveness")
    if liveness is not None:
        if liveness.get("failure"):
            lines.append(f"  LIVENESS: core {liveness['core']} {liveness['failure']}")
        elif liveness.get("converged_after_ms") is not None:
            lines.append(f"  liveness: core {liveness['core']} healed at {liveness['began_ms'] / 1000:.3f} s and "
                         f"converged in {liveness['converged_after_ms']:.0f} ms (bound {liveness['bound_ms']:.0f} ms)")
    swarm = s.get("swarm")
    if swarm is not None:
        gaps = ", ".join(f"{kind} every ~{gap / 1000:.1f} s" for kind, gap in swarm["mean_gap_ms"].items())
        lines.append(f"  swarm: {gaps or 'no faults'}")
    if s.get("replay_command"):
        lines.append(f"  replay exactly: {s['replay_command']}")
    return lines


def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:.0f} ms"


def _scheduler_lines(s: dict[str, Any]) -> list[str]:
    """The `--jobs` part of the human summary."""
    lines = [
        f"  scheduler: {s['jobs']} jobs; {s['ticks_due']} ticks due: {s['ticks_fired']} fired, "
        f"{s['ticks_skipped']} skipped, {s['ticks_missed']} missed, {s['lost_ticks']} lost",
        f"    fire delay p99 {s['p99_fire_delay_s']} s, max {s['max_fire_delay_s']} s "
        f"(bound L = {s['fire_bound_s']} s); runs: {s['runs']}",
        f"    duplicate fires {s['duplicate_fires']}, duplicate starts {s['duplicate_starts']}, "
        f"overlapping attempts {s['overlapping_attempts']} (drift bound D = {s['drift_bound_ms']} ms, "
        f"largest clock offset {s['max_clock_offset_ms']} ms)",
    ]
    for name in ("exactly_once_violations", "liveness_violations", "no_spof_violations"):
        for v in s[name][:5]:
            lines.append(f"    {name.replace('_', ' ')[:-1]}: {v['kind']} {v.get('job', '')} "
                         f"{v.get('tick_ms', '')}: {v['detail']}")
    return lines
